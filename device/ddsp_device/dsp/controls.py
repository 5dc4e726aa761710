"""Model outputs -> synthesiser controls (models/README.md, "Controls").

This stage is kept apart from synthesis (magenta/ddsp's convention): it clamps the model's
outputs, silences harmonics at or above Nyquist, renormalises the harmonic distribution and
applies the silence gate. Everything writes into caller-owned arrays.
"""

from __future__ import annotations

import math

import numpy as np

#: Added to the distribution's sum before dividing, so an all-zero distribution gives silence.
DIST_EPSILON = 1e-7


def harmonic_amplitudes(
    harmonic_amps: np.ndarray,
    harmonic_dist: np.ndarray,
    f0_hz: float,
    loudness: float,
    sample_rate: int,
    out: np.ndarray,
    scratch: np.ndarray,
) -> np.ndarray:
    """Per-harmonic linear amplitude for one frame.

    ``A[k] = amps[k] · dist[k] · m[k] / (Σ dist · m + ε)`` with ``m[k] = [k · f0_hz < sr / 2]``;
    all zero when ``loudness <= 0`` (the silence gate).

    Args:
        harmonic_amps, harmonic_dist: ``[n_harmonics]`` model outputs (clamped to ≥ 0 here).
        f0_hz: the frame's fundamental in Hz (the control value, full precision).
        loudness: the frame's loudness, 0..1.
        sample_rate: output sample rate in Hz.
        out: ``[n_harmonics]`` float32, receives the amplitudes.
        scratch: ``[n_harmonics]`` float32 work space.

    Returns:
        ``out``.
    """
    if not loudness > 0.0:  # also catches NaN
        out.fill(0.0)
        return out
    # Harmonics k with k · f0 < nyq are 1 .. n_below; the rest are silenced (m[k] = 0).
    n_below = len(out) if f0_hz <= 0.0 else min(len(out), math.ceil(0.5 * sample_rate / f0_hz) - 1)
    np.maximum(harmonic_dist, 0.0, out=scratch)
    total = float(scratch[:n_below].sum()) + DIST_EPSILON
    np.maximum(harmonic_amps, 0.0, out=out)
    np.multiply(out, scratch, out=out)
    np.multiply(out, 1.0 / total, out=out)
    out[n_below:] = 0.0
    return out


def noise_magnitudes(noise_mags: np.ndarray, loudness: float, out: np.ndarray) -> np.ndarray:
    """Clamp the model's ``[n_noise_bands]`` magnitudes to ≥ 0 into ``out``; zero when silent."""
    if not loudness > 0.0:
        out.fill(0.0)
        return out
    np.maximum(noise_mags, 0.0, out=out)
    return out
