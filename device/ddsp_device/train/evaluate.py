"""``evaluate``: how well a model resynthesises a dataset's clips from their own f0 and loudness.

Each clip is played through the **runtime** engine (:class:`ddsp_device.engine.Engine`, the same
code the box runs, in periods of 128 samples, with ``reverb_mix = 0`` so the comparison is dry) at
the clip's sample rate, pulling the clip's f0 and loudness frame by frame (interpolated onto the
model's frame grid when the model runs at another frame rate: loudness linearly, f0 linearly in
log-frequency). The same controls drive the **baselines** (:mod:`ddsp_device.train.baselines`):
a band-limited sawtooth whose loudness curve is matched frame by frame, and a General-MIDI
soundfont instrument (FluidR3 GM's Violin through FluidSynth; skipped with one warning where
FluidSynth or the soundfont is missing).

Each system is compared with the clip's audio (:mod:`ddsp_device.train.metrics`) by the
multi-scale spectral distance (the training loss), the floor-limited log-spectral distance (LSD,
dB, floored 60 dB below the recording's peak), the loudness-curve error (dB) and the octave-band
balance (dB, and its mean absolute value, the balance error). The report gives every metric per
clip and system and their means over clips; the model's mean LSD as a percentage of the
sawtooth's is ``ratio_to_sawtooth`` (100 % = no better than a sawtooth). With ``out_dir``, a PNG
per clip (up to ``max_plots``) stacks the spectrograms of the recording, the model and each
baseline (one colour scale, 0–8 kHz, each titled with its LSD) and ``report.json`` holds every
number. Numpy and matplotlib (Agg, for the PNGs only).
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from ddsp_device.errors import ModelError

from .baselines import BASELINES, RenderError, SoundfontBaseline, SoundfontSettings, sawtooth
from .data import SPLITS, Clip, DatasetError, load_split
from .metrics import (BALANCE_BANDS_HZ, BALANCE_FFT, FFT_SIZES, LOG_EPSILON, LSD_FLOOR_DB, OVERLAP, Reference,
                      Scores, hann_periodic, band_balance_db, band_shares_db, log_spectral_distance_db,
                      loudness_error_db, lsd_floor, spectral_distance, stft_magnitude)
from .violin_data import GM_VIOLIN_PROGRAM

log = logging.getLogger(__name__)

PERIOD = 128  # the engine's period while resynthesising
PLOT_MAX_HZ = 8000.0
PLOT_RANGE_DB = 80.0
SPLIT_CHOICES = SPLITS + ("all",)


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
METRICS = ("spectral_distance", "lsd_db", "loudness_error_db", "balance_error_db")


@dataclass
class ClipResult:
    """One clip's scores per system (``"model"`` first, then the baselines that ran)."""

    name: str
    path: str
    seconds: float
    scores: dict = field(default_factory=dict)  # system -> Scores
    png: Optional[str] = None

    # The model's scores, as the report has always given them per clip.
    @property
    def spectral_distance(self) -> float:
        return self.scores["model"].spectral_distance

    @property
    def lsd_db(self) -> float:
        return self.scores["model"].lsd_db

    @property
    def loudness_error_db(self) -> float:
        return self.scores["model"].loudness_error_db

    @property
    def balance_db(self) -> list:
        return self.scores["model"].balance_db

    @property
    def balance_error_db(self) -> float:
        return self.scores["model"].balance_error_db

    def ratio_to_sawtooth(self, system: str = "model") -> Optional[float]:
        """``system``'s LSD as a percentage of the sawtooth's on this clip (``None`` without the sawtooth)."""
        if "sawtooth" not in self.scores or system not in self.scores:
            return None
        return _percent(self.scores[system].lsd_db, self.scores["sawtooth"].lsd_db)

    def to_dict(self) -> dict:
        out = {"name": self.name, "path": self.path, "seconds": self.seconds, "png": self.png}
        for system, scores in self.scores.items():
            out[system] = scores.to_dict()
            if system != "sawtooth" and self.ratio_to_sawtooth(system) is not None:
                out[system]["ratio_to_sawtooth"] = self.ratio_to_sawtooth(system)
        return out


def _percent(value: float, reference: float) -> float:
    return 100.0 * value / reference if reference > 0 else math.nan


@dataclass
class EvaluateReport:
    model: str
    model_path: str
    runtime: str
    dataset: str
    split: str
    sample_rate: int
    systems: list = field(default_factory=lambda: ["model"])  # those scored, the model first
    clips: list[ClipResult] = field(default_factory=list)
    out_dir: Optional[str] = None
    skipped: dict = field(default_factory=dict)  # baseline -> why it did not run
    settings: dict = field(default_factory=dict)

    def mean(self, metric: str, system: str = "model") -> float:
        """Mean over clips of one of ``METRICS`` for ``system``."""
        values = [getattr(c.scores[system], metric) for c in self.clips if system in c.scores]
        return float(np.mean(values)) if values else math.nan

    def mean_balance(self, system: str = "model") -> list:
        """Per band, the mean over clips of (system − recording) energy share, dB."""
        values = [c.scores[system].balance_db for c in self.clips if system in c.scores]
        return [float(v) for v in np.mean(values, axis=0)] if values else []

    def ratio_to_sawtooth(self, system: str = "model") -> Optional[float]:
        """``system``'s mean LSD as a percentage of the sawtooth's (``None`` without the sawtooth)."""
        if "sawtooth" not in self.systems or not self.clips:
            return None
        return _percent(self.mean("lsd_db", system), self.mean("lsd_db", "sawtooth"))

    # The model's means, as the report has always given them.
    @property
    def mean_spectral_distance(self) -> float:
        return self.mean("spectral_distance")

    @property
    def mean_lsd_db(self) -> float:
        return self.mean("lsd_db")

    @property
    def mean_loudness_error_db(self) -> float:
        return self.mean("loudness_error_db")

    @property
    def mean_balance_db(self) -> list:
        return self.mean_balance()

    @property
    def mean_balance_error_db(self) -> float:
        return self.mean("balance_error_db")

    def summary_dict(self) -> dict:
        """Per system: each metric's mean over clips, the mean band balance and ``ratio_to_sawtooth`` (%)."""
        out = {}
        for system in self.systems:
            out[system] = {metric: self.mean(metric, system) for metric in METRICS}
            out[system]["balance_db"] = self.mean_balance(system)
            if system != "sawtooth" and self.ratio_to_sawtooth(system) is not None:
                out[system]["ratio_to_sawtooth"] = self.ratio_to_sawtooth(system)
        return out

    def to_dict(self) -> dict:
        return {
            "model": self.model, "model_path": self.model_path, "runtime": self.runtime, "dataset": self.dataset,
            "split": self.split, "sample_rate": self.sample_rate, "systems": list(self.systems),
            "skipped": dict(self.skipped), "out_dir": self.out_dir,
            "summary": self.summary_dict(),
            "ratio_to_sawtooth": self.ratio_to_sawtooth(),  # the model's mean LSD, % of the sawtooth's
            # the model's means, as before the baselines
            "mean_spectral_distance": self.mean_spectral_distance, "mean_lsd_db": self.mean_lsd_db,
            "mean_loudness_error_db": self.mean_loudness_error_db, "mean_balance_db": self.mean_balance_db,
            "mean_balance_error_db": self.mean_balance_error_db,
            "clips": [c.to_dict() for c in self.clips],
            "settings": {"fft_sizes": list(FFT_SIZES), "log_epsilon": LOG_EPSILON, "overlap": OVERLAP,
                         "reverb_mix": 0.0, "period": PERIOD,
                         "balance_bands_hz": [list(b) for b in BALANCE_BANDS_HZ], "balance_fft": BALANCE_FFT,
                         **self.settings},
        }

    @staticmethod
    def _row(width: int, label: str, system: str, values: dict, balance: list) -> str:
        bands = " ".join(f"{v:+5.1f}" for v in balance) if balance else ""
        return (f"{label:<{width}}  {system:<9}  {values['spectral_distance']:8.3f}  {values['lsd_db']:6.2f}"
                f"  {values['loudness_error_db']:7.2f}  {values['balance_error_db']:6.2f}  {bands}")

    def lines(self) -> list[str]:
        width = max([len("clip")] + [len(c.name) for c in self.clips])
        baselines = [s for s in self.systems if s != "model"]
        out = [f"{self.model} on {self.dataset} [{self.split}], {len(self.clips)} clips ({self.runtime}); baselines: "
               + (", ".join(baselines) if baselines else "none")
               + "".join(f" ({name} skipped)" for name in self.skipped),
               f"{'clip':<{width}}  {'system':<9}  {'spectral':>8}  {'LSD dB':>6}  {'loud dB':>7}  {'bal dB':>6}"
               f"  balance per octave, dB: " + " ".join(f"{lo / 1000:g}-{hi / 1000:g}" for lo, hi in BALANCE_BANDS_HZ)
               + " kHz"]
        for c in self.clips:
            for k, (system, scores) in enumerate(c.scores.items()):
                values = {metric: getattr(scores, metric) for metric in METRICS}
                out.append(self._row(width, c.name if k == 0 else "", system, values, scores.balance_db))
        if self.clips:
            for k, system in enumerate(self.systems):
                values = {metric: self.mean(metric, system) for metric in METRICS}
                out.append(self._row(width, "mean" if k == 0 else "", system, values, self.mean_balance(system)))
            ratios = [f"{system} {self.ratio_to_sawtooth(system):.0f} %" for system in self.systems
                      if system != "sawtooth" and self.ratio_to_sawtooth(system) is not None]
            if ratios:
                out.append("LSD as a percentage of the sawtooth's: " + ", ".join(ratios))
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
    mag = np.abs(np.fft.rfft(frames * hann_periodic(fft_size), axis=-1))
    freqs = np.fft.rfftfreq(fft_size, 1.0 / sample_rate)
    keep = freqs <= min(PLOT_MAX_HZ, sample_rate / 2)
    spec = 20.0 * np.log10(np.maximum(mag[:, keep], 1e-7)).T
    return spec, freqs[keep], hop / sample_rate


def plot_comparison(path, panels: Sequence[tuple[str, np.ndarray]], sample_rate: int, title: str) -> None:
    """Write a PNG of stacked spectrograms, one colour scale (the top 80 dB of the first panel), 0–8 kHz.

    Args:
        path: the PNG.
        panels: ``(label, audio [S])`` from top to bottom (the recording first).
        sample_rate: Hz.
        title: above the panels.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    specs = [(label, *_spectrogram_db(audio, sample_rate)) for label, audio in panels]
    vmax = float(specs[0][1].max())  # the recording's peak: a louder system saturates
    vmin = vmax - PLOT_RANGE_DB
    _, first, freqs, dt = specs[0]
    extent = (-0.5 * dt, (first.shape[1] - 0.5) * dt, float(freqs[0]) / 1000.0, float(freqs[-1]) / 1000.0)
    height_in = 0.9 + 2.1 * len(specs)
    fig = Figure(figsize=(10, height_in), dpi=100)  # fixed margins: constrained layout doubles the time
    FigureCanvasAgg(fig)
    top, bottom = 1.0 - 0.55 / height_in, 0.45 / height_in
    fig.subplots_adjust(left=0.06, right=0.9, top=top, bottom=bottom, hspace=0.3)
    axes = np.atleast_1d(fig.subplots(len(specs), 1, sharex=True))
    image = None
    for ax, (label, spec, _, _) in zip(axes, specs):
        image = ax.imshow(spec, origin="lower", aspect="auto", extent=extent, vmin=vmin, vmax=vmax,
                          cmap="magma", interpolation="nearest")
        ax.set_title(label, fontsize=9, loc="left")
        ax.set_ylabel("kHz")
    axes[-1].set_xlabel("seconds")
    fig.colorbar(image, cax=fig.add_axes((0.915, bottom, 0.015, top - bottom)), label="dB")
    fig.suptitle(title)
    fig.savefig(os.fspath(path))


# ----------------------------------------------------------------------------- evaluate
def load_clips(dataset_dir, split: str) -> tuple[list[str], list[Clip]]:
    """``(names, clips)`` of ``DATASET/<split>`` (``"all"``: every split there, names ``split/stem``)."""
    dataset = Path(dataset_dir)
    if not dataset.is_dir():
        raise DatasetError(f"{dataset}: no such dataset directory")
    if split not in SPLIT_CHOICES:
        raise ValueError(f"split: choose one of {', '.join(SPLIT_CHOICES)}, not {split!r}")
    if split != "all":
        if not (dataset / split).is_dir():
            raise DatasetError(f"{dataset}: has no {split}/ split (expected {dataset / split}/*.npz)")
        clips = load_split(dataset, split)
        return [Path(c.path).stem for c in clips], clips
    names, clips = [], []
    for name in SPLITS:
        if (dataset / name).is_dir() and any((dataset / name).glob("*.npz")):
            found = load_split(dataset, name)
            names += [f"{name}/{Path(c.path).stem}" for c in found]
            clips += found
    if not clips:
        raise DatasetError(f"{dataset}: no clips in {' or '.join(f'{s}/' for s in SPLITS)}")
    rates = {(c.sample_rate, c.frame_rate_hz) for c in clips}
    if len(rates) > 1:
        raise DatasetError(f"{dataset}: splits at different rates {sorted(rates)}")
    return names, clips


def _parse_baselines(baselines) -> list[str]:
    names = [b.strip() for b in baselines.split(",")] if isinstance(baselines, str) else list(baselines or ())
    names = [b for b in names if b and b != "none"]
    unknown = [b for b in names if b not in BASELINES]
    if unknown:
        raise ValueError(f"baselines: unknown {', '.join(map(repr, unknown))} (choose from {', '.join(BASELINES)})")
    return [b for b in BASELINES if b in names]


def evaluate(
    model_path,
    dataset_dir,
    *,
    split: str = "validation",
    out_dir=None,
    max_clips: Optional[int] = None,
    max_plots: int = 8,
    runtime: str = "auto",
    baselines: Sequence[str] | str = BASELINES,
    soundfont=None,
    program: int = GM_VIOLIN_PROGRAM,
    lsd_floor_db: float = LSD_FLOOR_DB,
) -> EvaluateReport:
    """Resynthesise ``DATASET/<split>`` through the runtime engine and score it and the baselines.

    Args:
        model_path: a ``.tflite`` model (path, or a name the model library resolves).
        dataset_dir: a dataset (:mod:`ddsp_device.train.data`).
        split: ``"validation"``, ``"train"`` or ``"all"`` (every clip, whatever its split).
        out_dir: where the PNGs and ``report.json`` go (created); ``None`` writes nothing.
        max_clips: evaluate only the first N clips (sorted by split, then name).
        max_plots: PNGs for at most this many clips.
        runtime: TFLite runtime for the model (``"auto"``, ``"tflite-runtime"``, ``"ai-edge-litert"``).
        baselines: any of ``"sawtooth"``, ``"soundfont"`` (a sequence or a comma-separated string;
            empty or ``"none"`` for none). The soundfont is skipped, with one warning, where
            FluidSynth or the soundfont is missing.
        soundfont: the ``.sf2`` of the soundfont baseline (default: FluidR3_GM).
        program: its General-MIDI program, 0-based (40 = GM 41, Violin).
        lsd_floor_db: the LSD's floor below the recording's peak (:func:`log_spectral_distance_db`).

    Raises:
        DatasetError: no such dataset or split, or a bad clip. ModelError: the model cannot be used.
        RenderError: FluidSynth failed on a clip after it had started.
    """
    from ddsp_device.engine import Engine, EngineSettings
    from ddsp_device.library import resolve_model
    from ddsp_device.model import ModelDefaults, load_model

    if max_clips is not None and max_clips < 1:
        raise ValueError(f"max_clips: must be at least 1, not {max_clips}")
    if not 0 <= program <= 127:
        raise ValueError(f"program: must be 0..127 (0-based), not {program}")
    chosen = _parse_baselines(baselines)
    names, clips = load_clips(dataset_dir, split)
    if max_clips is not None:
        names, clips = names[:max_clips], clips[:max_clips]
    sample_rate = clips[0].sample_rate

    path = resolve_model(os.fspath(model_path))
    model = load_model(path, defaults=ModelDefaults(), runtime=runtime, num_threads=1)
    info = model.info
    skipped, soundfont_baseline = {}, None
    if "soundfont" in chosen:
        try:
            soundfont_baseline = SoundfontBaseline(soundfont, SoundfontSettings(program=program))
            soundfont_baseline.silent_keys()  # probe now, so a FluidSynth that cannot render skips here
        except RenderError as err:
            log.warning("soundfont baseline skipped: %s", err)
            skipped["soundfont"] = str(err)
            soundfont_baseline = None
            chosen.remove("soundfont")
    settings = EngineSettings(sample_rate=sample_rate, reverb_mix=0.0, max_period=PERIOD)
    report = EvaluateReport(model=info.name, model_path=os.fspath(path), runtime=info.runtime_name,
                            dataset=os.fspath(dataset_dir), split=split, sample_rate=sample_rate,
                            systems=["model"] + chosen, out_dir=None if out_dir is None else os.fspath(out_dir),
                            skipped=skipped,
                            settings={"lsd_floor_db": lsd_floor_db,
                                      "soundfont": soundfont_baseline.describe() if soundfont_baseline else None})
    out = None
    if out_dir is not None:
        out = Path(out_dir)
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            model.close()
            raise ValueError(f"{out}: cannot create the output directory: {err}") from err

    with Engine(model, settings) as engine:  # the engine owns and closes the model
        for i, (name, clip) in enumerate(zip(names, clips)):
            rendered = {"model": resynthesise(engine, clip)}
            if "sawtooth" in chosen:
                rendered["sawtooth"] = sawtooth(clip.f0_hz, clip.loudness, clip.sample_rate, clip.hop)
            if soundfont_baseline is not None:
                rendered["soundfont"] = soundfont_baseline.render(clip.f0_hz, clip.loudness, clip.sample_rate,
                                                                  clip.hop)
            reference = Reference(clip.audio, clip.sample_rate, clip.hop, lsd_floor_db)
            result = ClipResult(name=name, path=clip.path, seconds=clip.audio.shape[0] / clip.sample_rate,
                                scores={system: reference.score(audio) for system, audio in rendered.items()})
            if out is not None and i < max_plots:
                png = out / f"{i:03d}-{name.replace('/', '-')}.png"
                panels = [("recording", clip.audio)] + [
                    (f"{system}: LSD {result.scores[system].lsd_db:.1f} dB, spectral distance "
                     f"{result.scores[system].spectral_distance:.2f}", audio) for system, audio in rendered.items()]
                plot_comparison(png, panels, clip.sample_rate, f"{info.name} — {split}: {name}")
                result.png = os.fspath(png)
            report.clips.append(result)

    if out is not None:
        (out / "report.json").write_text(json.dumps(report.to_dict(), indent=2) + "\n", encoding="utf-8")
    return report


__all__ = ["ClipResult", "EvaluateReport", "ModelError", "DatasetError", "Reference", "Scores", "evaluate",
           "spectral_distance", "log_spectral_distance_db", "lsd_floor", "loudness_error_db", "band_balance_db",
           "band_shares_db", "load_clips", "resynthesise", "plot_comparison"]
