"""The synthesiser in TensorFlow, for training: the maths of ``models/README.md`` ("Synthesis").

The box synthesises in numpy, one hop at a time (:mod:`ddsp_device.dsp`); this module renders
whole batches of clips at once with the same maths, so a model trained through it plays the same
on the box (``tests/train/test_synth_tf.py`` proves it sample by sample). As in magenta/ddsp, the
*controls* step (clamp, Nyquist mask, renormalise, silence gate) is kept apart from synthesis.

Shapes: ``B`` clips, ``F`` frames, ``H`` samples per hop, ``K`` = 64 harmonics, 65 noise bands,
``S = F · H`` samples. Everything is differentiable with respect to the model's outputs
(``harmonic_amps``, ``harmonic_dist``, ``noise_mags``); ``f0_hz`` and ``loudness`` are data.

The noise bands are defined at ``sample_rate`` (the model's own rate): training renders at the
model's rate, so the runtime's band resampling for other output rates has no counterpart here.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

#: Added to the distribution's sum before dividing (as ``ddsp_device.dsp.controls.DIST_EPSILON``).
DIST_EPSILON = 1e-7


def synth_controls(f0_hz, loudness, harmonic_amps, harmonic_dist, noise_mags, sample_rate: int):
    """Model outputs → synthesiser controls (models/README.md, "Controls").

    ``A[n,k] = max(a,0) · max(d,0) · m / (Σ_k' max(d,0) · m + 1e−7)`` with ``m[n,k] = [k · f0_hz[n]
    < sr/2]``; ``N = max(noise_mags, 0)``; both zero where ``loudness ≤ 0``.

    Args:
        f0_hz: ``[B, F]`` fundamental per frame, Hz (full precision).
        loudness: ``[B, F]`` 0..1.
        harmonic_amps, harmonic_dist: ``[B, F, K]`` model outputs.
        noise_mags: ``[B, F, n_bands]`` model outputs.
        sample_rate: audio rate, Hz.

    Returns:
        ``(amplitudes [B, F, K], noise_mags [B, F, n_bands])``, float32.
    """
    f0_hz = tf.convert_to_tensor(f0_hz, tf.float32)
    loudness = tf.convert_to_tensor(loudness, tf.float32)
    amps = tf.nn.relu(tf.convert_to_tensor(harmonic_amps, tf.float32))
    dist = tf.nn.relu(tf.convert_to_tensor(harmonic_dist, tf.float32))
    mags = tf.nn.relu(tf.convert_to_tensor(noise_mags, tf.float32))
    n_harmonics = amps.shape[-1]
    k = tf.range(1, n_harmonics + 1, dtype=tf.float64)
    below = tf.cast(f0_hz, tf.float64)[..., None] * k < 0.5 * sample_rate
    mask = tf.cast(below, tf.float32)
    dist = dist * mask
    total = tf.reduce_sum(dist, axis=-1, keepdims=True) + DIST_EPSILON
    gate = tf.cast(loudness > 0.0, tf.float32)[..., None]  # NaN loudness gates too
    amplitudes = amps * dist / total * gate
    return amplitudes, mags * gate


def harmonic_synth(f0_hz, amplitudes, hop: int, sample_rate: int):
    """The harmonic part (models/README.md, "Harmonic part"), phase starting at 0.

    Per sample ``s = n·H + j``: ``w = (j+1)/H``; f0 and each ``A_k`` interpolated linearly from
    frame ``n−1`` to frame ``n`` (``f0_hz[−1] = f0_hz[0]``, ``A[−1] = 0``); the phase accumulated in
    float64 and wrapped to [0, 2π); harmonics at or above Nyquist silenced per sample.

    Args:
        f0_hz: ``[B, F]`` Hz. Values at or above Nyquist are clamped to Nyquist, as the engine does.
        amplitudes: ``[B, F, K]`` from :func:`synth_controls`.
        hop: ``H``, samples per frame.
        sample_rate: Hz.

    Returns:
        ``[B, F · H]`` float32.
    """
    nyquist_hz = 0.5 * sample_rate
    f0 = tf.minimum(tf.cast(tf.convert_to_tensor(f0_hz, tf.float32), tf.float64), nyquist_hz)
    amplitudes = tf.convert_to_tensor(amplitudes, tf.float32)
    batch, n_frames = tf.shape(f0)[0], tf.shape(f0)[1]
    n_harmonics = amplitudes.shape[-1]

    w64 = (tf.range(hop, dtype=tf.float64) + 1.0) / hop  # [H]
    f0_prev = tf.concat([f0[:, :1], f0[:, :-1]], axis=1)
    f0_s = f0_prev[..., None] + w64 * (f0 - f0_prev)[..., None]  # [B, F, H] float64
    f0_s = tf.reshape(f0_s, [batch, n_frames * hop])
    phase = tf.math.floormod(tf.cumsum(f0_s * (2.0 * math.pi / sample_rate), axis=1), 2.0 * math.pi)

    k32 = tf.range(1, n_harmonics + 1, dtype=tf.float32)
    table = tf.sin(tf.cast(phase, tf.float32)[..., None] * k32)  # [B, S, K]
    above = tf.cast(f0_s, tf.float32)[..., None] * k32 >= nyquist_hz
    table = tf.where(above, tf.zeros_like(table), table)
    table = tf.stop_gradient(tf.reshape(table, [batch, n_frames, hop, n_harmonics]))

    # Σ_k (A0 + w (A1 − A0)) sin(kφ) = T·A0 + w ⊙ (T·ΔA), per hop
    a_prev = tf.concat([tf.zeros_like(amplitudes[:, :1]), amplitudes[:, :-1]], axis=1)
    w32 = tf.cast(w64, tf.float32)
    harm = tf.einsum("bfhk,bfk->bfh", table, a_prev) + w32 * tf.einsum("bfhk,bfk->bfh", table, amplitudes - a_prev)
    return tf.reshape(harm, [batch, n_frames * hop])


def noise_ir(noise_mags):
    """Per-frame causal FIR from the magnitudes (models/README.md, "Noise part").

    ``ir[t] = hann(t) · irfft(N)[(t − ir/2) mod ir]``, a periodic Hann window of ``ir = 2 (n_bands
    − 1)`` taps (128 for 65 bands): DDSP's frequency filter, delayed by ``ir/2`` samples.

    Args:
        noise_mags: ``[B, F, n_bands]`` controls (≥ 0).

    Returns:
        ``[B, F, ir]`` float32.
    """
    mags = tf.convert_to_tensor(noise_mags, tf.float32)
    ir_size = 2 * (mags.shape[-1] - 1)
    h0 = tf.signal.irfft(tf.complex(mags, tf.zeros_like(mags)), fft_length=[ir_size])
    shifted = tf.roll(h0, shift=ir_size // 2, axis=-1)  # shifted[t] = h0[(t − ir/2) mod ir]
    t = np.arange(ir_size)
    window = (0.5 - 0.5 * np.cos(2.0 * np.pi * t / ir_size)).astype(np.float32)
    return shifted * window


def filtered_noise(ir, white_noise, hop: int):
    """Filter each hop of white noise with its frame's FIR and overlap-add the tails.

    ``noise(s) = Σ_n Σ_t ir[n,t] · u_n(s − t)``, ``u_n`` the noise of segment ``n``; the tail past
    the last segment is dropped.

    Args:
        ir: ``[B, F, ir]`` from :func:`noise_ir`.
        white_noise: ``[B, F · H]``, uniform in [−1, 1).
        hop: ``H``.

    Returns:
        ``[B, F · H]`` float32.
    """
    ir = tf.convert_to_tensor(ir, tf.float32)
    white_noise = tf.convert_to_tensor(white_noise, tf.float32)
    batch, n_frames, ir_size = tf.shape(ir)[0], tf.shape(ir)[1], ir.shape[-1]
    segments = tf.reshape(white_noise, [batch, n_frames, hop])
    length = hop + ir_size - 1  # full linear convolution of one segment
    n_fft = 1 << (length - 1).bit_length()
    spectrum = tf.signal.rfft(segments, fft_length=[n_fft]) * tf.signal.rfft(ir, fft_length=[n_fft])
    filtered = tf.signal.irfft(spectrum, fft_length=[n_fft])[..., :length]  # [B, F, H + ir − 1]
    audio = tf.signal.overlap_and_add(filtered, frame_step=hop)
    return audio[:, : n_frames * hop]


def white_noise(batch: int, n_samples: int, seed=None):
    """``[batch, n_samples]`` uniform white noise in [−1, 1) (tf.random; ``seed`` optional)."""
    return tf.random.uniform([batch, n_samples], -1.0, 1.0, seed=seed)


def runtime_white_noise(seed: int, n_frames: int, hop: int) -> np.ndarray:
    """The white noise the box draws with ``[synth] noise_seed = seed``: ``[n_frames · hop]`` float32.

    Same generator (PCG64) and draw order as :class:`ddsp_device.dsp.noise.NoiseState`: one
    float32 draw of ``hop`` samples per segment, mapped to ``2u − 1``.
    """
    rng = np.random.Generator(np.random.PCG64(seed))
    out = np.empty((n_frames, hop), np.float32)
    for row in out:
        rng.random(out=row, dtype=np.float32)
    out *= np.float32(2.0)
    out -= np.float32(1.0)
    return out.reshape(-1)


def synthesize(
    f0_hz,
    loudness,
    harmonic_amps,
    harmonic_dist,
    noise_mags,
    hop: int,
    sample_rate: int,
    noise=None,
) -> dict:
    """Model outputs → audio: controls, harmonic part, noise part.

    Args:
        f0_hz, loudness: ``[B, F]``.
        harmonic_amps, harmonic_dist: ``[B, F, 64]``; noise_mags: ``[B, F, 65]`` (model outputs).
        hop: samples per frame; sample_rate: Hz.
        noise: optional ``[B, F · H]`` white noise in [−1, 1) (default: fresh ``tf.random``).

    Returns:
        ``{"audio", "harmonic", "noise"}``, each ``[B, F · H]`` float32 (no output stage:
        the box's reverb, DC blocker and limiter are not part of training).
    """
    amplitudes, mags = synth_controls(f0_hz, loudness, harmonic_amps, harmonic_dist, noise_mags, sample_rate)
    harmonic = harmonic_synth(f0_hz, amplitudes, hop, sample_rate)
    if noise is None:
        shape = tf.shape(harmonic)
        noise = white_noise(shape[0], shape[1])
    noise_audio = filtered_noise(noise_ir(mags), noise, hop)
    return {"audio": harmonic + noise_audio, "harmonic": harmonic, "noise": noise_audio}
