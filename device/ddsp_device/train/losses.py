"""Multi-scale spectral loss, as magenta/ddsp's ``SpectralLoss`` (Engel et al. 2020).

For each FFT size, the STFT magnitudes of target and estimate (Hann window, 75 % overlap) are
compared by mean absolute difference, linearly and in log; the sum over sizes is the loss. The
same function serves as the "spectral distance" reported on validation audio.
"""

from __future__ import annotations

import tensorflow as tf

FFT_SIZES = (2048, 1024, 512, 256, 128, 64)
#: Added to magnitudes before the log (ddsp's ``safe_log``).
LOG_EPSILON = 1e-5


def stft_magnitude(audio, fft_size: int, overlap: float = 0.75):
    """``|STFT|`` of ``[B, S]`` audio: ``[B, frames, fft_size // 2 + 1]`` (Hann, padded at the end)."""
    audio = tf.convert_to_tensor(audio, tf.float32)
    frame_step = max(1, int(fft_size * (1.0 - overlap)))
    return tf.abs(
        tf.signal.stft(audio, frame_length=fft_size, frame_step=frame_step, fft_length=fft_size, pad_end=True)
    )


def multiscale_spectral_loss(
    target,
    estimate,
    fft_sizes=FFT_SIZES,
    mag_weight: float = 1.0,
    logmag_weight: float = 1.0,
    overlap: float = 0.75,
):
    """``Σ_sizes mag_weight · mean|S − Ŝ| + logmag_weight · mean|log(S + ε) − log(Ŝ + ε)|``.

    Args:
        target, estimate: ``[B, S]`` audio (or ``[S]``), same length.
        fft_sizes: the scales.
        mag_weight, logmag_weight: weights of the linear and log terms.
        overlap: STFT overlap (0.75: hop = size / 4).

    Returns:
        A scalar float32 tensor (the mean over the batch).
    """
    target = tf.convert_to_tensor(target, tf.float32)
    estimate = tf.convert_to_tensor(estimate, tf.float32)
    if target.shape.rank == 1:
        target, estimate = target[None], estimate[None]
    loss = tf.constant(0.0, tf.float32)
    for fft_size in fft_sizes:
        s_target = stft_magnitude(target, fft_size, overlap)
        s_estimate = stft_magnitude(estimate, fft_size, overlap)
        if mag_weight:
            loss += mag_weight * tf.reduce_mean(tf.abs(s_target - s_estimate))
        if logmag_weight:
            log_diff = tf.math.log(s_target + LOG_EPSILON) - tf.math.log(s_estimate + LOG_EPSILON)
            loss += logmag_weight * tf.reduce_mean(tf.abs(log_diff))
    return loss
