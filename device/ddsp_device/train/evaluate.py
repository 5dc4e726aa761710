"""``evaluate``: how well a model resynthesises a dataset's clips from their own f0 and loudness.

Each clip is played through the **runtime** engine (:class:`ddsp_device.engine.Engine`, the same
code the box runs, in periods of 128 samples, with ``reverb_mix = 0`` so the comparison is dry) at
the clip's sample rate, pulling the clip's f0 and loudness frame by frame (interpolated onto the
model's frame grid when the model runs at another frame rate: loudness linearly, f0 linearly in
log-frequency). The resynthesis is compared with the clip's audio by

- the **multi-scale spectral distance**, :func:`spectral_distance`: the definition of
  :func:`ddsp_device.train.losses.multiscale_spectral_loss` (FFT sizes 2048 … 64, periodic Hann
  window, hop = size / 4, frames padded at the end; per size ``mean|S − Ŝ| + mean|log(S + ε) −
  log(Ŝ + ε)|``, summed over sizes), written in numpy so evaluation needs no TensorFlow; and
- the **loudness-curve error**: mean ``|L − L̂|`` in dB between the A-weighted loudness curves
  (:func:`ddsp_device.train.features.loudness_db`) of target and resynthesis, both floored at
  −80 dB, over the frames where either is above the floor; and
- the **band balance**: the share of the energy (dB) in each octave band 0–1, 1–2, 2–4, 4–8
  and 8–16 kHz, over the frames within 10 dB of the clip's loudest, for target and resynthesis:
  :func:`band_balance_db` gives the differences (resynthesis − target), and the clip's
  ``balance_error_db`` is their mean absolute value (how far the tone colour is off, whatever
  the fine structure; a dull model shows negative values in the upper bands).

With ``out_dir``, a PNG per clip (up to ``max_plots``) shows the two spectrograms (target above,
resynthesis below, one colour scale, 0–8 kHz) and ``report.json`` holds every number.
Numpy and matplotlib (Agg, for the PNGs only).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from ddsp_device.errors import ModelError

from .data import Clip, DatasetError, load_split
from .features import LOUDNESS_FLOOR_DB, loudness_db

FFT_SIZES = (2048, 1024, 512, 256, 128, 64)  # as losses.FFT_SIZES (that module imports TF)
LOG_EPSILON = 1e-5  # as losses.LOG_EPSILON
PERIOD = 128  # the engine's period while resynthesising
PLOT_MAX_HZ = 8000.0
PLOT_RANGE_DB = 80.0


# ----------------------------------------------------------------------------- spectral distance
def _hann_periodic(n: int) -> np.ndarray:
    return (0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / n)).astype(np.float32)


def stft_magnitude(audio, fft_size: int, overlap: float = 0.75, *, chunk_frames: int = 8192):
    """``|STFT|`` of ``[S]`` audio as ``tf.signal.stft(..., pad_end=True)``: ``[frames, fft_size//2 + 1]``."""
    audio = np.asarray(audio, np.float32).reshape(-1)
    step = max(1, int(fft_size * (1.0 - overlap)))
    n_frames = -(-audio.shape[0] // step)  # ceil, as pad_end
    padded = np.zeros((n_frames - 1) * step + fft_size, np.float32)
    padded[: audio.shape[0]] = audio
    frames = np.lib.stride_tricks.sliding_window_view(padded, fft_size)[::step][:n_frames]
    window = _hann_periodic(fft_size)
    out = np.empty((n_frames, fft_size // 2 + 1), np.float32)
    for start in range(0, n_frames, chunk_frames):
        out[start : start + chunk_frames] = np.abs(np.fft.rfft(frames[start : start + chunk_frames] * window, axis=-1))
    return out


def spectral_distance(
    target, estimate, fft_sizes=FFT_SIZES, mag_weight: float = 1.0, logmag_weight: float = 1.0,
    overlap: float = 0.75,
) -> float:
    """Multi-scale spectral distance of two ``[S]`` signals, as ``losses.multiscale_spectral_loss``."""
    target = np.asarray(target, np.float32).reshape(-1)
    estimate = np.asarray(estimate, np.float32).reshape(-1)
    if target.shape != estimate.shape:
        raise ValueError(f"spectral_distance: lengths differ ({target.shape[0]} vs {estimate.shape[0]})")
    total = 0.0
    for fft_size in fft_sizes:
        s_t = stft_magnitude(target, fft_size, overlap)
        s_e = stft_magnitude(estimate, fft_size, overlap)
        if mag_weight:
            total += mag_weight * float(np.mean(np.abs(s_t - s_e), dtype=np.float64))
        if logmag_weight:
            diff = np.log(s_t + LOG_EPSILON) - np.log(s_e + LOG_EPSILON)
            total += logmag_weight * float(np.mean(np.abs(diff), dtype=np.float64))
    return total


def loudness_error_db(target, estimate, sample_rate: int, hop: int) -> float:
    """Mean ``|L − L̂|`` (dB) of the A-weighted loudness curves, floored at −80 dB, over non-silent frames."""
    lt = np.maximum(loudness_db(target, sample_rate, hop), LOUDNESS_FLOOR_DB)
    le = np.maximum(loudness_db(estimate, sample_rate, hop), LOUDNESS_FLOOR_DB)
    active = np.maximum(lt, le) > LOUDNESS_FLOOR_DB
    if not np.any(active):
        return 0.0
    return float(np.mean(np.abs(lt[active] - le[active]), dtype=np.float64))


BALANCE_BANDS_HZ = ((0.0, 1000.0), (1000.0, 2000.0), (2000.0, 4000.0), (4000.0, 8000.0), (8000.0, 16000.0))
BALANCE_FFT = 4096


def band_shares_db(audio, sample_rate: int) -> np.ndarray:
    """Share of the energy in each ``BALANCE_BANDS_HZ`` band, dB, over the frames within 10 dB of the loudest."""
    power = stft_magnitude(audio, BALANCE_FFT) ** 2
    energy = power.sum(axis=1)
    loud = energy >= 0.1 * energy.max() if energy.size and energy.max() > 0 else np.ones(energy.shape, bool)
    spectrum = power[loud].mean(axis=0, dtype=np.float64)
    freqs = np.fft.rfftfreq(BALANCE_FFT, 1.0 / sample_rate)
    total = max(float(spectrum.sum()), 1e-30)
    return np.array([10.0 * np.log10(max(float(spectrum[(freqs >= lo) & (freqs < hi)].sum()), 1e-30) / total)
                     for lo, hi in BALANCE_BANDS_HZ])


def band_balance_db(target, estimate, sample_rate: int) -> np.ndarray:
    """Per octave band (``BALANCE_BANDS_HZ``): estimate's share minus target's share, dB."""
    return band_shares_db(estimate, sample_rate) - band_shares_db(target, sample_rate)


# ----------------------------------------------------------------------------- resynthesis
class ClipControls:
    """The clip's per-frame controls on the engine's grid (a ``ControlSource``); past the end, the last frame."""

    def __init__(self, clip: Clip, engine_hop: int):
        if engine_hop == clip.hop:
            f0, loud = clip.f0_hz.astype(np.float64), clip.loudness.astype(np.float64)
        else:
            n_engine = -(-clip.n_frames * clip.hop // engine_hop)
            # engine frame m is at sample m·engine_hop; clip frame n at sample n·clip.hop
            position = np.arange(n_engine) * (engine_hop / clip.hop)
            index = np.arange(clip.n_frames)
            f0 = np.exp2(np.interp(position, index, np.log2(np.maximum(clip.f0_hz.astype(np.float64), 1e-3))))
            loud = np.interp(position, index, clip.loudness.astype(np.float64))
        self.f0_hz = [float(v) for v in f0]
        self.loudness = [float(v) for v in loud]
        self._last = len(self.f0_hz) - 1

    def __call__(self, frame: int) -> tuple[float, float]:
        i = frame if frame < self._last else self._last
        return self.f0_hz[i], self.loudness[i]


def resynthesise(engine, clip: Clip) -> np.ndarray:
    """The clip's audio length of engine output from the clip's own controls (engine reset first)."""
    engine.reset()
    n = clip.audio.shape[0]
    padded = np.empty(-(-n // PERIOD) * PERIOD, np.float32)
    controls = ClipControls(clip, engine.hop)
    for start in range(0, padded.shape[0], PERIOD):
        engine.render(padded[start : start + PERIOD], controls)
    return padded[:n].copy()


# ----------------------------------------------------------------------------- report
@dataclass
class ClipResult:
    name: str
    path: str
    seconds: float
    spectral_distance: float
    loudness_error_db: float
    balance_db: list = field(default_factory=list)  # per BALANCE_BANDS_HZ band, resynthesis − target
    png: Optional[str] = None

    @property
    def balance_error_db(self) -> float:
        return float(np.mean(np.abs(self.balance_db))) if self.balance_db else math.nan


@dataclass
class EvaluateReport:
    model: str
    model_path: str
    runtime: str
    dataset: str
    split: str
    sample_rate: int
    clips: list[ClipResult] = field(default_factory=list)
    out_dir: Optional[str] = None

    @property
    def mean_spectral_distance(self) -> float:
        return float(np.mean([c.spectral_distance for c in self.clips])) if self.clips else math.nan

    @property
    def mean_loudness_error_db(self) -> float:
        return float(np.mean([c.loudness_error_db for c in self.clips])) if self.clips else math.nan

    @property
    def mean_balance_db(self) -> list:
        """Per band, the mean over clips of (resynthesis − target) energy share, dB."""
        return [float(v) for v in np.mean([c.balance_db for c in self.clips], axis=0)] if self.clips else []

    @property
    def mean_balance_error_db(self) -> float:
        return float(np.mean([c.balance_error_db for c in self.clips])) if self.clips else math.nan

    def to_dict(self) -> dict:
        out = asdict(self)
        out["mean_spectral_distance"] = self.mean_spectral_distance
        out["mean_loudness_error_db"] = self.mean_loudness_error_db
        out["mean_balance_db"] = self.mean_balance_db
        out["mean_balance_error_db"] = self.mean_balance_error_db
        for clip, result in zip(out["clips"], self.clips):
            clip["balance_error_db"] = result.balance_error_db
        out["settings"] = {"fft_sizes": list(FFT_SIZES), "log_epsilon": LOG_EPSILON, "overlap": 0.75,
                           "reverb_mix": 0.0, "period": PERIOD,
                           "balance_bands_hz": [list(b) for b in BALANCE_BANDS_HZ], "balance_fft": BALANCE_FFT}
        return out

    def lines(self) -> list[str]:
        width = max([len("clip")] + [len(c.name) for c in self.clips])
        out = [f"{self.model} on {self.dataset} [{self.split}], {len(self.clips)} clips ({self.runtime})",
               f"{'clip':<{width}}  {'seconds':>7}  {'spectral':>8}  {'loud dB':>7}  {'balance dB':>10}"]
        for c in self.clips:
            out.append(f"{c.name:<{width}}  {c.seconds:7.2f}  {c.spectral_distance:8.3f}  {c.loudness_error_db:7.2f}"
                       f"  {c.balance_error_db:10.2f}")
        out.append(f"{'mean':<{width}}  {'':>7}  {self.mean_spectral_distance:8.3f}  {self.mean_loudness_error_db:7.2f}"
                   f"  {self.mean_balance_error_db:10.2f}")
        if self.clips:
            bands = ", ".join(f"{lo / 1000:g}-{hi / 1000:g} kHz {v:+.1f}"
                              for (lo, hi), v in zip(BALANCE_BANDS_HZ, self.mean_balance_db))
            out.append(f"band balance, resynthesis - target (dB): {bands}")
        if self.out_dir:
            n_png = sum(1 for c in self.clips if c.png)
            out.append(f"{n_png} spectrogram PNGs and report.json in {self.out_dir}")
        return out

    def summary(self) -> str:
        return "\n".join(self.lines())


# ----------------------------------------------------------------------------- plots
def _spectrogram_db(audio, sample_rate: int, fft_size: int = 2048, hop: int = 256):
    """Frames centred on ``k · hop`` (reflect-padded ends, so a clip's cut edge does not smear)."""
    audio = np.asarray(audio, np.float32).reshape(-1)
    half = fft_size // 2
    padded = np.pad(audio, half, mode="reflect" if audio.shape[0] > half else "constant")
    n_frames = audio.shape[0] // hop + 1
    frames = np.lib.stride_tricks.sliding_window_view(padded, fft_size)[::hop][:n_frames]
    mag = np.abs(np.fft.rfft(frames * _hann_periodic(fft_size), axis=-1))
    freqs = np.fft.rfftfreq(fft_size, 1.0 / sample_rate)
    keep = freqs <= min(PLOT_MAX_HZ, sample_rate / 2)
    spec = 20.0 * np.log10(np.maximum(mag[:, keep], 1e-7)).T
    return spec, freqs[keep], hop / sample_rate


def plot_comparison(path, target, estimate, sample_rate: int, title: str) -> None:
    """Write a PNG: target spectrogram above, resynthesis below, one colour scale, 0–8 kHz."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    s_t, freqs, dt = _spectrogram_db(target, sample_rate)
    s_e, _, _ = _spectrogram_db(estimate, sample_rate)
    vmax = float(max(s_t.max(), s_e.max()))
    vmin = vmax - PLOT_RANGE_DB
    extent = (-0.5 * dt, (s_t.shape[1] - 0.5) * dt, float(freqs[0]) / 1000.0, float(freqs[-1]) / 1000.0)
    fig = Figure(figsize=(10, 6), dpi=100, constrained_layout=True)
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, 1, sharex=True)
    image = None
    for ax, spec, label in ((axes[0], s_t, "target"), (axes[1], s_e, "resynthesis")):
        image = ax.imshow(spec, origin="lower", aspect="auto", extent=extent, vmin=vmin, vmax=vmax,
                          cmap="magma", interpolation="nearest")
        ax.set_ylabel(f"{label}\nkHz")
    axes[1].set_xlabel("seconds")
    fig.colorbar(image, ax=list(axes), label="dB")
    fig.suptitle(title)
    fig.savefig(os.fspath(path))


# ----------------------------------------------------------------------------- evaluate
def evaluate(
    model_path,
    dataset_dir,
    *,
    split: str = "validation",
    out_dir=None,
    max_clips: Optional[int] = None,
    max_plots: int = 8,
    runtime: str = "auto",
) -> EvaluateReport:
    """Resynthesise ``DATASET/<split>`` through the runtime engine and measure the distance.

    Args:
        model_path: a ``.tflite`` model (path, or a name the model library resolves).
        dataset_dir: a dataset (:mod:`ddsp_device.train.data`).
        split: ``"validation"`` or ``"train"``.
        out_dir: where the PNGs and ``report.json`` go (created); ``None`` writes nothing.
        max_clips: evaluate only the first N clips (sorted by name).
        max_plots: PNGs for at most this many clips.
        runtime: TFLite runtime for the model (``"auto"``, ``"tflite-runtime"``, ``"ai-edge-litert"``).

    Raises:
        DatasetError: no such dataset or split, or a bad clip. ModelError: the model cannot be used.
    """
    from ddsp_device.engine import Engine, EngineSettings
    from ddsp_device.library import resolve_model
    from ddsp_device.model import ModelDefaults, load_model

    if max_clips is not None and max_clips < 1:
        raise ValueError(f"max_clips: must be at least 1, not {max_clips}")
    dataset = Path(dataset_dir)
    if not dataset.is_dir():
        raise DatasetError(f"{dataset}: no such dataset directory")
    if not (dataset / split).is_dir():
        raise DatasetError(f"{dataset}: has no {split}/ split (expected {dataset / split}/*.npz)")
    clips = load_split(dataset, split)
    if max_clips is not None:
        clips = clips[:max_clips]
    sample_rate = clips[0].sample_rate

    path = resolve_model(os.fspath(model_path))
    model = load_model(path, defaults=ModelDefaults(), runtime=runtime, num_threads=1)
    info = model.info
    settings = EngineSettings(sample_rate=sample_rate, reverb_mix=0.0, max_period=PERIOD)
    report = EvaluateReport(model=info.name, model_path=os.fspath(path), runtime=info.runtime_name,
                            dataset=os.fspath(dataset), split=split, sample_rate=sample_rate,
                            out_dir=None if out_dir is None else os.fspath(out_dir))
    out = None
    if out_dir is not None:
        out = Path(out_dir)
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            model.close()
            raise ValueError(f"{out}: cannot create the output directory: {err}") from err

    with Engine(model, settings) as engine:  # the engine owns and closes the model
        for i, clip in enumerate(clips):
            estimate = resynthesise(engine, clip)
            name = Path(clip.path).stem
            result = ClipResult(
                name=name,
                path=clip.path,
                seconds=clip.audio.shape[0] / clip.sample_rate,
                spectral_distance=spectral_distance(clip.audio, estimate),
                loudness_error_db=loudness_error_db(clip.audio, estimate, clip.sample_rate, clip.hop),
                balance_db=[float(v) for v in band_balance_db(clip.audio, estimate, clip.sample_rate)],
            )
            if out is not None and i < max_plots:
                png = out / f"{i:03d}-{name}.png"
                plot_comparison(png, clip.audio, estimate, clip.sample_rate,
                                f"{info.name} — {split}/{name} — spectral distance {result.spectral_distance:.3f}, "
                                f"loudness error {result.loudness_error_db:.1f} dB")
                result.png = os.fspath(png)
            report.clips.append(result)

    if out is not None:
        (out / "report.json").write_text(json.dumps(report.to_dict(), indent=2) + "\n", encoding="utf-8")
    return report


__all__ = ["ClipResult", "EvaluateReport", "ModelError", "DatasetError", "evaluate", "spectral_distance",
           "loudness_error_db", "band_balance_db", "band_shares_db", "resynthesise", "plot_comparison"]
