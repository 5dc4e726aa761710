"""Harmonic oscillator bank, streamed one hop at a time (models/README.md, "Harmonic part").

64 phase-continuous sinusoids at ``k · f0``; f0 and each harmonic's amplitude are interpolated
linearly per sample from the previous frame to the current one across the hop. The phase of the
fundamental is the only state; harmonic ``k`` uses ``k · φ``, so continuity of ``φ`` (mod 2π)
makes every harmonic continuous.

Vectorised across harmonics and samples: one ``[hop, n_harmonics]`` sine table per hop, then
two matrix-vector products (the amplitude ramp ``A0 + w · (A1 − A0)`` distributes over the sum).
"""

from __future__ import annotations

import math

import numpy as np

TWO_PI = 2.0 * math.pi


class HarmonicScratch:
    """Preallocated work space for :func:`harmonic_block` at one hop size.

    Args:
        n_harmonics: number of oscillators.
        hop: samples per hop (``H``).
    """

    def __init__(self, n_harmonics: int, hop: int):
        self.hop = hop
        self.n_harmonics = n_harmonics
        self.k64 = np.arange(1, n_harmonics + 1, dtype=np.float64)
        self.k32 = self.k64.astype(np.float32)
        #: ``w[j] = (j + 1) / H``: the interpolation weight of the current frame at sample j.
        self.w64 = (np.arange(hop, dtype=np.float64) + 1.0) / hop
        self.w32 = self.w64.astype(np.float32)
        self.f0_hz = np.empty(hop, np.float64)
        self.phase = np.empty(hop, np.float64)
        self.phase32 = np.empty(hop, np.float32)
        self.f0_32 = np.empty(hop, np.float32)
        self.table = np.empty((hop, n_harmonics), np.float32)
        self.kf0_hz = np.empty((hop, n_harmonics), np.float32)
        self.above = np.empty((hop, n_harmonics), np.bool_)
        self.delta = np.empty(n_harmonics, np.float32)
        self.ramp = np.empty(hop, np.float32)


def harmonic_block(
    f0_from_hz: float,
    f0_to_hz: float,
    amps_from: np.ndarray,
    amps_to: np.ndarray,
    phase_rad: float,
    sample_rate: int,
    out: np.ndarray,
    scratch: HarmonicScratch,
) -> float:
    """Synthesise one hop of the harmonic part.

    Args:
        f0_from_hz, f0_to_hz: fundamental at the previous and the current frame, Hz.
        amps_from, amps_to: ``[n_harmonics]`` float32 per-harmonic amplitudes at those frames
            (already masked and normalised, see :mod:`ddsp_device.dsp.controls`).
        phase_rad: phase of the fundamental before the first sample, radians in [0, 2π).
        sample_rate: output sample rate in Hz.
        out: ``[hop]`` float32, receives the audio.
        scratch: work space for this hop size.

    Returns:
        The fundamental's phase after the last sample, in [0, 2π): pass it to the next call.
    """
    s = scratch
    # f0(s) = f0_from + w · (f0_to − f0_from)
    np.multiply(s.w64, f0_to_hz - f0_from_hz, out=s.f0_hz)
    np.add(s.f0_hz, f0_from_hz, out=s.f0_hz)
    # φ(s) = (φ(s−1) + 2π f0(s) / sr) mod 2π
    np.multiply(s.f0_hz, TWO_PI / sample_rate, out=s.phase)
    np.add.accumulate(s.phase, out=s.phase)
    np.add(s.phase, phase_rad, out=s.phase)
    np.mod(s.phase, TWO_PI, out=s.phase)
    next_phase = float(s.phase[-1])

    np.copyto(s.phase32, s.phase, casting="same_kind")
    # k·φ table. einsum writes straight into `out`; a broadcast np.multiply would allocate a
    # 64 KB iteration buffer every hop.
    np.einsum("i,j->ij", s.phase32, s.k32, out=s.table)
    np.sin(s.table, out=s.table)

    # Per-sample Nyquist mask, only needed when some harmonic crosses Nyquist inside the hop
    # (a harmonic above Nyquist at both ends already has zero amplitude at both ends).
    nyquist_hz = 0.5 * sample_rate
    lo_hz, hi_hz = (f0_from_hz, f0_to_hz) if f0_from_hz <= f0_to_hz else (f0_to_hz, f0_from_hz)
    n = s.n_harmonics
    if hi_hz * n >= nyquist_hz and (lo_hz <= 0.0 or math.ceil(nyquist_hz / hi_hz) != math.ceil(nyquist_hz / lo_hz)):
        np.copyto(s.f0_32, s.f0_hz, casting="same_kind")
        np.einsum("i,j->ij", s.f0_32, s.k32, out=s.kf0_hz)
        np.greater_equal(s.kf0_hz, nyquist_hz, out=s.above)
        np.copyto(s.table, 0.0, where=s.above)

    # Σ_k (A0_k + w (A1_k − A0_k)) sin(k φ) = T·A0 + w ⊙ (T·ΔA)
    np.subtract(amps_to, amps_from, out=s.delta)
    np.dot(s.table, amps_from, out=out)
    np.dot(s.table, s.delta, out=s.ramp)
    np.multiply(s.ramp, s.w32, out=s.ramp)
    np.add(out, s.ramp, out=out)
    return next_phase
