"""Sensor -> f0/loudness mapping: closed-form facts, playing sequences and property tests."""

import ast
import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ddsp_device.controls import mapping
from ddsp_device.controls.mapping import (
    CURVES,
    SCALES,
    Knob,
    KnobSteps,
    KeysConfig,
    KeysPitch,
    PressureConfig,
    PressureLoudness,
    RibbonConfig,
    RibbonPitch,
    ScaleGrid,
    hz_to_midi,
    knob_to_gain_db,
    knob_to_reverb_mix,
    knob_to_tone,
    midi_to_hz,
    note_to_hz,
    parse_key,
    parse_scale,
    ribbon_position,
)
from ddsp_device.errors import ControlsError

DT = 0.001  # 1 kHz sensor rate
G3_HZ = 196.0
TOP_HZ = G3_HZ * 2 ** (30 / 12)
# A ribbon with ends reading 1000 and 21000 and its wiper pulled to 0 when untouched (the mapping
# does not care about units; the poller reports fractions of the supply).
LOW, HIGH, OPEN = 1000.0, 21000.0, 0.0


def raw_at(position):
    return LOW + position * (HIGH - LOW)


def raw_for_semitones(semitones, range_semitones=30.0):
    """Raw reading whose continuous pitch is ``semitones`` above G3."""
    return raw_at(semitones / range_semitones)


def ribbon(**kw):
    kw.setdefault("touch_settle_s", 0.0)
    return RibbonPitch(RibbonConfig(**kw), LOW, HIGH, OPEN)


def cents(f_hz, ref_hz):
    return 1200.0 * math.log2(f_hz / ref_hz)


def hold(mapper, raw, seconds, **kw):
    f = None
    for _ in range(round(seconds / DT)):
        f = mapper.step(raw, DT, **kw)
    return f


junk = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.none(),
    st.text(max_size=3),
    st.sampled_from([LOW, HIGH, OPEN, -1.0, 1e308, -1e308, 5e-324]),
)
dts = st.one_of(st.floats(0.0, 0.01), st.sampled_from([DT, math.nan, -1.0, math.inf, None]))


# --------------------------------------------------------------------------------------------
# Import boundary (STYLE.md point 1)


def test_mapping_imports_only_the_standard_library():
    tree = ast.parse(Path(mapping.__file__).read_text())
    allowed = {"__future__", "bisect", "difflib", "math", "operator", "collections.abc", "dataclasses", "typing"}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            assert {a.name for a in node.names} <= allowed
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 2 and node.module == "errors" or node.module in allowed, node.module


# --------------------------------------------------------------------------------------------
# Helpers


def test_note_and_midi_conversions():
    assert note_to_hz("G3") == pytest.approx(196.0, abs=0.01)
    assert note_to_hz("A4") == 440.0
    assert note_to_hz("Bb2") == pytest.approx(midi_to_hz(46))
    assert hz_to_midi(440.0) == 69.0
    assert parse_key("F#") == 6 and parse_key("Bb") == 10 and parse_key(0) == 0
    for bad in ("H", "", 12, "C##"):
        with pytest.raises(ControlsError):
            parse_key(bad)
    with pytest.raises(ControlsError, match="note must look like G3"):
        note_to_hz("G")


def test_parse_scale():
    assert parse_scale("Major") == SCALES["major"]
    assert parse_scale("0, 7, 4") == (0.0, 4.0, 7.0)
    assert parse_scale([12, 14, 19]) == (0.0, 2.0, 7.0)
    with pytest.raises(ControlsError, match="unknown scale 'lydian-ish'.*chromatic"):
        parse_scale("lydian-ish")
    with pytest.raises(ControlsError):
        parse_scale([])


@given(st.floats(-200, 400), st.sampled_from(sorted(SCALES)), st.integers(0, 11))
def test_scale_grid_nearest_is_a_scale_note_and_nearest(midi, name, key):
    grid = ScaleGrid(SCALES[name], key)
    n = grid.nearest(midi)
    assert round((n - key) % 12, 6) % 12 in SCALES[name]
    for other in (grid.ceil(midi), grid.floor(midi)):
        assert abs(midi - n) <= abs(midi - other) + 1e-9
    assert grid.floor(midi) <= midi + 1e-9 and grid.ceil(midi) >= midi - 1e-9


def test_ribbon_position_either_wiring():
    assert ribbon_position(LOW, LOW, HIGH) == 0.0
    assert ribbon_position(HIGH, LOW, HIGH) == 1.0
    assert ribbon_position(11000, HIGH, LOW) == 0.5
    assert ribbon_position(1e9, LOW, HIGH) == 1.0
    assert ribbon_position(math.nan, LOW, HIGH) == 0.0


# --------------------------------------------------------------------------------------------
# Ribbon pitch


def test_ribbon_ends_play_the_default_range():
    r = ribbon()
    assert r.step(raw_at(0.0), DT) == pytest.approx(G3_HZ, abs=0.01)
    assert r.step(raw_at(1.0), DT) == pytest.approx(TOP_HZ, rel=1e-9)
    assert r.step(raw_at(0.5), DT) == pytest.approx(G3_HZ * 2 ** (15 / 12), rel=1e-9)
    assert RibbonConfig().f0_max_hz == pytest.approx(TOP_HZ)


def test_ribbon_wired_the_other_way_round():
    r = RibbonPitch(RibbonConfig(touch_settle_s=0.0), HIGH, LOW, 30000.0)
    assert r.step(HIGH, DT) == pytest.approx(G3_HZ, abs=0.01)
    assert r.step(LOW, DT) == pytest.approx(TOP_HZ)


def test_octave_transpose_doubles_f0():
    plain = ribbon().step(raw_at(0.3), DT)
    assert ribbon(transpose_octaves=1).step(raw_at(0.3), DT) == pytest.approx(2 * plain)
    assert ribbon().step(raw_at(0.3), DT, transpose_semitones=12) == pytest.approx(2 * plain)
    assert ribbon(transpose_octaves=-1, transpose_semitones=7).step(raw_at(0.3), DT) == pytest.approx(
        plain * 2 ** (-5 / 12)
    )


def test_touch_settle_ignores_the_first_reading_of_a_touch():
    r = RibbonPitch(RibbonConfig(touch_settle_s=0.001), LOW, HIGH, OPEN)
    first = r.step(raw_at(0.5), DT)
    assert not r.touched and first == pytest.approx(G3_HZ, abs=0.01)  # not yet used
    assert r.step(raw_at(0.5), DT) == pytest.approx(G3_HZ * 2 ** (15 / 12))
    assert r.touched


def test_untouched_rule_is_the_open_band_around_the_open_level():
    r = ribbon(open_band=0.02)  # 2 % of the 20000-count span = 400 counts
    r.step(raw_at(0.5), DT)
    assert r.touched
    r.step(OPEN + 399, DT)
    assert not r.touched
    r.step(OPEN + 401, DT)  # outside the band: a touch at (clamped) position 0
    assert r.touched and r.position == 0.0


def test_release_holds_the_pitch_from_before_the_lift():
    r = ribbon(release_rewind_s=0.003)
    playing = hold(r, raw_at(0.6), 0.1)
    # The finger lifts: two readings blend toward the untouched level, then it reads open.
    r.step(raw_at(0.3), DT)
    r.step(raw_at(0.1), DT)
    held = r.step(OPEN, DT)
    assert not r.touched
    assert held == pytest.approx(playing)
    for _ in range(500):  # stays held while untouched, bad readings included
        assert r.step(OPEN, DT) == held
        assert r.step(math.nan, DT) == held


def test_release_after_a_very_short_touch_holds_its_first_pitch():
    r = ribbon(release_rewind_s=0.05)
    f = r.step(raw_at(0.2), DT)
    r.step(raw_at(0.25), DT)
    assert r.step(OPEN, DT) == f


def test_bad_readings_hold_the_last_pitch():
    r = ribbon()
    f = r.step(raw_at(0.4), DT)
    for bad in (math.nan, math.inf, -math.inf, None, "x", 10**500):
        assert r.step(bad, DT) == f
    assert r.step(-1e12, DT) == pytest.approx(G3_HZ, abs=0.01)  # finite: clamped, not ignored
    assert r.step(1e300, DT) == pytest.approx(TOP_HZ)


def test_strength_zero_is_identity():
    r = ribbon(scale="major", strength=0.0, glide_s=0.2)
    for k in range(2000):
        p = 0.5 + 0.4 * math.sin(k * 0.003) + 0.01 * math.sin(k * 0.05)
        assert r.step(raw_at(p), DT) == pytest.approx(G3_HZ * 2 ** (30 * p / 12), rel=1e-12)


def test_strength_one_lands_on_scale_notes_within_a_cent():
    c_major = {0, 2, 4, 5, 7, 9, 11}
    for k in range(301):
        r = ribbon(scale="major", key="C", strength=1.0)
        f = r.step(raw_at(k / 300), DT)  # a new touch snaps at once
        midi = hz_to_midi(f)
        assert abs(midi - round(midi)) * 100 < 1 and round(midi) % 12 in c_major
        assert G3_HZ - 0.01 <= f <= TOP_HZ + 0.01
    # A steady finger after a slide lands on a note too.
    r = ribbon(scale="pentatonic", key="G", strength=1.0, glide_s=0.05)
    hold(r, raw_for_semitones(1.0), 0.1)
    f = None
    for k in range(1000):  # slide 1 -> 8.3 semitones in a second, then stay
        f = r.step(raw_for_semitones(1.0 + 7.3 * k / 999), DT)
    f = hold(r, raw_for_semitones(8.3), 2.0)
    assert abs(cents(f, midi_to_hz(64))) < 1  # E4 (9 semitones up): the G pentatonic note nearest 8.3


def test_snapped_notes_stay_inside_the_range():
    # C major has no G#: position 0 of a ribbon starting on G#3 must not play G3.
    r = RibbonPitch(RibbonConfig(base_hz=midi_to_hz(56), scale="major", strength=1.0,
                                 touch_settle_s=0.0), LOW, HIGH, OPEN)
    assert hz_to_midi(r.step(raw_at(0.0), DT)) == pytest.approx(57.0)  # A3


def test_slow_slide_is_a_staircase_whose_steps_take_the_glide_time():
    glide_s = 0.08
    r = ribbon(scale="chromatic", strength=1.0, glide_s=glide_s)
    hold(r, raw_for_semitones(5.0), 0.5)
    out = []
    for k in range(3000):  # 5 -> 6 semitones over 3 s, slower than a semitone a second
        r.step(raw_for_semitones(5.0 + min(k / 2000, 1.0)), DT)
        out.append(r.midi - 55.0)
    assert all(4.97 < m < 6.03 for m in out)
    leave = next(i for i, m in enumerate(out) if m > 5.05)
    arrive = next(i for i, m in enumerate(out) if m > 5.95)
    assert 0.5 * glide_s <= (arrive - leave) * DT <= glide_s + 2 * DT
    assert abs(out[-1] - 6.0) < 0.01


def test_glide_zero_changes_note_at_once():
    r = ribbon(strength=1.0, glide_s=0.0)
    hold(r, raw_for_semitones(5.0), 0.5)
    out = []
    for k in range(2000):
        r.step(raw_for_semitones(5.0 + k / 2000), DT)
        out.append(r.midi - 55.0)
    steps = [b - a for a, b in zip(out, out[1:])]
    assert max(steps) > 0.5  # one jump of about a semitone


@pytest.mark.parametrize("vibrato_hz", [4.5, 5.5, 7.0])
def test_vibrato_survives_full_quantisation(vibrato_hz):
    """A wiggle around a note keeps >= 80 % of its depth at strength 1, centred on the note."""
    depth = 0.3
    r = ribbon(scale="major", key="C", strength=1.0, glide_s=0.05)
    hold(r, raw_for_semitones(1.0), 0.2)
    for k in range(500):  # slide up to just off C4 (5 semitones above G3), then wiggle there
        r.step(raw_for_semitones(1.0 + 4.15 * k / 499), DT)
    out = []
    for k in range(3000):
        r.step(raw_for_semitones(5.15 + depth * math.sin(2 * math.pi * vibrato_hz * k * DT)), DT)
        out.append(r.midi - 60.0)
    tail = out[-1000:]
    assert (max(tail) - min(tail)) / 2 >= 0.8 * depth
    assert abs((max(tail) + min(tail)) / 2) < 0.01  # centred on C4, not on the finger's 5.15


@settings(max_examples=60, deadline=None)
@given(
    raws=st.lists(st.one_of(junk, st.floats(-5000, 30000)), max_size=60),
    dt=dts,
    strength=st.floats(0, 1),
    glide=st.floats(0, 0.5),
    scale=st.sampled_from(sorted(SCALES) + ["0,5"]),
    octaves=st.integers(-2, 2),
    knob=st.one_of(st.floats(-48, 48), junk),
)
def test_ribbon_output_is_finite_and_in_range(raws, dt, strength, glide, scale, octaves, knob):
    cfg = RibbonConfig(strength=strength, glide_s=glide, scale=scale, transpose_octaves=octaves)
    r = RibbonPitch(cfg, LOW, HIGH, OPEN)
    k = mapping._finite(knob) or 0.0
    tr = 12 * octaves + max(-48.0, min(48.0, k))
    lo, hi = G3_HZ * 2 ** (tr / 12), TOP_HZ * 2 ** (tr / 12)
    for raw in raws:
        f = r.step(raw, dt, transpose_semitones=knob)
        assert math.isfinite(f)
        assert lo * (1 - 1e-9) <= f <= hi * (1 + 1e-9)


@given(st.floats(LOW - 5000, HIGH + 5000), st.floats(LOW - 5000, HIGH + 5000))
def test_ribbon_pitch_is_non_decreasing_in_position_at_strength_zero(a, b):
    a, b = sorted((a, b))
    if a <= OPEN + 0.02 * (HIGH - LOW):
        return  # untouched
    assert ribbon().step(a, DT) <= ribbon().step(b, DT)


def test_ribbon_config_collects_every_problem():
    # the [controls] keys (strength, glide_s, scale, key ...) are the config schema's to check
    # (tests/test_config_controls.py); the tuning fields are checked here
    with pytest.raises(ControlsError) as err:
        RibbonConfig(open_band=0.9, touch_settle_s=1.0, vibrato_hz=0.0, hysteresis_semitones=-1)
    msg = str(err.value)
    for part in ("open_band", "touch_settle_s", "vibrato_hz", "hysteresis_semitones"):
        assert part in msg
    with pytest.raises(ControlsError, match="unknown scale 'nope'"):
        RibbonPitch(RibbonConfig(scale="nope"), LOW, HIGH, OPEN)
    with pytest.raises(ControlsError):
        RibbonPitch(RibbonConfig(), 5.0, 5.0, 0.0)


# --------------------------------------------------------------------------------------------
# Keys


def pads(*indices):
    m = 0
    for i in indices:
        m |= 1 << i
    return m


def test_keys_chromatic_from_the_base_note():
    k = KeysPitch()
    assert k.step(pads(0), DT) == pytest.approx(G3_HZ, abs=0.01)
    assert k.step(pads(11), DT) == pytest.approx(G3_HZ * 2 ** (11 / 12), rel=1e-9)
    assert k.step(pads(11), DT, transpose_semitones=-12) == pytest.approx(G3_HZ * 2 ** (-1 / 12), rel=1e-9)


def test_keys_scale():
    k = KeysPitch(KeysConfig(base_hz=note_to_hz("C4"), scale="major"))
    expected = [60, 62, 64, 65, 67, 69, 71, 72, 74, 76, 77, 79]
    assert [round(hz_to_midi(k.pad_hz(i)), 6) for i in range(12)] == expected


def test_last_note_priority():
    k = KeysPitch()
    note = lambda i: pytest.approx(G3_HZ * 2 ** (i / 12), rel=1e-9)  # noqa: E731
    assert k.step(pads(3), DT) == note(3)
    assert k.step(pads(3, 7), DT) == note(7)          # newest wins
    assert k.step(pads(3, 7, 1), DT) == note(1)       # newest wins, even if lower
    assert k.held == (3, 7, 1)
    assert k.step(pads(3, 7), DT) == note(7)          # release newest -> previous still held
    assert k.step(pads(7), DT) == note(7)             # releasing an older pad changes nothing
    assert k.step(pads(7, 2), DT) == note(2)
    assert k.step(pads(2), DT) == note(2)
    assert k.step(0, DT) == note(2)                   # nothing held -> hold
    assert k.step(pads(4, 9), DT) == note(9)          # same reading: highest pad last
    assert k.step(pads(4), DT) == note(4)


def test_keys_ignore_bad_masks():
    k = KeysPitch()
    f = k.step(pads(5), DT)
    for bad in (-1, 1 << 12, 1 << 200, 3.0, math.nan, None, "5"):
        assert k.step(bad, DT) == f
    assert k.held == (5,)


def test_keys_legato_glide():
    k = KeysPitch(KeysConfig(glide_s=0.01))
    first = hz_to_midi(k.step(pads(0), DT))  # first note: at once
    assert first == pytest.approx(hz_to_midi(G3_HZ))
    midis = [hz_to_midi(k.step(pads(0, 4), DT)) - first for _ in range(12)]
    assert 0.0 < midis[0] < 4.0 and midis[9] == pytest.approx(4.0) and midis[-1] == pytest.approx(4.0)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.integers(0, 4095), junk), max_size=60), dts, st.floats(0, 0.1))
def test_keys_property_last_note_priority_and_range(masks, dt, glide):
    k = KeysPitch(KeysConfig(glide_s=glide))
    ref: list[int] = []
    prev = 0
    lo, hi = G3_HZ * (1 - 1e-9), G3_HZ * 2 ** (11 / 12) * (1 + 1e-9)
    for m in masks:
        f = k.step(m, dt)
        assert math.isfinite(f) and lo <= f <= hi
        if isinstance(m, int) and 0 <= m <= 4095:
            ref = [i for i in ref if m >> i & 1] + [i for i in range(12) if m >> i & 1 and not prev >> i & 1]
            prev = m
        assert list(k.held) == ref
    if glide == 0.0 and ref:
        assert f == pytest.approx(k.pad_hz(ref[-1]))


# --------------------------------------------------------------------------------------------
# Pressure -> loudness

REST, PMAX = 400.0, 10400.0  # a 10000-count press range


def pressure(**kw):
    auto = kw.pop("auto_zero", False)
    return PressureLoudness(PressureConfig(**kw), REST, PMAX, auto_zero=auto)


def raw_press(p):
    return REST + p * (PMAX - REST)


def test_auto_zero_averages_the_first_readings():
    m = pressure(auto_zero=True, baseline_samples=50)
    for i in range(49):
        assert m.step(1000.0 + (i % 3), DT) == 0.0  # silent while zeroing
        assert m.baseline is None
    m.step(1000.0, DT)
    assert m.baseline == pytest.approx(1001.0 - 1 / 50 * 1 + 0.0, abs=0.05)
    # a press is now measured from the new baseline
    assert hold(m, 1000.0 + 10000.0, 0.05) == pytest.approx(1.0, abs=1e-3)
    m.set_baseline(500.0)
    assert m.baseline == 500.0


def test_auto_zero_restarts_when_the_start_is_unsteady():
    m = pressure(auto_zero=True, baseline_samples=20, baseline_tolerance=0.05)
    for i in range(15):
        m.step(400.0, DT)
    m.step(400.0 + 0.2 * 10000, DT)  # someone pressed: start again from here
    for i in range(18):
        m.step(400.0 + 0.2 * 10000, DT)
    assert m.baseline is None
    m.step(400.0 + 0.2 * 10000, DT)
    assert m.baseline == pytest.approx(2400.0)


def test_threshold_gates_and_full_press_is_one():
    m = pressure(threshold=0.05)
    assert hold(m, raw_press(0.049), 0.1) == 0.0
    assert hold(m, raw_press(1.0), 0.1) == pytest.approx(1.0)
    assert hold(m, raw_press(3.0), 0.1) == pytest.approx(1.0)  # past the calibrated max: clamped


def test_curves_closed_form():
    m = pressure(threshold=0.0, range_db=60.0, curve="linear")
    floor = 1 - 60 / 80
    assert m.curve(0.5) == pytest.approx(floor + (1 - floor) * 0.5)
    assert pressure(threshold=0.0, curve="hard").curve(0.5) == pytest.approx(floor + (1 - floor) * 0.25)
    assert pressure(threshold=0.0, curve=1.5).curve(0.25) == pytest.approx(floor + (1 - floor) * 0.125)
    amp = pressure(threshold=0.0, curve="amplitude", range_db=60.0)
    assert amp.curve(0.1) == pytest.approx(1 - 20 / 80)  # -20 dB
    assert amp.curve(1e-6) == pytest.approx(floor)  # clamped at -range_db
    # the threshold is taken off before the curve: just past it plays at -range_db
    m = pressure(threshold=0.1, range_db=40.0)
    assert m.curve(0.1) == 0.0 and m.curve(0.1 + 1e-9) == pytest.approx(1 - 40 / 80)


def test_reversed_sensor_polarity():
    m = PressureLoudness(PressureConfig(), 20000.0, 5000.0, auto_zero=False)  # pressing lowers it
    assert hold(m, 5000.0, 0.05) == pytest.approx(1.0)
    assert hold(m, 20000.0, 0.5) == 0.0


@pytest.mark.parametrize("target", [0.2, 0.6, 1.0])
def test_attack_adds_at_most_2_ms_of_lag(target):
    m = pressure(threshold=0.0)
    hold(m, raw_press(0.0), 0.1)
    goal = m.curve(target)
    t = 0.0
    y = m.step(raw_press(target), DT)  # the step arrives with this reading
    while y < 0.9 * goal:
        y = m.step(raw_press(target), DT)
        t += DT
    assert t <= 0.002 + 1e-12


def test_release_is_smooth_then_reaches_silence():
    m = pressure(release_s=0.03)
    hold(m, raw_press(1.0), 0.05)
    ys = [m.step(raw_press(0.0), DT) for _ in range(300)]
    assert 0.9 < ys[0] < 1.0 and ys[10] > 0.5  # not cut off
    assert all(b <= a for a, b in zip(ys, ys[1:]))
    assert ys[-1] == 0.0  # exactly silent, so the engine's gate closes


def test_release_method_fades_to_silence_when_the_sensor_is_gone():
    m = pressure()
    hold(m, raw_press(1.0), 0.05)
    ys = [m.release(DT) for _ in range(500)]
    assert ys[0] > 0.9 and ys[-1] == 0.0


def test_bad_readings_keep_the_last_target():
    m = pressure()
    y = hold(m, raw_press(0.5), 0.1)
    for bad in (math.nan, None, "x", math.inf, 10**500):
        assert m.step(bad, DT) == pytest.approx(y)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.one_of(junk, st.floats(-1e6, 1e6)), max_size=80),
    dts,
    st.sampled_from(sorted(CURVES) + [0.3, 3.0]),
    st.floats(0, 0.5),
    st.booleans(),
)
def test_loudness_is_finite_and_in_unit_range(raws, dt, curve, threshold, auto):
    m = PressureLoudness(PressureConfig(curve=curve, threshold=threshold, baseline_samples=5),
                         REST, PMAX, auto_zero=auto)
    for raw in raws:
        y = m.step(raw, dt)
        assert math.isfinite(y) and 0.0 <= y <= 1.0


@given(st.floats(-1e5, 1e5), st.floats(-1e5, 1e5), st.sampled_from(sorted(CURVES) + [0.3, 3.0]))
def test_loudness_is_non_decreasing_in_pressure_after_settling(a, b, curve):
    a, b = sorted((a, b))
    ya = hold(pressure(curve=curve), a, 0.2)
    yb = hold(pressure(curve=curve), b, 0.2)
    assert ya <= yb + 1e-12


# --------------------------------------------------------------------------------------------
# Knobs


def test_knob_noise_within_the_dead_band_changes_nothing():
    import random

    rng = random.Random(1)
    k = Knob(0.0, 26000.0, dead_band=0.01)
    v = k.step(13000.0)
    assert v == pytest.approx(0.5)
    for _ in range(5000):
        assert k.step(13000.0 + rng.uniform(-0.0099, 0.0099) * 26000) == v
    assert k.step(13000.0 + 0.02 * 26000) == pytest.approx(0.52)  # a real turn
    assert k.step(-50.0) == 0.0 and k.step(30.0) == 0.0  # the end is reachable and steady
    assert k.step(26000.0) == 1.0


def test_knob_reversed_and_bad_readings():
    k = Knob(26000.0, 0.0)
    assert k.step(0.0) == 1.0
    for bad in (math.nan, None, math.inf, "x"):
        assert k.step(bad) == 1.0


def test_knob_steps_hysteresis_at_boundaries():
    octave = KnobSteps(-2, 2, hysteresis=0.25)  # 5 slices of 0.2
    assert octave.step(0.5) == 0  # the first reading decides
    assert octave.step(0.61) == 0  # past the 0.6 edge but not by a quarter slice
    assert octave.step(0.651) == 1
    assert octave.step(0.58) == 1  # back below 0.6: still 1 (hysteresis)
    assert octave.step(0.549) == 0
    assert octave.step(0.0) == -2 and octave.step(1.0) == 2
    assert octave.step(math.nan) == 2


@given(st.lists(st.one_of(junk, st.floats(-1e9, 1e9)), max_size=50), st.integers(-3, 0), st.integers(0, 3))
def test_knobs_outputs_in_range(raws, lo, hi):
    k, s = Knob(100.0, 25000.0), KnobSteps(lo, hi)
    for raw in raws:
        v = k.step(raw)
        assert math.isfinite(v) and 0.0 <= v <= 1.0
        assert lo <= s.step(v) <= hi
        assert lo <= s.step(raw) <= hi


def test_knob_helpers():
    assert knob_to_gain_db(0.0) == -60.0 and knob_to_gain_db(1.0) == 0.0
    assert knob_to_gain_db(0.5, -40.0, 6.0) == pytest.approx(-17.0)
    assert knob_to_reverb_mix(0.25) == 0.25 and knob_to_reverb_mix(2.0, max_mix=0.5) == 0.5
    assert knob_to_gain_db(math.nan) == -60.0 and knob_to_reverb_mix(math.inf) == 1.0


def test_tone_knob_runs_dark_to_bright_with_a_flat_centre():
    assert knob_to_tone(0.0) == -1.0 and knob_to_tone(1.0) == 1.0
    assert knob_to_tone(0.5) == 0.0
    # the centre detent: a little either side of the middle is exactly flat …
    assert knob_to_tone(0.5 - 0.02) == 0.0 and knob_to_tone(0.5 + 0.02) == 0.0
    # … and the travel beyond it is continuous from 0
    assert 0.0 < knob_to_tone(0.5 + 0.03) < 0.02 and -0.02 < knob_to_tone(0.5 - 0.03) < 0.0
    assert knob_to_tone(0.75) == pytest.approx(-knob_to_tone(0.25))
    assert knob_to_tone(-3.0) == -1.0 and knob_to_tone(2.0) == 1.0
    assert knob_to_tone(math.nan) == 0.0 and knob_to_tone(None) == 0.0 and knob_to_tone("x") == 0.0


@given(st.floats(0.0, 1.0), st.floats(0.0, 1.0))
def test_tone_knob_is_monotonic_and_in_range(a, b):
    lo, hi = sorted((a, b))
    assert -1.0 <= knob_to_tone(lo) <= knob_to_tone(hi) <= 1.0


def test_configs_reject_strings_for_numbers_without_crashing():
    for cls, field in ((RibbonConfig, "vibrato_hz"), (KeysConfig, "glide_s"), (PressureConfig, "baseline_tolerance")):
        with pytest.raises(ControlsError, match=field):
            cls(**{field: "196"})
