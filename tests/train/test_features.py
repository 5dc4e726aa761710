"""Loudness and f0 features of training audio (closed-form facts on synthetic signals)."""

import numpy as np
import pytest

from ddsp_device.train import features as feat

SR = 48000
HOP = 128


def sine(freq_hz, amplitude=1.0, seconds=1.0):
    t = np.arange(int(seconds * SR)) / SR
    return (amplitude * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32)


def vibrato_tone(f0_hz, seconds=1.2, vib_cents=40.0, vib_hz=5.5, weak_fundamental=False, seed=0):
    """A violin-like harmonic tone with vibrato: (audio [S], true f0 per sample [S])."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    f0 = f0_hz * 2 ** (vib_cents * np.sin(2 * np.pi * vib_hz * t) / 1200)
    phase = 2 * np.pi * np.cumsum(f0) / SR
    audio = np.zeros_like(t)
    for k in range(1, 40):
        if k * f0_hz * 1.03 > 0.45 * SR:
            break
        amp = (0.1 if (k == 1 and weak_fundamental) else 1.0) / k * (1 + 0.7 * np.sin(1.7 * k))
        audio += amp * np.sin(k * phase + rng.uniform(0, 2 * np.pi))
    audio = 0.5 * audio / np.abs(audio).max() + 0.003 * rng.standard_normal(t.size)
    return audio.astype(np.float32), f0


def test_a_weighting_matches_the_standard_table():
    a = feat.a_weighting_db([100.0, 1000.0, 10000.0])
    assert a[0] == pytest.approx(-19.1, abs=0.1)
    assert a[1] == pytest.approx(0.0, abs=0.01)
    assert a[2] == pytest.approx(-2.5, abs=0.1)
    assert feat.a_weighting_db([0.0])[0] == -np.inf


def test_full_scale_1khz_sine_is_0_db():
    level = feat.loudness_db(sine(1000.0), SR, HOP)
    assert np.median(level[20:-20]) == pytest.approx(0.0, abs=0.05)


def test_minus_20_db_sine_is_loudness_0_75():
    loudness = feat.normalise_loudness(feat.loudness_db(sine(1000.0, 0.1), SR, HOP))
    assert np.median(loudness[20:-20]) == pytest.approx(0.75, abs=0.002)


def test_loudness_follows_gain_and_a_weighting():
    level = np.median(feat.loudness_db(sine(200.0, 0.5), SR, HOP)[20:-20])
    expected = 20 * np.log10(0.5) + feat.a_weighting_db([200.0])[0]
    assert level == pytest.approx(expected, abs=0.1)


def test_silence_is_loudness_0():
    level = feat.loudness_db(np.zeros(SR // 2, np.float32), SR, HOP)
    assert level.shape == (SR // 2 // HOP,)
    assert np.all(feat.normalise_loudness(level) == 0.0)


def test_frames_are_samples_over_hop():
    for n in (0, 127, 128, 1000, 48000):
        assert feat.loudness_db(np.ones(n, np.float32) * 0.1, SR, HOP).shape == (n // HOP,)


def test_loud_sound_clips_at_1():
    assert np.all(feat.normalise_loudness([0.0, 3.0, -80.0, -100.0]) == [1.0, 1.0, 0.0, 0.0])


@pytest.mark.parametrize("f0_hz", [196.0, 440.0, 1318.5, 2637.0])  # G3, A4, E6, E7
def test_f0_follows_vibrato_within_a_few_cents(f0_hz):
    pytest.importorskip("parselmouth")
    audio, truth = vibrato_tone(f0_hz)
    f0, confidence = feat.track_f0(audio, SR, HOP)
    n = audio.size // HOP
    assert f0.shape == confidence.shape == (n,)
    confident = confidence > 0.5
    confident[:10] = confident[-10:] = False
    assert confident.mean() > 0.9
    cents = 1200 * np.log2(f0[confident] / truth[np.arange(n)[confident] * HOP])
    assert np.median(np.abs(cents)) < 1.0
    assert np.percentile(np.abs(cents), 95) < 5.0


def test_f0_with_a_weak_fundamental_is_not_an_octave_up():
    pytest.importorskip("parselmouth")
    audio, truth = vibrato_tone(300.0, weak_fundamental=True, vib_cents=0.0)
    f0, confidence = feat.track_f0(audio, SR, HOP)
    assert np.median(f0[confidence > 0.5]) == pytest.approx(300.0, rel=0.005)


def test_silence_and_noise_have_no_pitch():
    pytest.importorskip("parselmouth")
    f0, confidence = feat.track_f0(np.zeros(SR // 2), SR, HOP)
    assert not f0.any() and not confidence.any()
    noise = 0.1 * np.random.default_rng(1).standard_normal(SR)
    _, confidence = feat.track_f0(noise, SR, HOP)
    assert np.mean(confidence > 0) < 0.05


def test_unvoiced_gaps_are_filled_between_voiced_neighbours():
    pytest.importorskip("parselmouth")
    gap = np.zeros(SR // 4, np.float32)
    audio = np.concatenate([sine(440.0, 0.5, 0.5), gap, sine(880.0, 0.5, 0.5)])
    f0, confidence = feat.track_f0(audio, SR, HOP)
    assert np.all(f0 > 0)
    middle = slice((SR // 2 + SR // 16) // HOP, (SR // 2 + SR // 4 - SR // 16) // HOP)
    assert np.all(confidence[middle] == 0)
    assert np.all((f0[middle] > 430) & (f0[middle] < 900))


def test_fill_unvoiced_interpolates_in_log_frequency():
    filled = feat.fill_unvoiced([0, 100, 0, 400, 0], [False, True, False, True, False])
    np.testing.assert_allclose(filled, [100, 100, 200, 400, 400], rtol=1e-6)
    assert feat.fill_unvoiced([0, 0], [False, False]) is None


def test_compute_features_shapes_and_ranges():
    pytest.importorskip("parselmouth")
    audio, _ = vibrato_tone(660.0, seconds=0.5)
    features = feat.compute_features(audio, SR, HOP)
    n = audio.size // HOP
    for values in (features.f0_hz, features.f0_confidence, features.loudness_db, features.loudness):
        assert values.shape == (n,) and values.dtype == np.float32
    assert np.all((features.loudness >= 0) & (features.loudness <= 1))
    assert np.all((features.f0_confidence >= 0) & (features.f0_confidence <= 1))
