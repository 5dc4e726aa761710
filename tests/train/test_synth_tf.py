"""The TensorFlow synthesiser (training) renders what the numpy synthesiser (the box) renders.

The numpy side is driven frame by frame exactly as :class:`ddsp_device.engine.Engine` drives it
(controls stage, harmonic bank, noise filter), without the output stage (reverb, DC blocker,
limiter), which training does not model.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from ddsp_device.dsp.controls import harmonic_amplitudes, noise_magnitudes  # noqa: E402
from ddsp_device.dsp.harmonic import HarmonicScratch, harmonic_block  # noqa: E402
from ddsp_device.dsp.noise import NoiseState, noise_basis, noise_block  # noqa: E402
from ddsp_device.train import synth_tf  # noqa: E402

SR = 48000
NYQ = SR / 2
K = 64
BANDS = 65


def render_numpy(f0_hz, loudness, amps, dist, mags, hop, seed=0):
    """The engine's per-hop synthesis (``Engine._render_hop`` without the output stage)."""
    n_frames = len(f0_hz)
    scratch = HarmonicScratch(K, hop)
    noise_state = NoiseState(hop, seed, noise_basis(SR, SR, BANDS))
    amps_from = np.zeros(K, np.float32)
    amps_to = np.zeros(K, np.float32)
    work = np.zeros(K, np.float32)
    noise_controls = np.zeros(BANDS, np.float32)
    harm = np.zeros(n_frames * hop, np.float32)
    noise = np.zeros(n_frames * hop, np.float32)
    phase = 0.0
    f0_prev = None
    for n in range(n_frames):
        f0 = float(f0_hz[n])
        level = float(loudness[n])
        synth_f0 = f0 if f0 < NYQ else NYQ
        if f0_prev is None:
            f0_prev = synth_f0
        harmonic_amplitudes(amps[n], dist[n], synth_f0, level, SR, amps_to, work)
        noise_magnitudes(mags[n], level, noise_controls)
        segment = slice(n * hop, (n + 1) * hop)
        phase = harmonic_block(f0_prev, synth_f0, amps_from, amps_to, phase, SR, harm[segment], scratch)
        noise_block(noise_controls, noise_state, noise[segment])
        amps_from, amps_to = amps_to, amps_from
        f0_prev = synth_f0
    return harm, noise


def control_sequence(n_frames, hop, rng):
    """Glides across Nyquist (slow and within one hop), silence-gate frames, negative outputs."""
    frame_rate = SR / hop
    t = np.arange(n_frames) / frame_rate
    f0 = 220.0 * 2.0 ** (4.0 * t / t[-1])  # 220 Hz → 3520 Hz: harmonics cross Nyquist throughout
    f0[40:44] = (700.0, 1500.0, 400.0, 3000.0)  # jumps: crossings inside one hop, both directions
    f0[60:63] = (30000.0, 12000.0, 24000.0)  # at and above Nyquist (clamped like the engine)
    f0 = f0 * (1.0 + 0.01 * np.sin(2 * np.pi * 6.0 * t))  # vibrato
    loudness = 0.5 + 0.4 * np.sin(2 * np.pi * 1.5 * t)
    loudness[:3] = 0.0  # starts silent
    loudness[20:25] = 0.0  # silence gate mid-note
    loudness[30] = -0.2
    loudness[50] = 1.3
    amps = rng.uniform(-0.1, 1.0, (n_frames, K)).astype(np.float32)
    dist = (rng.uniform(-0.05, 1.0, (n_frames, K)) / np.arange(1, K + 1)).astype(np.float32)
    dist[70:72] = 0.0  # all-zero distribution: silence through the epsilon
    mags = rng.uniform(-0.01, 0.05, (n_frames, BANDS)).astype(np.float32)
    return f0.astype(np.float32), loudness.astype(np.float32), amps, dist, mags


def render_tf(f0, loudness, amps, dist, mags, hop, noise):
    out = synth_tf.synthesize(f0[None], loudness[None], amps[None], dist[None], mags[None], hop, SR, noise=noise[None])
    return out["harmonic"].numpy()[0], out["noise"].numpy()[0], out["audio"].numpy()[0]


@pytest.mark.parametrize("hop", [128, 192])
def test_harmonic_and_noise_match_the_runtime_sample_by_sample(hop):
    rng = np.random.default_rng(hop)
    controls = control_sequence(120, hop, rng)
    harm_np, noise_np = render_numpy(*controls, hop, seed=7)
    white = synth_tf.runtime_white_noise(7, len(controls[0]), hop)
    harm_tf, noise_tf, audio_tf = render_tf(*controls, hop, white)

    peak = np.max(np.abs(harm_np))
    assert peak > 0.1
    harm_error = np.max(np.abs(harm_tf - harm_np)) / peak
    assert harm_error < 1e-4, harm_error
    # the silence gate: frame 20..24 silent → segments 21..24 are exactly zero in both
    assert np.all(harm_tf[21 * hop : 24 * hop] == 0.0)

    noise_peak = np.max(np.abs(noise_np))
    assert noise_peak > 0.01
    noise_error = np.max(np.abs(noise_tf - noise_np)) / noise_peak
    assert noise_error < 1e-5, noise_error
    np.testing.assert_allclose(audio_tf, harm_tf + noise_tf, atol=1e-7)


def test_glide_across_nyquist_follows_the_written_formula():
    """A fast glide, checked against models/README.md's formulas written out in float64."""
    hop, n_frames = 128, 64
    f0 = np.linspace(300.0, 900.0, n_frames).astype(np.float32)
    amps = np.ones((n_frames, K), np.float32)
    dist = np.ones((n_frames, K), np.float32)
    loudness = np.ones(n_frames, np.float32)
    amplitudes, _ = synth_tf.synth_controls(
        f0[None], loudness[None], amps[None], dist[None], np.zeros((1, n_frames, BANDS)), SR
    )
    amplitudes = amplitudes.numpy()[0]
    kept = (amplitudes > 0).sum(axis=1)
    np.testing.assert_array_equal(kept, np.minimum(K, np.ceil(NYQ / f0) - 1))
    harm = synth_tf.harmonic_synth(f0[None], amplitudes[None], hop, SR).numpy()[0]

    k = np.arange(1, K + 1)
    w = (np.arange(hop) + 1.0) / hop
    f0_64 = f0.astype(np.float64)
    a_64 = amplitudes.astype(np.float64)
    f0_prev = np.concatenate([f0_64[:1], f0_64[:-1]])
    a_prev = np.concatenate([np.zeros((1, K)), a_64[:-1]])
    f0_s = (f0_prev[:, None] + w * (f0_64 - f0_prev)[:, None]).reshape(-1)
    a_s = (a_prev[:, None, :] + w[None, :, None] * (a_64 - a_prev)[:, None, :]).reshape(-1, K)
    phase = np.mod(np.cumsum(2 * np.pi * f0_s / SR), 2 * np.pi)
    # the mask in float32, as the runtime evaluates it (f0(s) = 24000/45 Hz exactly is a tie)
    below = k[None, :].astype(np.float32) * f0_s[:, None].astype(np.float32) < NYQ
    expected = np.sum(a_s * below * np.sin(k[None, :] * phase[:, None]), axis=1)
    assert np.max(np.abs(harm - expected)) < 1e-4 * np.max(np.abs(expected))
    # the per-sample mask matters here: without it the error would be large
    unmasked = np.sum(a_s * np.sin(k[None, :] * phase[:, None]), axis=1)
    assert np.max(np.abs(unmasked - expected)) > 1e-2 * np.max(np.abs(expected))


def test_noise_ir_is_the_runtime_basis():
    rng = np.random.default_rng(3)
    mags = rng.uniform(0.0, 1.0, (2, 5, BANDS)).astype(np.float32)
    ir = synth_tf.noise_ir(mags).numpy()
    expected = np.einsum("tb,nfb->nft", noise_basis(SR, SR, BANDS), mags)
    np.testing.assert_allclose(ir, expected, atol=1e-6)


def _band_power_db(x, n_fft=512):
    """Welch-averaged power spectrum summed in 16 bands of 16 bins (below 22.5 kHz), dB."""
    frames = np.lib.stride_tricks.sliding_window_view(x, n_fft)[:: n_fft // 2] * np.hanning(n_fft)
    power = np.mean(np.abs(np.fft.rfft(frames, axis=1)) ** 2, axis=0)
    bands = power[1:241].reshape(15, 16).sum(axis=1)
    return 10.0 * np.log10(bands)


def test_noise_with_independent_generators_has_the_same_spectral_envelope():
    hop, n_frames = 128, 750  # 2 s
    band = np.arange(BANDS) / (BANDS - 1)
    # a coloured, slowly changing noise filter: a low shelf, a resonance that moves, no zeros
    centre = 0.3 + 0.1 * np.sin(2 * np.pi * np.arange(n_frames) / n_frames)
    mags = 0.02 + 0.05 * np.exp(-(((band[None] - centre[:, None]) / 0.08) ** 2)) + 0.03 * (band[None] < 0.15)
    mags = mags.astype(np.float32)
    loudness = np.full(n_frames, 0.8, np.float32)
    f0 = np.full(n_frames, 440.0, np.float32)
    zeros = np.zeros((n_frames, K), np.float32)

    _, noise_np = render_numpy(f0, loudness, zeros, zeros, mags, hop, seed=11)
    tf.random.set_seed(5)
    noise_tf = synth_tf.synthesize(f0[None], loudness[None], zeros[None], zeros[None], mags[None], hop, SR)[
        "noise"
    ].numpy()[0]

    db_np, db_tf = _band_power_db(noise_np), _band_power_db(noise_tf)
    assert np.max(np.abs(db_np - db_tf)) < 1.0, db_np - db_tf
    # and both follow the filter: mean |FIR response|² × E[u²] (= 1/3 for uniform [−1, 1))
    response = np.abs(np.fft.rfft(synth_tf.noise_ir(mags[None]).numpy()[0], n=512, axis=1)) ** 2
    window = np.hanning(512)
    expected = np.mean(response, axis=0) / 3.0 * np.sum(window**2)
    expected_db = 10.0 * np.log10(expected[1:241].reshape(15, 16).sum(axis=1))
    assert np.max(np.abs(db_tf - expected_db)) < 1.0, db_tf - expected_db


def test_batches_render_each_clip_independently():
    hop = 128
    rng = np.random.default_rng(9)
    a = control_sequence(80, hop, rng)
    b = control_sequence(80, hop, rng)
    white = rng.uniform(-1, 1, (2, 80 * hop)).astype(np.float32)
    batch = synth_tf.synthesize(*(np.stack([x, y]) for x, y in zip(a, b)), hop, SR, noise=white)["audio"].numpy()
    for i, controls in enumerate((a, b)):
        single = synth_tf.synthesize(*(x[None] for x in controls), hop, SR, noise=white[i : i + 1])["audio"].numpy()[0]
        np.testing.assert_allclose(batch[i], single, atol=1e-6)


def test_gradients_reach_every_model_output():
    hop = 128
    rng = np.random.default_rng(1)
    f0, loudness, amps, dist, mags = control_sequence(80, hop, rng)
    amps, dist, mags = (tf.Variable(np.abs(x)[None]) for x in (amps, dist, mags))
    with tf.GradientTape() as tape:
        audio = synth_tf.synthesize(f0[None], loudness[None], amps, dist, mags, hop, SR)["audio"]
        loss = tf.reduce_mean(tf.square(audio))
    grads = tape.gradient(loss, [amps, dist, mags])
    for grad in grads:
        assert grad is not None
        assert np.all(np.isfinite(grad.numpy()))
        assert np.any(grad.numpy() != 0.0)


def test_phase_is_continuous_across_frames():
    """One long held note equals the closed form sin(2π f t) from phase 0."""
    hop, n_frames, f0_hz = 128, 50, 440.0
    f0 = np.full(n_frames, f0_hz, np.float32)
    amps = np.zeros((n_frames, K), np.float32)
    amps[:, 0] = 1.0
    dist = amps.copy()
    loudness = np.ones(n_frames, np.float32)
    amplitudes, _ = synth_tf.synth_controls(
        f0[None], loudness[None], amps[None], dist[None], np.zeros((1, n_frames, BANDS)), SR
    )
    harm = synth_tf.harmonic_synth(f0[None], amplitudes, hop, SR).numpy()[0]
    s = np.arange(n_frames * hop)
    expected = np.sin(2 * math.pi * f0_hz * (s + 1) / SR)
    expected[:hop] *= (np.arange(hop) + 1) / hop  # first segment ramps up from A[−1] = 0
    np.testing.assert_allclose(harm, expected, atol=2e-4)
