"""A slow, obvious float64 implementation of the synthesis in models/README.md.

Written from the contract, not from the streaming code, so tests can hold the streaming
synthesiser to the documented maths.
"""

import numpy as np


def frame_amplitudes(amps, dist, f0_hz, loudness, sample_rate):
    """``[n_frames, K]`` per-harmonic amplitudes (README "Controls")."""
    amps = np.maximum(np.asarray(amps, np.float64), 0)
    dist = np.maximum(np.asarray(dist, np.float64), 0)
    k = np.arange(1, amps.shape[1] + 1)
    mask = (k[None, :] * np.asarray(f0_hz)[:, None]) < sample_rate / 2
    d = dist * mask
    A = amps * d / (d.sum(axis=1, keepdims=True) + 1e-7)
    A[np.asarray(loudness) <= 0] = 0.0
    return A


def harmonic_reference(f0_frames_hz, amp_frames, hop, sample_rate):
    """Samples of the harmonic part for frames 0..n-1 (segment n interpolates n-1 -> n)."""
    f0_frames_hz = np.asarray(f0_frames_hz, np.float64)
    amp_frames = np.asarray(amp_frames, np.float64)
    n_frames, K = amp_frames.shape
    f0_prev = np.concatenate([[f0_frames_hz[0]], f0_frames_hz[:-1]])
    a_prev = np.concatenate([np.zeros((1, K)), amp_frames[:-1]])
    w = (np.arange(hop) + 1.0) / hop
    f0 = (f0_prev[:, None] + w[None, :] * (f0_frames_hz - f0_prev)[:, None]).reshape(-1)
    A = (a_prev[:, None, :] + w[None, :, None] * (amp_frames - a_prev)[:, None, :]).reshape(-1, K)
    phase = np.cumsum(2 * np.pi * f0 / sample_rate) % (2 * np.pi)
    k = np.arange(1, K + 1)
    mask = (k[None, :] * f0[:, None]) < sample_rate / 2
    return np.sum(A * mask * np.sin(k[None, :] * phase[:, None]), axis=1)


def noise_ir(mags):
    """The 128-tap causal FIR for one frame of 65 magnitudes."""
    h0 = np.fft.irfft(np.asarray(mags, np.float64))
    n = len(h0)
    win = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)
    return win * np.roll(h0, n // 2)


def noise_reference(mag_frames, white, hop):
    """Filtered noise: each hop of ``white`` convolved with its frame's FIR, overlap-added."""
    n_frames = len(mag_frames)
    out = np.zeros(n_frames * hop + 127)
    for n in range(n_frames):
        seg = white[n * hop : (n + 1) * hop]
        out[n * hop : n * hop + hop + 127] += np.convolve(seg, noise_ir(mag_frames[n]))
    return out[: n_frames * hop]
