"""Filtered noise, streamed one hop at a time (models/README.md, "Noise part").

Each frame's 65 magnitudes (linearly spaced from 0 Hz to the model's Nyquist) define a 128-tap
linear-phase FIR: the zero-phase impulse response ``irfft(mags)``, Hann-windowed and shifted by
64 samples to be causal, as in DDSP's frequency filter. Because ``irfft`` of real magnitudes is a
cosine series, the whole construction is one fixed ``[128, 65]`` matrix: ``ir = basis @ mags``.
Each hop's white noise is filtered with its frame's FIR and the tail overlap-added into the next
hops.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

N_NOISE_BANDS = 65
IR_SIZE = 2 * (N_NOISE_BANDS - 1)  # 128


def noise_basis(sample_rate: int, model_sample_rate_hz: int, n_bands: int = N_NOISE_BANDS) -> np.ndarray:
    """The ``[ir_size, n_bands]`` float32 matrix that turns magnitudes into the causal FIR.

    ``ir[t] = hann(t) · irfft(M)[(t − ir_size/2) mod ir_size]`` where ``M`` are the model's
    magnitudes resampled (linearly in Hz) onto the bands of ``sample_rate``.

    Args:
        sample_rate: output sample rate in Hz.
        model_sample_rate_hz: the rate the model's bands were defined at (its metadata).
        n_bands: number of magnitudes (65).
    """
    ir_size = 2 * (n_bands - 1)
    t = np.arange(ir_size, dtype=np.float64)
    c = np.arange(n_bands, dtype=np.float64)
    window = 0.5 - 0.5 * np.cos(2.0 * np.pi * t / ir_size)  # periodic Hann
    weight = np.full(n_bands, 2.0)
    weight[0] = weight[-1] = 1.0
    m = (t - ir_size // 2) % ir_size
    basis = window[:, None] * weight[None, :] * np.cos(2.0 * np.pi * np.outer(m, c) / ir_size) / ir_size
    if sample_rate != model_sample_rate_hz:
        out_hz = c * sample_rate / ir_size
        model_hz = c * model_sample_rate_hz / ir_size
        resample = np.zeros((n_bands, n_bands))
        for row, hz in enumerate(out_hz):
            if hz > model_hz[-1]:
                continue  # beyond the model's Nyquist: zero
            i = min(int(np.searchsorted(model_hz, hz, side="right")) - 1, n_bands - 2)
            frac = (hz - model_hz[i]) / (model_hz[i + 1] - model_hz[i])
            resample[row, i] = 1.0 - frac
            resample[row, i + 1] = frac
        # numpy's own loop, not ``@``: a matrix product goes to OpenBLAS, which gives a thread
        # that calls it while another thread is inside it (the audio thread, every period) a
        # 32 MB buffer of its own, kept for good. This runs on the control thread at a model
        # swap, so ``@`` made the daemon's memory jump by 32 MB at a random reload.
        basis = np.einsum("tb,bm->tm", basis, resample)
    return basis.astype(np.float32)


class NoiseState:
    """Generator, overlap-add tail and work space for :func:`noise_block`.

    Args:
        hop: samples per hop.
        seed: seed of the white-noise generator (PCG64); the same seed gives the same audio.
        basis: from :func:`noise_basis`.
    """

    def __init__(self, hop: int, seed: int, basis: np.ndarray):
        self.hop = hop
        self.basis = basis
        ir_size = basis.shape[0]
        self.ir_size = ir_size
        self.rng = np.random.Generator(np.random.PCG64(seed))
        self.ir_reversed = np.empty(ir_size, np.float32)
        self.ir = np.empty(ir_size, np.float32)
        # Zero-padded noise so a sliding window over it is the convolution matrix (a view).
        self.padded = np.zeros(hop + 2 * (ir_size - 1), np.float32)
        self.noise = self.padded[ir_size - 1 : ir_size - 1 + hop]
        self.windows = sliding_window_view(self.padded, ir_size)[: hop + ir_size - 1]
        self.filtered = np.empty(hop + ir_size - 1, np.float32)
        self.tail = np.zeros(hop + ir_size - 1, np.float32)  # overlap-add accumulator


def noise_block(noise_mags: np.ndarray, state: NoiseState, out: np.ndarray) -> NoiseState:
    """Synthesise one hop of filtered noise.

    Args:
        noise_mags: ``[n_bands]`` float32 magnitudes for this frame (≥ 0).
        state: generator and overlap tail, updated in place.
        out: ``[hop]`` float32, receives the audio.

    Returns:
        ``state``.
    """
    s = state
    hop = s.hop
    np.dot(s.basis, noise_mags, out=s.ir)
    s.ir_reversed[:] = s.ir[::-1]
    s.rng.random(out=s.noise, dtype=np.float32)
    np.multiply(s.noise, 2.0, out=s.noise)
    np.subtract(s.noise, 1.0, out=s.noise)
    # filtered[i] = Σ_t ir[t] · noise[i − t], i = 0 .. hop + ir_size − 2
    np.einsum("ij,j->i", s.windows, s.ir_reversed, out=s.filtered)
    np.add(s.tail, s.filtered, out=s.tail)
    out[:] = s.tail[:hop]
    keep = s.ir_size - 1
    s.tail[:keep] = s.tail[hop : hop + keep]
    s.tail[keep:] = 0.0
    return s
