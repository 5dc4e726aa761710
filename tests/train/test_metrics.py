"""``train.metrics``: closed-form facts of the spectral distance, the floor-limited LSD and the band balance."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ddsp_device.train.metrics import (FFT_SIZES, Reference, band_balance_db, log_spectral_distance_db,
                                       loudness_error_db, spectral_distance)

SR = 48000
MINUS_6_DB = 20 * math.log10(2)  # 6.0206 dB


def bin_centred_sine(seconds: float = 4.0, amplitude: float = 1.0) -> np.ndarray:
    """3 kHz at 48 kHz: a whole number of cycles in every FFT size's window (64 samples = 4 cycles)."""
    n = np.arange(int(seconds * SR))
    return (amplitude * np.sin(2 * np.pi * 3000.0 * n / SR)).astype(np.float32)


def test_spectral_distance_definition():
    rng = np.random.default_rng(1)
    a = rng.normal(size=5000).astype(np.float32)
    assert spectral_distance(a, a) == 0.0
    assert spectral_distance(a, 0.5 * a) > 0.5  # the log term alone gives 6 · log 2


def test_band_balance_sees_a_dull_copy_and_ignores_the_level():
    rng = np.random.default_rng(2)
    t = np.arange(SR) / SR
    tone = sum(np.sin(2 * np.pi * 220 * k * t) / k for k in range(1, 60)).astype(np.float32)
    tone += 0.001 * rng.normal(size=SR).astype(np.float32)
    assert np.allclose(band_balance_db(tone, 0.25 * tone, SR), 0.0, atol=1e-3)  # a level change is no colour
    spectrum = np.fft.rfft(tone)
    freqs = np.fft.rfftfreq(SR, 1 / SR)
    dull = np.fft.irfft(spectrum * np.where(freqs >= 4000, 0.1, 1.0), SR).astype(np.float32)  # −20 dB above 4 kHz
    balance = band_balance_db(tone, dull, SR)
    assert abs(balance[0]) < 1.0 and abs(balance[1]) < 1.0
    assert -21.0 < balance[3] < -19.0 and -21.0 < balance[4] < -19.0


def test_lsd_of_identical_signals_is_zero():
    noise = np.random.default_rng(3).normal(size=SR).astype(np.float32)
    assert log_spectral_distance_db(noise, noise) == 0.0
    assert log_spectral_distance_db(np.zeros(SR, np.float32), np.zeros(SR, np.float32)) == 0.0


def test_lsd_reads_a_level_error_in_db_either_way():
    """White noise keeps (nearly) every bin above a floor 60 dB under its peak: a 6 dB change reads 6.02 dB."""
    noise = 0.1 * np.random.default_rng(4).normal(size=2 * SR).astype(np.float32)
    for target, estimate in ((noise, 0.5 * noise), (0.5 * noise, noise), (noise, 2.0 * noise)):
        assert log_spectral_distance_db(target, estimate) == pytest.approx(MINUS_6_DB, abs=0.05)


def test_lsd_ignores_noise_below_the_floor():
    """A sine with different noise 100 dB down on each side: 0 with the floor, several dB without it."""
    rng = np.random.default_rng(5)
    sine = bin_centred_sine(2.0)
    a = sine + 1e-5 * rng.normal(size=sine.size).astype(np.float32)
    b = sine + 1e-5 * rng.normal(size=sine.size).astype(np.float32)
    assert log_spectral_distance_db(a, b) < 0.01
    assert log_spectral_distance_db(a, b, floor_db=200.0) > 3.0  # no floor: the noise dominates


@pytest.mark.parametrize("floor_db", [60.0, 40.0])
def test_lsd_of_a_sine_against_silence_by_hand(floor_db):
    """A periodic-Hann frame of a bin-centred sine has 3 non-zero bins: the peak P and two at P/2
    (−6.02 dB). Against silence (floored at P − floor_db) each frame differs by floor_db in one bin
    and floor_db − 6.02 in two, the other bins by 0; the distance is their mean over the N/2 + 1
    bins, averaged over the sizes (the few frames padded at the end add a little)."""
    sine = bin_centred_sine(4.0)
    by_hand = np.mean([(floor_db + 2 * (floor_db - MINUS_6_DB)) / (n // 2 + 1) for n in FFT_SIZES])
    assert log_spectral_distance_db(sine, np.zeros_like(sine), floor_db=floor_db) == pytest.approx(by_hand, abs=0.05)
    # the floor is the recording's: a quieter recording moves it, the answer stays
    quiet = 0.01 * sine
    assert log_spectral_distance_db(quiet, np.zeros_like(quiet), floor_db=floor_db) == pytest.approx(by_hand, abs=0.05)


def test_lsd_is_bounded_by_the_floor():
    rng = np.random.default_rng(6)
    a = rng.normal(size=SR).astype(np.float32)
    b = 1e-6 * rng.normal(size=SR).astype(np.float32)  # 120 dB down: at the floor everywhere
    assert log_spectral_distance_db(a, b, floor_db=30.0) <= 30.0
    with pytest.raises(ValueError, match="lengths differ"):
        log_spectral_distance_db(a, a[:-1])


def test_reference_scores_as_the_functions():
    rng = np.random.default_rng(7)
    t = np.arange(SR // 2) / SR
    target = (np.sin(2 * np.pi * 330 * t) * np.linspace(0, 1, t.size) + 0.01 * rng.normal(size=t.size)).astype(np.float32)
    estimate = (0.7 * np.sin(2 * np.pi * 331 * t) + 0.02 * rng.normal(size=t.size)).astype(np.float32)
    scores = Reference(target, SR, 128, floor_db=50.0).score(estimate)
    assert scores.spectral_distance == pytest.approx(spectral_distance(target, estimate), rel=1e-5)
    assert scores.lsd_db == pytest.approx(log_spectral_distance_db(target, estimate, floor_db=50.0), rel=1e-6)
    assert scores.loudness_error_db == pytest.approx(loudness_error_db(target, estimate, SR, 128), rel=1e-6)
    assert np.allclose(scores.balance_db, band_balance_db(target, estimate, SR))
    assert scores.balance_error_db == pytest.approx(float(np.mean(np.abs(scores.balance_db))))
