"""The metrics of ``train evaluate``: how far a rendering is from a recording. Numpy only.

Each takes the recording (target) and a rendering of the same length, ``[S]`` float32 at one
sample rate:

- the **multi-scale spectral distance**, :func:`spectral_distance`: the definition of
  :func:`ddsp_device.train.losses.multiscale_spectral_loss` (FFT sizes 2048 … 64, periodic Hann
  window, hop = size / 4, frames padded at the end: :func:`stft_magnitude`; per size
  ``mean|S − Ŝ| + mean|log(S + ε) − log(Ŝ + ε)|``, summed over sizes), written in numpy so
  evaluation needs no TensorFlow;
- the **floor-limited log-spectral distance** (LSD, dB), :func:`log_spectral_distance_db`: on the
  same STFT magnitudes, per FFT size ``floor = max(S) · 10^(−60/20)`` with ``S`` the recording's
  magnitudes at that size, ``mean |20·log10(max(S, floor)) − 20·log10(max(Ŝ, floor))|`` over
  bins and frames, averaged over the six sizes. Room noise and reverb tails more than 60 dB
  below the recording's peak count as silence on both sides, so they cannot dominate as they
  do the ``log(S + ε)`` term above; a level error of ``g`` dB that stays above the floor reads
  ``|g|`` dB;
- the **loudness-curve error**, :func:`loudness_error_db`: mean ``|L − L̂|`` in dB between the
  A-weighted loudness curves (:func:`ddsp_device.train.features.loudness_db`) of target and
  rendering, both floored at −80 dB, over the frames where either is above the floor;
- the **band balance**, :func:`band_balance_db`: the share of the energy (dB) in each octave
  band 0–1, 1–2, 2–4, 4–8 and 8–16 kHz, over the frames within 10 dB of the clip's loudest,
  rendering minus target; its mean absolute value is the **balance error** (how far the tone
  colour is off, whatever the fine structure; a dull rendering shows negative values in the
  upper bands).

:class:`Reference` computes the recording's side once and scores each rendering against it
(:class:`Scores`), with the same numbers as the functions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .features import LOUDNESS_FLOOR_DB, loudness_db

FFT_SIZES = (2048, 1024, 512, 256, 128, 64)  # as losses.FFT_SIZES (that module imports TF)
LOG_EPSILON = 1e-5  # as losses.LOG_EPSILON
LSD_FLOOR_DB = 60.0  # the LSD's floor, below each FFT size's peak magnitude of the recording
LSD_MIN_FLOOR = 1e-9  # the floor of a silent recording (magnitude units: a full-scale sine peaks at size / 4)
OVERLAP = 0.75


def hann_periodic(n: int) -> np.ndarray:
    """The periodic Hann window of ``n`` samples (as ``tf.signal.hann_window``): [n] float32."""
    return (0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / n)).astype(np.float32)


def stft_magnitude(audio, fft_size: int, overlap: float = OVERLAP, *, chunk_frames: int = 8192):
    """``|STFT|`` of ``[S]`` audio as ``tf.signal.stft(..., pad_end=True)``: ``[frames, fft_size//2 + 1]``."""
    audio = np.asarray(audio, np.float32).reshape(-1)
    step = max(1, int(fft_size * (1.0 - overlap)))
    n_frames = -(-audio.shape[0] // step)  # ceil, as pad_end
    padded = np.zeros((n_frames - 1) * step + fft_size, np.float32)
    padded[: audio.shape[0]] = audio
    frames = np.lib.stride_tricks.sliding_window_view(padded, fft_size)[::step][:n_frames]
    window = hann_periodic(fft_size)
    out = np.empty((n_frames, fft_size // 2 + 1), np.float32)
    for start in range(0, n_frames, chunk_frames):
        out[start : start + chunk_frames] = np.abs(np.fft.rfft(frames[start : start + chunk_frames] * window, axis=-1))
    return out


def _check_lengths(name: str, target, estimate) -> tuple[np.ndarray, np.ndarray]:
    target = np.asarray(target, np.float32).reshape(-1)
    estimate = np.asarray(estimate, np.float32).reshape(-1)
    if target.shape != estimate.shape:
        raise ValueError(f"{name}: lengths differ ({target.shape[0]} vs {estimate.shape[0]})")
    return target, estimate


def spectral_distance(
    target, estimate, fft_sizes=FFT_SIZES, mag_weight: float = 1.0, logmag_weight: float = 1.0,
    overlap: float = OVERLAP,
) -> float:
    """Multi-scale spectral distance of two ``[S]`` signals, as ``losses.multiscale_spectral_loss``."""
    target, estimate = _check_lengths("spectral_distance", target, estimate)
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


def lsd_floor(target_magnitude, floor_db: float = LSD_FLOOR_DB) -> float:
    """The LSD's floor for one FFT size: ``max(S) · 10^(−floor_db/20)`` (at least ``LSD_MIN_FLOOR``)."""
    peak = float(np.max(target_magnitude)) if np.size(target_magnitude) else 0.0
    return max(peak * 10.0 ** (-floor_db / 20.0), LSD_MIN_FLOOR)


def _floored_db(magnitude: np.ndarray, floor: float) -> np.ndarray:
    return 20.0 * np.log10(np.maximum(magnitude, np.float32(floor)))


def log_spectral_distance_db(target, estimate, fft_sizes=FFT_SIZES, floor_db: float = LSD_FLOOR_DB,
                             overlap: float = OVERLAP) -> float:
    """Floor-limited log-spectral distance of ``estimate`` from ``target`` (each ``[S]``), dB.

    For each FFT size ``N`` in ``fft_sizes`` (periodic Hann window, hop ``N/4``, frames padded at
    the end: :func:`stft_magnitude`), with ``S`` and ``Ŝ`` the ``[frames, N/2 + 1]`` magnitudes
    of target and estimate::

        floor_N = max(S) · 10^(−floor_db / 20)          (the recording's peak at that size)
        d_N     = mean over frames and bins of |20·log10(max(S, floor_N)) − 20·log10(max(Ŝ, floor_N))|

    and the result is the mean of ``d_N`` over the sizes. Both sides are floored at the *target's*
    floor, so it is not symmetric when the two peaks differ. Identical signals give 0; a gain of
    ``g`` dB that keeps every bin above the floor gives ``|g|``; sound below the floor on both
    sides gives 0; a bin where one side is silent gives at most ``floor_db``. A silent target's
    floor is ``LSD_MIN_FLOOR``.
    """
    target, estimate = _check_lengths("log_spectral_distance_db", target, estimate)
    distances = []
    for fft_size in fft_sizes:
        s_t = stft_magnitude(target, fft_size, overlap)
        floor = lsd_floor(s_t, floor_db)
        diff = _floored_db(s_t, floor) - _floored_db(stft_magnitude(estimate, fft_size, overlap), floor)
        distances.append(float(np.mean(np.abs(diff), dtype=np.float64)))
    return float(np.mean(distances))


def loudness_error_db(target, estimate, sample_rate: int, hop: int) -> float:
    """Mean ``|L − L̂|`` (dB) of the A-weighted loudness curves, floored at −80 dB, over non-silent frames."""
    return _loudness_error(_floored_loudness(target, sample_rate, hop), _floored_loudness(estimate, sample_rate, hop))


def _floored_loudness(audio, sample_rate: int, hop: int) -> np.ndarray:
    return np.maximum(loudness_db(audio, sample_rate, hop), LOUDNESS_FLOOR_DB)


def _loudness_error(lt: np.ndarray, le: np.ndarray) -> float:
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


@dataclass
class Scores:
    """One system's metrics on one clip (module docstring)."""

    spectral_distance: float
    lsd_db: float
    loudness_error_db: float
    balance_db: list = field(default_factory=list)  # per BALANCE_BANDS_HZ band, system − recording

    @property
    def balance_error_db(self) -> float:
        return float(np.mean(np.abs(self.balance_db))) if self.balance_db else math.nan

    def to_dict(self) -> dict:
        return {"spectral_distance": self.spectral_distance, "lsd_db": self.lsd_db,
                "loudness_error_db": self.loudness_error_db, "balance_db": list(self.balance_db),
                "balance_error_db": self.balance_error_db}


class Reference:
    """A recording's spectra, loudness and band shares, computed once and scored against each system.

    Args:
        audio: [S] the recording.
        sample_rate, hop: Hz, and samples per loudness frame.
        floor_db: the LSD's floor below the recording's peak (:func:`log_spectral_distance_db`).
    """

    def __init__(self, audio, sample_rate: int, hop: int, floor_db: float = LSD_FLOOR_DB):
        self.audio = np.asarray(audio, np.float32).reshape(-1)
        self.sample_rate, self.hop = sample_rate, hop
        self.magnitudes = [stft_magnitude(self.audio, n) for n in FFT_SIZES]
        self.log_magnitudes = [np.log(m + LOG_EPSILON) for m in self.magnitudes]
        self.floors = [lsd_floor(m, floor_db) for m in self.magnitudes]
        self.floored_db = [_floored_db(m, f) for m, f in zip(self.magnitudes, self.floors)]
        self.loudness_db = _floored_loudness(self.audio, sample_rate, hop)
        self.band_shares_db = band_shares_db(self.audio, sample_rate)

    def score(self, estimate) -> Scores:
        """Every metric of ``estimate`` [S] against the recording (the same numbers as the functions above)."""
        _, estimate = _check_lengths("score", self.audio, estimate)
        spectral, lsd = 0.0, []
        for fft_size, s_t, log_t, floor, db_t in zip(FFT_SIZES, self.magnitudes, self.log_magnitudes, self.floors,
                                                     self.floored_db):
            s_e = stft_magnitude(estimate, fft_size)
            spectral += float(np.mean(np.abs(s_t - s_e), dtype=np.float64))
            spectral += float(np.mean(np.abs(log_t - np.log(s_e + LOG_EPSILON)), dtype=np.float64))
            lsd.append(float(np.mean(np.abs(db_t - _floored_db(s_e, floor)), dtype=np.float64)))
        loudness = _loudness_error(self.loudness_db, _floored_loudness(estimate, self.sample_rate, self.hop))
        balance = band_shares_db(estimate, self.sample_rate) - self.band_shares_db
        return Scores(spectral, float(np.mean(lsd)), loudness, [float(v) for v in balance])


__all__ = ["BALANCE_BANDS_HZ", "FFT_SIZES", "LSD_FLOOR_DB", "Reference", "Scores", "band_balance_db", "band_shares_db",
           "hann_periodic",
           "log_spectral_distance_db", "loudness_error_db", "lsd_floor", "spectral_distance", "stft_magnitude"]
