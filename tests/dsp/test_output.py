"""Output stage: tone → reverb → DC blocker → master gain → limiter (ddsp_device.dsp.output).

Closed-form facts: what a first-order high-pass does to DC and to 1 kHz, the tone's shelf
response and its monotonic tilt, the reverb's RT60 from its impulse response, the limiter's
ceiling, transparency and release time constant, and that block size does not change the output
of the linear stages.
"""

from __future__ import annotations

import ast
import math
import sys
import timeit
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from ddsp_device.dsp import output
from ddsp_device.dsp.output import (
    DECAY_MAX_S,
    TONE_RAMP_S,
    apply_gain_db,
    dc_block,
    limit_block,
    make_dc_blocker,
    make_limiter,
    make_reverb,
    make_tone,
    reverb_block,
    tone_block,
    tone_gains,
)

SR = 48000
HOP = 128
CEILING = float(np.float32(10.0 ** (-0.3 / 20.0)))


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _in_blocks(process, x: np.ndarray, block: int) -> np.ndarray:
    """Run ``process(x_block, out_block)`` over ``x`` cut into blocks of ``block`` samples."""
    y = np.empty_like(x)
    for start in range(0, x.shape[0], block):
        process(x[start : start + block], y[start : start + block])
    return y


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


def _db(ratio: float) -> float:
    return 20.0 * math.log10(ratio)


# --- import boundary ------------------------------------------------------------------------


def test_output_imports_only_numpy_and_stdlib():
    tree = ast.parse(Path(output.__file__).read_text())
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            roots.add((node.module or "").split(".")[0])
    assert roots - {"numpy", "__future__"} <= set(sys.stdlib_module_names)


# --- master gain -----------------------------------------------------------------------------


def test_gain_db_scales_by_closed_form_factor():
    x = _rng().standard_normal(HOP).astype(np.float32)
    out = np.empty_like(x)
    apply_gain_db(x, -20.0, out)
    np.testing.assert_allclose(out, x * 0.1, rtol=1e-6)
    assert apply_gain_db(x, 0.0, x) is x


# --- DC blocker ------------------------------------------------------------------------------


def test_dc_blocker_removes_constant_offset_by_60_db_within_1_s():
    offset = 0.5
    x = np.full(int(1.5 * SR), offset, np.float32)
    state = make_dc_blocker(SR, 10.0, HOP)
    y = _in_blocks(lambda xb, yb: dc_block(xb, state, yb), x, HOP)
    assert np.max(np.abs(y[SR:])) < offset * 10 ** (-60 / 20)


def test_dc_blocker_passes_1_khz_within_0p1_db():
    t = np.arange(SR) / SR
    x = (0.5 * np.sin(2 * np.pi * 1000.0 * t)).astype(np.float32)
    state = make_dc_blocker(SR, 10.0, HOP)
    y = _in_blocks(lambda xb, yb: dc_block(xb, state, yb), x, HOP)
    gain_db = _db(_rms(y[SR // 2 :]) / _rms(x[SR // 2 :]))
    assert abs(gain_db) < 0.1
    # and it matches |H(e^jω)| = |1 − e^−jω| / |1 − R·e^−jω|
    z = np.exp(-2j * np.pi * 1000.0 / SR)
    expected_db = _db(abs((1 - z) / (1 - state.pole * z)))
    assert gain_db == pytest.approx(expected_db, abs=0.01)


def test_dc_blocker_matches_the_recursion():
    x = _rng(1).standard_normal(3000).astype(np.float32)
    state = make_dc_blocker(SR, 10.0, HOP)
    y = _in_blocks(lambda xb, yb: dc_block(xb, state, yb), x, HOP)
    r = state.pole
    ref = np.empty(x.shape[0])
    x_prev = y_prev = 0.0
    for n, xn in enumerate(x.astype(np.float64)):
        y_prev = xn - x_prev + r * y_prev
        x_prev = xn
        ref[n] = y_prev
    np.testing.assert_allclose(y, ref, atol=1e-5)


@pytest.mark.parametrize("block", [16, 128, 1000])
def test_dc_blocker_output_does_not_depend_on_block_size(block):
    x = (_rng(2).standard_normal(20000) + 0.3).astype(np.float32)
    whole = np.empty_like(x)
    dc_block(x, make_dc_blocker(SR, 10.0, x.shape[0]), whole)
    state = make_dc_blocker(SR, 10.0, block)
    y = _in_blocks(lambda xb, yb: dc_block(xb, state, yb), x, block)
    np.testing.assert_allclose(y, whole, atol=1e-5)


def test_dc_blocker_in_place_equals_out_of_place():
    x = _rng(3).standard_normal(1000).astype(np.float32)
    y = np.empty_like(x)
    dc_block(x, make_dc_blocker(SR), y)
    dc_block(x, make_dc_blocker(SR), x)
    np.testing.assert_array_equal(x, y)


def test_dc_blocker_recovers_after_a_nonfinite_block():
    state = make_dc_blocker(SR, 10.0, HOP)
    bad = np.zeros(HOP, np.float32)
    bad[5] = np.nan
    dc_block(bad, state, np.empty_like(bad))
    assert state.nonfinite_blocks == 1
    good = np.full(HOP, 0.25, np.float32)
    y = np.empty_like(good)
    dc_block(good, state, y)
    assert np.all(np.isfinite(y))


# --- tone ------------------------------------------------------------------------------------

TONES = (-1.0, -0.5, 0.0, 0.5, 1.0)
TONE_FREQS_HZ = (125.0, 250.0, 500.0, 1000.0, 1500.0, 2000.0, 3000.0, 4000.0, 6000.0, 8000.0, 12000.0, 16000.0)


def _tone_gain_db(tone: float, f_hz: float, sr: int = SR) -> float:
    """Measured: a sine through tone_block in 128-sample blocks, RMS gain after 0.25 s."""
    n = sr // 2
    x = (0.5 * np.sin(2 * np.pi * f_hz * np.arange(n) / sr)).astype(np.float32)
    state = make_tone(sr, tone, HOP)
    y = _in_blocks(lambda xb, yb: tone_block(xb, tone, state, yb), x, HOP)
    return _db(_rms(y[n // 2 :]) / _rms(x[n // 2 :]))


def _tone_closed_form_db(tone: float, f_hz: float, sr: int = SR) -> float:
    """``|1 + g·HP(e^jω)|²`` in dB, ``HP`` the bilinear first-order high-pass at the corner."""
    state = make_tone(sr)
    g_dark, g_bright = tone_gains(tone)
    pole, g = (state.dark_pole, g_dark) if tone < 0 else (state.bright_pole, g_bright)
    z = np.exp(-2j * np.pi * f_hz / sr)
    hp = 0.5 * (1 + pole) * (1 - z) / (1 - pole * z)
    return 2 * _db(abs(1 + g * hp))


def _tone_reference(x: np.ndarray, tone: float) -> np.ndarray:
    """The cascade ``(1 + g·HP)²`` as two plain float64 recursions, sample by sample."""
    state = make_tone(SR)
    g_dark, g_bright = tone_gains(tone)
    pole, g = (state.dark_pole, g_dark) if tone < 0 else (state.bright_pole, g_bright)
    c = 0.5 * (1 + pole)
    s = x.astype(np.float64)
    for _ in range(2):
        hp = np.empty_like(s)
        s_prev = y_prev = 0.0
        for n, sn in enumerate(s):
            y_prev = pole * y_prev + c * (sn - s_prev)
            s_prev = sn
            hp[n] = y_prev
        s = s + g * hp
    return s


@pytest.fixture(scope="module")
def tone_response_db() -> dict[float, list[float]]:
    return {tone: [_tone_gain_db(tone, f) for f in TONE_FREQS_HZ] for tone in TONES}


def test_tone_zero_is_the_identity_bit_for_bit():
    x = _rng(20).standard_normal(20 * HOP + 17).astype(np.float32)
    state = make_tone(SR, 0.0, HOP)
    y = _in_blocks(lambda xb, yb: tone_block(xb, 0.0, state, yb), x, HOP)
    np.testing.assert_array_equal(y, x)
    assert tone_gains(0.0) == (0.0, 0.0)


def test_tone_response_is_the_closed_form_shelf_pair(tone_response_db):
    for tone, measured in tone_response_db.items():
        for f_hz, db in zip(TONE_FREQS_HZ, measured):
            assert db == pytest.approx(_tone_closed_form_db(tone, f_hz), abs=0.05), (tone, f_hz)


def test_tone_tilt_is_monotonic_and_spans_dark_to_bright(tone_response_db):
    by_freq = np.array([tone_response_db[t] for t in TONES])  # [tone, freq]
    # every frequency rises with the tone (the closed form says so at all of them)
    assert np.all(np.diff(by_freq, axis=0) >= -1e-3), by_freq
    # above the pivot (~1 kHz) strictly
    above = [i for i, f in enumerate(TONE_FREQS_HZ) if f >= 1000.0]
    assert np.all(np.diff(by_freq[:, above], axis=0) > 0.1)
    i8k = TONE_FREQS_HZ.index(8000.0)
    assert by_freq[0, i8k] <= -12.0 and by_freq[0, i8k] == pytest.approx(-18.0, abs=1.0)  # dark end
    assert by_freq[-1, i8k] == pytest.approx(11.0, abs=1.0)  # bright end
    assert np.all(np.abs(by_freq[2]) < 1e-6)  # flat at 0
    # the body of the sound (below the pivot) moves by less than 3 dB over the whole travel
    below = [i for i, f in enumerate(TONE_FREQS_HZ) if f < 1000.0]
    assert np.all(np.abs(by_freq[:, below]) < 3.0)


def test_tone_matches_the_cascade_of_recursions():
    x = _rng(21).standard_normal(3000).astype(np.float32)
    for tone in (-1.0, -0.3, 0.6, 1.0):
        state = make_tone(SR, tone, HOP)
        y = _in_blocks(lambda xb, yb, s=state, t=tone: tone_block(xb, t, s, yb), x, HOP)
        np.testing.assert_allclose(y, _tone_reference(x, tone), atol=2e-6)


@pytest.mark.parametrize("block", [32, 128, 1024])
def test_tone_output_does_not_depend_on_block_size(block):
    """Same audio for periods of 32, 128 and 1024, tone changes (and their ramps) included."""
    x = (0.5 * _rng(22).standard_normal(8192)).astype(np.float32)

    def run(b: int) -> np.ndarray:
        state = make_tone(SR, -1.0, b)
        y = np.empty_like(x)
        for start in range(0, x.shape[0], b):
            tone = -1.0 if start < 2048 else 0.6 if start < 5120 else 0.0
            tone_block(x[start : start + b], tone, state, y[start : start + b])
        return y

    y = run(block)
    np.testing.assert_allclose(y, run(16), atol=1e-6)  # tone changes at multiples of 1024
    whole = np.empty_like(x)
    tone_block(x, -1.0, make_tone(SR, -1.0, x.shape[0]), whole)
    np.testing.assert_allclose(y[:2048], whole[:2048], atol=1e-6)


def test_tone_change_ramps_in_without_a_step():
    """−1 → +1 takes TONE_RAMP_S; the output changes no faster than at either end."""
    f_hz = 4000.0
    switch = 100  # blocks
    n = 2 * switch * HOP
    x = (0.25 * np.sin(2 * np.pi * f_hz * np.arange(n) / SR)).astype(np.float32)
    state = make_tone(SR, -1.0, HOP)
    tones = []

    def process(xb, yb):
        tone_block(xb, -1.0 if len(tones) < switch else 1.0, state, yb)
        tones.append(state.tone)

    y = _in_blocks(process, x, HOP)
    ramp_blocks = tones[switch:].index(1.0) + 1
    assert ramp_blocks * HOP == pytest.approx(TONE_RAMP_S * SR, abs=HOP)
    assert np.all(np.diff(tones[switch - 1 : switch + ramp_blocks]) > 0)  # −1, rising, … 1
    step = np.abs(np.diff(y.astype(np.float64)))  # the sine's slope times the gain
    steady_bright = step[-SR // 10 :].max()
    assert step[switch * HOP - HOP : (switch + ramp_blocks) * HOP].max() <= 1.02 * steady_bright


def test_tone_recovers_after_a_nonfinite_block():
    state = make_tone(SR, -0.5, HOP)
    bad = np.zeros(HOP, np.float32)
    bad[5] = np.inf
    tone_block(bad, -0.5, state, np.empty_like(bad))
    assert state.nonfinite_blocks == 1
    good = np.full(HOP, 0.25, np.float32)
    y = np.empty_like(good)
    tone_block(good, -0.5, state, y)
    assert np.all(np.isfinite(y))
    fresh = make_tone(SR, -0.5, HOP)
    expected = np.empty_like(good)
    tone_block(good, -0.5, fresh, expected)
    np.testing.assert_array_equal(y, expected)  # as if the bad block never happened


def test_tone_in_place_equals_out_of_place():
    x = _rng(23).standard_normal(1000).astype(np.float32)
    y = np.empty_like(x)
    tone_block(x, 0.7, make_tone(SR, 0.0), y)  # ramping, too
    tone_block(x, 0.7, make_tone(SR, 0.0), x)
    np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("tone", [-1.01, 1.5, float("nan")])
def test_tone_rejects_out_of_range(tone):
    with pytest.raises(ValueError, match="tone must be in -1..1"):
        tone_block(np.zeros(4, np.float32), tone, make_tone(SR), np.zeros(4, np.float32))
    with pytest.raises(ValueError, match="tone must be in -1..1"):
        make_tone(SR, tone)


def test_tone_at_a_low_sample_rate_lowers_its_corners():
    state = make_tone(16000, 1.0)
    assert state.bright_hz == pytest.approx(16000 / 6) and state.dark_hz == 1500.0
    assert _tone_gain_db(1.0, 6000.0, 16000) > 8.0


# --- reverb ----------------------------------------------------------------------------------


def test_reverb_mix_zero_is_identity():
    state = make_reverb(SR, 1.5, HOP)
    x = _rng(4).uniform(-1, 1, 50 * HOP).astype(np.float32)
    y = _in_blocks(lambda xb, yb: reverb_block(xb, 0.0, state, yb), x, HOP)
    np.testing.assert_array_equal(y, x)


def test_reverb_mix_is_a_linear_crossfade():
    x = _rng(5).uniform(-1, 1, 20 * HOP).astype(np.float32)
    wet = np.empty_like(x)
    reverb_block(x, 1.0, make_reverb(SR, 1.0, HOP), wet)
    half = np.empty_like(x)
    reverb_block(x, 0.25, make_reverb(SR, 1.0, HOP), half)
    np.testing.assert_allclose(half, 0.75 * x + 0.25 * wet, atol=1e-5)


@pytest.mark.parametrize("block", [16, 128, 1000])
def test_reverb_output_does_not_depend_on_block_size(block):
    x = np.zeros(SR // 2, np.float32)
    x[: SR // 10] = _rng(6).uniform(-1, 1, SR // 10)
    whole = np.empty_like(x)
    reverb_block(x, 0.5, make_reverb(SR, 1.0, x.shape[0]), whole)
    state = make_reverb(SR, 1.0, block)
    y = _in_blocks(lambda xb, yb: reverb_block(xb, 0.5, state, yb), x, block)
    np.testing.assert_allclose(y, whole, atol=1e-5)


@pytest.mark.parametrize("decay_s", [0.5, 1.5, 4.0])
def test_reverb_impulse_response_decays_60_db_in_decay_s(decay_s):
    n = int(1.5 * decay_s * SR)
    h = np.zeros(n, np.float32)
    h[0] = 1.0
    reverb_block(h, 1.0, make_reverb(SR, decay_s, HOP), h)
    # Schroeder backward integration; RT60 from the −5 … −35 dB slope (T30).
    edc = np.cumsum(np.square(h[::-1], dtype=np.float64))[::-1]
    edc_db = 10 * np.log10(edc / edc[0])
    t5 = np.argmax(edc_db < -5) / SR
    t35 = np.argmax(edc_db < -35) / SR
    rt60 = 2.0 * (t35 - t5)
    assert rt60 == pytest.approx(decay_s, rel=0.3)


def test_reverb_wet_level_equals_dry_level_for_broadband_input():
    x = (0.3 * _rng(7).standard_normal(4 * SR)).astype(np.float32)
    wet = np.empty_like(x)
    reverb_block(x, 1.0, make_reverb(SR, 1.5, HOP), wet)
    assert abs(_db(_rms(wet[2 * SR :]) / _rms(x[2 * SR :]))) < 1.0


def test_reverb_stays_finite_and_bounded_for_60_s_of_loud_noise_at_max_decay():
    state = make_reverb(SR, DECAY_MAX_S, 4096)
    rng = _rng(8)
    peak = 0.0
    block = np.empty(4096, np.float32)
    for _ in range(60 * SR // 4096):
        block[:] = rng.uniform(-4.0, 4.0, 4096)  # ~12 dB over full scale
        reverb_block(block, 1.0, state, block)
        peak = max(peak, float(np.max(np.abs(block))))
    assert math.isfinite(peak)
    assert peak < 50.0  # wet RMS ≈ dry RMS ≈ 2.3; a runaway network would pass this quickly
    # and it dies away once the input stops
    tail = np.zeros(int(1.2 * DECAY_MAX_S * SR), np.float32)
    reverb_block(tail, 1.0, state, tail)
    assert np.max(np.abs(tail[-4096:])) < 1e-2


def test_reverb_nonfinite_block_clears_the_network():
    state = make_reverb(SR, 1.5, HOP)
    x = _rng(9).uniform(-1, 1, HOP).astype(np.float32)
    y = np.empty_like(x)
    reverb_block(x, 0.5, state, y)
    x[3] = np.inf
    reverb_block(x, 0.5, state, y)
    assert state.nonfinite_blocks == 1
    silence = np.zeros(SR, np.float32)
    reverb_block(silence, 0.5, state, silence)
    np.testing.assert_array_equal(silence, 0.0)


def test_reverb_rejects_mix_out_of_range():
    state = make_reverb(SR, 1.0, HOP)
    x = np.zeros(HOP, np.float32)
    with pytest.raises(ValueError, match="mix"):
        reverb_block(x, 1.5, state, x)


@pytest.mark.parametrize("decay_s", [0.0, DECAY_MAX_S * 2])
def test_make_reverb_rejects_decay_out_of_range(decay_s):
    with pytest.raises(ValueError, match="decay_s"):
        make_reverb(SR, decay_s, HOP)


# --- limiter ---------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    x=arrays(
        np.float32,
        st.integers(1, 3000),
        elements=st.floats(-1e4, 1e4, width=32, allow_nan=False, allow_infinity=False),
    ),
    block=st.integers(1, 700),
    release_s=st.sampled_from([0.001, 0.05, 1.0]),
)
def test_limiter_output_never_exceeds_the_ceiling(x, block, release_s):
    state = make_limiter(SR, -0.3, release_s, block)
    y = _in_blocks(lambda xb, yb: limit_block(xb, state, yb), x, block)
    assert np.all(np.abs(y) <= state.ceiling)
    assert state.ceiling == CEILING


@settings(max_examples=100, deadline=None)
@given(
    x=arrays(
        np.float32,
        st.integers(1, 3000),
        elements=st.floats(-0.9375, 0.9375, width=32, allow_nan=False, allow_infinity=False),
    ),
    block=st.integers(1, 700),
)
def test_limiter_is_bit_exact_below_the_ceiling(x, block):
    state = make_limiter(SR, -0.3, 0.05, block)
    y = _in_blocks(lambda xb, yb: limit_block(xb, state, yb), x, block)
    np.testing.assert_array_equal(y, x)
    assert state.gain == 1.0


def test_limiter_attack_is_instant_and_the_hard_clip_stays_unused():
    state = make_limiter(SR, -0.3, 0.05, HOP)
    x = np.full(HOP, 0.1, np.float32)
    x[40] = 8.0
    y = np.empty_like(x)
    limit_block(x, state, y)
    np.testing.assert_array_equal(y[:40], x[:40])  # untouched before the peak
    assert y[40] == pytest.approx(CEILING, rel=1e-4)  # the peak itself lands on the ceiling
    assert state.clipped_samples == 0


def test_limiter_gain_recovers_with_the_release_time_constant():
    release_s = 0.05
    state = make_limiter(SR, -0.3, release_s, HOP)
    burst = np.full(HOP, 4.0, np.float32)
    limit_block(burst, state, np.empty_like(burst))
    atten0 = -math.log(state.gain)
    assert state.gain == pytest.approx(CEILING / 4.0, rel=1e-4)
    quiet = np.full(HOP, 0.1, np.float32)
    n_blocks = round(release_s * SR / HOP)
    for _ in range(n_blocks):
        limit_block(quiet, state, np.empty_like(quiet))
    # the attenuation in dB (nepers) decays as exp(−t / release_s)
    expected = atten0 * math.exp(-n_blocks * HOP / (release_s * SR))
    assert -math.log(state.gain) == pytest.approx(expected, rel=1e-3)
    # and the gain eventually snaps back to exactly 1: transparent again
    for _ in range(round(40 * release_s * SR / HOP)):
        limit_block(quiet, state, np.empty_like(quiet))
    assert state.gain == 1.0
    y = np.empty_like(quiet)
    limit_block(quiet, state, y)
    np.testing.assert_array_equal(y, quiet)


def test_limiter_silences_a_nan_block_and_recovers():
    state = make_limiter(SR, -0.3, 0.05, HOP)
    loud = np.full(HOP, 3.0, np.float32)
    limit_block(loud, state, np.empty_like(loud))
    assert state.gain < 1.0
    bad = _rng(10).uniform(-1, 1, HOP).astype(np.float32)
    bad[17] = np.nan
    y = np.empty_like(bad)
    limit_block(bad, state, y)
    np.testing.assert_array_equal(y, 0.0)
    assert state.nonfinite_blocks == 1
    assert state.gain == 1.0
    good = np.full(HOP, 0.5, np.float32)
    limit_block(good, state, y)
    np.testing.assert_array_equal(y, good)


def test_limiter_output_does_not_depend_on_block_size():
    x = (2.0 * _rng(11).standard_normal(20000)).astype(np.float32)
    state = make_limiter(SR, -0.3, 0.05, 128)
    ref = _in_blocks(lambda xb, yb: limit_block(xb, state, yb), x, 128)
    for block in (16, 1000):
        other = make_limiter(SR, -0.3, 0.05, block)
        y = _in_blocks(lambda xb, yb, s=other: limit_block(xb, s, yb), x, block)
        np.testing.assert_allclose(y, ref, atol=1e-5)


# --- real-time rules -------------------------------------------------------------------------


def test_no_stage_allocates_arrays_per_block(monkeypatch):
    # Large chunks make any temporary array at least several KiB, far above the few hundred
    # bytes of Python views and floats a call creates.
    monkeypatch.setattr(output, "CHUNK", 4096)
    block = 4096
    x = (0.5 * _rng(12).standard_normal(block)).astype(np.float32)
    loud = 4.0 * x
    out = np.empty_like(x)
    reverb = make_reverb(SR, 1.5, block)
    dc = make_dc_blocker(SR, 10.0, block)
    idle = make_limiter(SR, -0.3, 0.05, block)
    active = make_limiter(SR, -0.3, 0.05, block)
    releasing = make_limiter(SR, -0.3, 0.05, block)
    tones = {t: make_tone(SR, t, block) for t in (0.0, -0.6, 0.6)}
    ramping = make_tone(SR, 0.0, block)
    flip = [1.0]

    def tone_ramp():
        flip[0] = -flip[0]  # a whole block of ramp, each time
        tone_block(x, flip[0], ramping, out)

    quiet = 0.1 * x

    def release():
        limit_block(loud[:1], releasing, out[:1])  # attenuate …
        limit_block(quiet, releasing, out)  # … then release

    calls = {
        "reverb": lambda: reverb_block(x, 0.3, reverb, out),
        "dc": lambda: dc_block(x, dc, out),
        "tone flat": lambda: tone_block(x, 0.0, tones[0.0], out),
        "tone dark": lambda: tone_block(x, -0.6, tones[-0.6], out),
        "tone bright": lambda: tone_block(x, 0.6, tones[0.6], out),
        "tone ramping": tone_ramp,
        "gain": lambda: apply_gain_db(x, -3.0, out),
        "limiter idle": lambda: limit_block(quiet, idle, out),
        "limiter active": lambda: limit_block(loud, active, out),
        "limiter release": release,
    }
    for name, call in calls.items():
        for _ in range(3):
            call()
        tracemalloc.start()
        try:
            for _ in range(10):
                call()
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < 3000, f"{name}: {peak} bytes allocated per block"


def test_output_stage_is_a_small_part_of_the_period_budget(capsys):
    """Each stage costs under a tenth of a 128-sample period's duration (2.67 ms at 48 kHz),
    and all of them together under a quarter, leaving the period to the model and the
    synthesiser; the cost of each is printed. The best of 20 repeats is taken, so another
    process on the machine does not change the verdict, only a slow implementation does."""
    x = (0.3 * _rng(13).standard_normal(HOP)).astype(np.float32)
    loud = 4.0 * x
    out = np.empty_like(x)
    reverb = make_reverb(SR, 1.5, HOP)
    dc = make_dc_blocker(SR, 10.0, HOP)
    idle = make_limiter(SR, -0.3, 0.05, HOP)
    active = make_limiter(SR, -0.3, 0.05, HOP)
    releasing = make_limiter(SR, -0.3, 0.05, HOP)
    tone_flat, tone_dark, tone_ramping = make_tone(SR, 0.0, HOP), make_tone(SR, -0.5, HOP), make_tone(SR, 0.0, HOP)

    def release():
        releasing._atten = 0.5  # a gain still on its way back to 1
        limit_block(x, releasing, out)

    def tone_ramp():
        tone_ramping.tone = 0.0  # still ramping towards 1
        tone_block(x, 1.0, tone_ramping, out)

    calls = {
        "reverb (mix 0.3)": lambda: reverb_block(x, 0.3, reverb, out),
        "dc blocker": lambda: dc_block(x, dc, out),
        "tone, flat": lambda: tone_block(x, 0.0, tone_flat, out),
        "tone, dark": lambda: tone_block(x, -0.5, tone_dark, out),
        "tone, ramping": tone_ramp,
        "master gain": lambda: apply_gain_db(x, -3.0, out),
        "limiter, below ceiling": lambda: limit_block(x, idle, out),
        "limiter, releasing": release,
        "limiter, limiting": lambda: limit_block(loud, active, out),
    }
    budget_s = HOP / SR
    best_s = {}
    with capsys.disabled():
        print(f"\noutput stage, µs per {HOP}-sample block at {SR} Hz (numpy {np.__version__}):")
        for name, call in calls.items():
            number = 500
            best_s[name] = min(timeit.repeat(call, number=number, repeat=20)) / number
            print(f"  {name:24s} {best_s[name] * 1e6:6.2f}")
    slow = {name: f"{t * 1e6:.0f} µs" for name, t in best_s.items() if not t < 0.1 * budget_s}
    assert not slow, f"over a tenth of the {budget_s * 1e6:.0f} µs period: {slow}"
    # one pass of the stage: reverb, DC blocker, gain and the costliest limiter case
    limiter = max(best_s[n] for n in best_s if n.startswith("limiter"))
    total = best_s["reverb (mix 0.3)"] + best_s["dc blocker"] + best_s["master gain"] + limiter
    assert total < 0.25 * budget_s, f"{total * 1e6:.0f} µs of a {budget_s * 1e6:.0f} µs period"
