import numpy as np
import pytest

from ddsp_device.dsp.controls import harmonic_amplitudes, noise_magnitudes
from ddsp_device.dsp.harmonic import HarmonicScratch, harmonic_block

from reference import frame_amplitudes, harmonic_reference

SR = 48000


def stream(f0_frames, amp_frames, hop, sr=SR):
    """Run harmonic_block over frames exactly as the engine does."""
    scratch = HarmonicScratch(amp_frames.shape[1], hop)
    out = np.empty(len(f0_frames) * hop, np.float32)
    phase = 0.0
    prev_f0 = float(f0_frames[0])
    prev_a = np.zeros(amp_frames.shape[1], np.float32)
    for n, (f0, a) in enumerate(zip(f0_frames, amp_frames.astype(np.float32))):
        phase = harmonic_block(prev_f0, float(f0), prev_a, a, phase, sr, out[n * hop : (n + 1) * hop], scratch)
        prev_f0, prev_a = float(f0), a
    return out


def peak_hz(x, sr=SR):
    """Frequency of the strongest spectral peak, refined by parabolic interpolation."""
    win = np.hanning(len(x))
    spec = np.abs(np.fft.rfft(x * win, n=8 * len(x)))
    i = int(np.argmax(spec[1:-1])) + 1
    a, b, c = np.log(spec[i - 1 : i + 2] + 1e-30)
    frac = 0.5 * (a - c) / (a - 2 * b + c)
    return (i + frac) * sr / (8 * len(x))


def test_matches_reference_with_glides_and_amplitude_changes():
    rng = np.random.default_rng(1)
    hop, n = 128, 60
    f0 = np.geomspace(200.0, 3900.0, n) * (1 + 0.01 * rng.standard_normal(n))
    amps = rng.random((n, 64)) * 0.02
    A = frame_amplitudes(amps, np.ones((n, 64)), f0, np.ones(n), SR)
    ours = stream(f0, A, hop)
    ref = harmonic_reference(f0, A, hop, SR)
    assert np.max(np.abs(ours - ref)) < 2e-4


@pytest.mark.parametrize("hop", [16, 118, 128, 192, 1000])
def test_any_hop_size_matches_reference(hop):
    n = 20
    f0 = np.linspace(300, 500, n)
    A = np.tile(1.0 / np.arange(1, 65), (n, 1)) * 0.1
    assert np.max(np.abs(stream(f0, A, hop) - harmonic_reference(f0, A, hop, SR))) < 2e-4


def test_phase_continuous_sine_is_exact():
    hop, n, f0 = 128, 200, 440.0
    A = np.zeros((n, 64))
    A[:, 0] = 0.5
    A[0, 0] = 0.5  # (frame -1 is silent, so the first hop ramps in)
    out = stream(np.full(n, f0), A, hop)
    s = np.arange(hop, n * hop)
    expected = 0.5 * np.sin(2 * np.pi * f0 * (s + 1) / SR)
    assert np.max(np.abs(out[hop:] - expected)) < 1e-4


@pytest.mark.parametrize("midi", [55, 60, 67, 72, 79, 84, 91, 96, 100])  # G3 .. E7
def test_spectral_peak_within_one_cent(midi):
    f0 = 440.0 * 2 ** ((midi - 69) / 12)
    hop, n = 128, 375  # one second
    A = np.zeros((n, 64))
    A[:, 0] = 0.5
    out = stream(np.full(n, f0), A, hop)[hop:]
    cents = 1200 * np.log2(peak_hz(out) / f0)
    assert abs(cents) < 1.0


# f0 values whose aliases (sr - k f0) would fall between harmonics, where they would show
@pytest.mark.parametrize("f0", [1013.0, 2531.0, 3911.0, 3990.0])
def test_nothing_above_nyquist(f0):
    hop, n = 128, 375
    amps = np.full((n, 64), 0.5)
    A = frame_amplitudes(amps, np.ones((n, 64)), np.full(n, f0), np.ones(n), SR)
    out = stream(np.full(n, f0), A, hop)[hop:].astype(np.float64)
    spec = np.abs(np.fft.rfft(out * np.hanning(len(out))))
    freqs = np.fft.rfftfreq(len(out), 1 / SR)
    harmonics = f0 * np.arange(1, int(SR / 2 / f0) + 1)
    harmonics = harmonics[harmonics < SR / 2]
    near = np.min(np.abs(freqs[:, None] - harmonics[None, :]), axis=1) < 20.0
    # every component is a harmonic below Nyquist: off-harmonic energy is window leakage only
    assert spec[~near].max() < 1e-4 * spec.max()  # an aliased harmonic would be ~ -20 dB


def test_glide_across_nyquist_does_not_alias():
    """A harmonic crossing Nyquist inside a hop is cut per sample (no aliased chirp)."""
    hop, n = 128, 40
    f0 = np.linspace(3700.0, 4100.0, n)  # harmonic 6 crosses 24 kHz at 4000 Hz
    A = frame_amplitudes(np.full((n, 64), 0.5), np.ones((n, 64)), f0, np.ones(n), SR)
    ours = stream(f0, A, hop)
    ref = harmonic_reference(f0, A, hop, SR)
    assert np.max(np.abs(ours - ref)) < 2e-4


def test_controls_mask_renormalise_and_gate():
    amps = np.full(64, 0.5, np.float32)
    dist = np.ones(64, np.float32)
    out = np.empty(64, np.float32)
    scratch = np.empty(64, np.float32)
    harmonic_amplitudes(amps, dist, 5000.0, 0.7, SR, out, scratch)
    # 5 harmonics below 24 kHz (25 kHz is above): distribution renormalised over them
    assert np.allclose(out[:4], 0.5 / 4, rtol=1e-5) and np.all(out[4:] == 0)
    harmonic_amplitudes(amps, dist, 4800.0, 0.7, SR, out, scratch)  # 5 * 4800 == nyquist: silenced
    assert np.count_nonzero(out) == 4
    harmonic_amplitudes(amps, dist, 440.0, 0.0, SR, out, scratch)
    assert not out.any()
    harmonic_amplitudes(-amps, dist, 440.0, 1.0, SR, out, scratch)  # negatives clamp to 0
    assert not out.any()
    mags = np.linspace(-1, 1, 65).astype(np.float32)
    nm = np.empty(65, np.float32)
    noise_magnitudes(mags, 0.5, nm)
    assert nm.min() == 0 and nm.max() == 1
    noise_magnitudes(mags, 0.0, nm)
    assert not nm.any()


def test_matches_reference_controls():
    rng = np.random.default_rng(3)
    n = 30
    amps, dist = rng.random((n, 64)), rng.random((n, 64))
    f0 = rng.uniform(100, 5000, n)
    loud = rng.uniform(-0.2, 1, n)
    ref = frame_amplitudes(amps, dist, f0, loud, SR)
    out = np.empty(64, np.float32)
    scratch = np.empty(64, np.float32)
    for i in range(n):
        harmonic_amplitudes(amps[i].astype(np.float32), dist[i].astype(np.float32), f0[i], loud[i], SR, out, scratch)
        assert np.allclose(out, ref[i], atol=1e-6)
