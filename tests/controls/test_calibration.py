"""Calibration file (validation, atomic save) and the guided procedure's logic."""

import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from ddsp_device.controls import calibration as cal_mod
from ddsp_device.controls.calibration import (
    Calibration,
    CalibrationSession,
    KnobRange,
    default_path,
    load,
    save,
)
from ddsp_device.controls.mapping import (
    Knob,
    PressureConfig,
    PressureLoudness,
    RibbonConfig,
    RibbonPitch,
)
from ddsp_device.errors import ControlsError, DdspDeviceError

FS = 26400.0  # most tests use ADC counts; the logic does not care about units


def example(**kw):
    values = dict(
        ribbon_low=1320.0, ribbon_high=25080.0, ribbon_open=3.0,
        pressure_rest=410.0, pressure_max=18000.0,
        knobs={"volume": KnobRange(15.0, 26390.0), "reverb": KnobRange(26000.0, 20.0)},
        created_at="2025-01-31T18:04:05Z",
    )
    values.update(kw)
    return Calibration(**values)


def example_dict():
    return json.loads(example().to_json())


# --------------------------------------------------------------------------------------------
# JSON


def test_json_round_trip():
    c = example()
    assert Calibration.from_json(c.to_json()) == c
    assert json.loads(c.to_json())["ribbon"] == {"low": 1320.0, "high": 25080.0, "open": 3.0}


def test_created_at_defaults_to_now_in_utc():
    c = Calibration(1.0, 2.0, 0.0, 0.0, 1.0)
    assert c.created_at.endswith("Z") and c.version == 1
    assert Calibration.from_json(c.to_json()) == c


def test_ints_are_accepted_as_numbers():
    d = example_dict()
    d["ribbon"]["low"] = 1320
    assert Calibration.from_dict(d).ribbon_low == 1320.0


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d["ribbon"].pop("high"), "ribbon.high: missing"),
        (lambda d: d.pop("pressure"), "pressure: missing"),
        (lambda d: d["pressure"].update(max="lots"), "pressure.max: expected a number, got the string 'lots'"),
        (lambda d: d["ribbon"].update(open=True), "ribbon.open: expected a number, got true"),
        (lambda d: d["ribbon"].update(low=float("nan")), "ribbon.low: must be a finite number"),
        (lambda d: d["ribbon"].update(low=10**400), "ribbon.low: must be a finite number"),
        (lambda d: d["ribbon"].update(high=1320.0), "ribbon.high: must differ from ribbon.low"),
        (lambda d: d.update(ribbon=[1, 2]), "ribbon: expected an object, got a list"),
        (lambda d: d["knobs"]["volume"].pop("max"), "knobs.volume.max: missing"),
        (lambda d: d["knobs"].update(volume=3), "knobs.volume: expected an object"),
        (lambda d: d.update(version=2), "version: this ddsp-device reads version 1, got 2"),
        (lambda d: d.pop("version"), "version: missing"),
        (lambda d: d.update(created_at="yesterday"), "created_at: not an ISO 8601 time"),
    ],
)
def test_malformed_fields_are_named(mutate, message):
    d = example_dict()
    mutate(d)
    with pytest.raises(ControlsError, match="^where: .*" + message.replace("(", r"\(").replace(")", r"\)")):
        Calibration.from_dict(d, where="where")


def test_every_problem_is_reported_at_once():
    d = example_dict()
    d["ribbon"].pop("low")
    d["pressure"]["rest"] = "x"
    with pytest.raises(ControlsError) as err:
        Calibration.from_dict(d)
    assert "ribbon.low: missing" in str(err.value) and "pressure.rest: expected a number" in str(err.value)
    assert isinstance(err.value, ValueError) and isinstance(err.value, DdspDeviceError)


def test_not_json_or_not_an_object():
    with pytest.raises(ControlsError, match="f.json: not valid JSON"):
        Calibration.from_json("{", where="f.json")
    with pytest.raises(ControlsError, match="expected a JSON object, got a list"):
        Calibration.from_json("[]")


def test_unknown_fields_are_ignored_with_a_warning(caplog):
    d = example_dict()
    d["colour"] = "red"
    d["ribbon"]["middle"] = 5
    d["knobs"]["volume"]["detent"] = 0.5
    with caplog.at_level(logging.WARNING, logger=cal_mod.__name__):
        c = Calibration.from_dict(d)
    assert c == example()
    text = caplog.text
    assert "'colour'" in text and "'ribbon.middle'" in text and "'knobs.volume.detent'" in text


def test_knobs_are_optional():
    d = example_dict()
    d.pop("knobs")
    assert Calibration.from_dict(d).knobs == {}


# --------------------------------------------------------------------------------------------
# The file


def test_default_path_is_in_the_state_directory(monkeypatch, tmp_path):
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path))
    assert default_path() == tmp_path / "calibration.json"
    assert load() is None
    save(example())
    assert load() == example()


def test_load_absent_returns_none(tmp_path):
    assert load(tmp_path / "nothing.json") is None


def test_save_creates_the_state_directory_and_round_trips(tmp_path, monkeypatch):
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path / "state"))
    path = tmp_path / "state" / "calibration.json"
    assert save(example()) == path
    assert load(path) == example()
    assert sorted(p.name for p in path.parent.iterdir()) == ["calibration.json"]


def test_save_elsewhere_needs_an_existing_directory(tmp_path):
    """`calibrate --out /nonexistent/c.json` must not create /nonexistent."""
    with pytest.raises(ControlsError, match="cannot save the calibration"):
        save(example(), tmp_path / "nonexistent" / "c.json")
    assert not (tmp_path / "nonexistent").exists()
    assert save(example(), tmp_path / "c.json") == tmp_path / "c.json"


def test_load_names_the_file_when_malformed(tmp_path):
    path = tmp_path / "calibration.json"
    path.write_text('{"version": 1}')
    with pytest.raises(ControlsError, match=f"^{path}: .*ribbon: missing"):
        load(path)


def test_save_fsyncs_file_and_directory(tmp_path, monkeypatch):
    synced = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real(fd)))
    save(example(), tmp_path / "calibration.json")
    assert len(synced) == 2


def test_failed_replace_keeps_the_old_file_and_cleans_up(tmp_path, monkeypatch):
    path = tmp_path / "calibration.json"
    save(example(), path)
    old = path.read_bytes()

    def boom(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(ControlsError, match="cannot save the calibration: No space left on device"):
        save(example(ribbon_low=5.0), path)
    assert path.read_bytes() == old
    assert [p.name for p in tmp_path.iterdir()] == ["calibration.json"]


def test_crash_between_write_and_replace_leaves_the_old_file(tmp_path):
    """The process dies (os._exit) after the temp file is written and synced, before the rename."""
    path = tmp_path / "calibration.json"
    save(example(), path)
    old = path.read_bytes()
    script = textwrap.dedent(f"""
        import os
        from ddsp_device.controls.calibration import Calibration, save
        os.replace = lambda src, dst: os._exit(3)
        save(Calibration(1.0, 2.0, 0.0, 0.0, 1.0), {str(path)!r})
    """)
    env = dict(os.environ, PYTHONPATH=str(Path(cal_mod.__file__).parents[2]))
    proc = subprocess.run([sys.executable, "-c", script], env=env)
    assert proc.returncode == 3
    assert path.read_bytes() == old  # the old file, whole
    leftovers = [p for p in tmp_path.iterdir() if p.name != "calibration.json"]
    assert len(leftovers) == 1 and leftovers[0].name.startswith(".calibration.json.")
    assert load(path) == example()  # the stray temp file is not read
    save(example(ribbon_low=7.0), path)  # and does not stop the next save
    assert load(path).ribbon_low == 7.0


def test_save_to_an_unwritable_place_is_a_controls_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ControlsError, match="cannot save the calibration"):
        save(example(), blocker / "calibration.json")


# --------------------------------------------------------------------------------------------
# The guided procedure

rng = np.random.default_rng(0)


def noisy(values, sd=4.0):
    return list(np.asarray(values, dtype=float) + rng.normal(0, sd, len(values)))


def feed(session, ribbon=None, pressure=None, knobs=None):
    n = max(len(x) for x in (ribbon or [], pressure or [], *(knobs or {}).values()))
    for i in range(n):
        session.add(
            ribbon=ribbon[i] if ribbon and i < len(ribbon) else None,
            pressure=pressure[i] if pressure and i < len(pressure) else None,
            knobs={k: v[i] for k, v in (knobs or {}).items() if i < len(v)},
        )


def slide(start, end, n=400, untouched=2.0):
    untouched = [untouched] * 50
    return untouched + list(np.linspace(start, end, n)) + untouched


def press(rest, peak, n=600):
    t = np.linspace(0, 3 * np.pi, n)
    return list(rest + (peak - rest) * np.clip(np.sin(t), 0, None))


def run_release(session, ribbon=2.0, pressure=410.0):
    feed(session, ribbon=noisy([ribbon] * 200), pressure=noisy([pressure] * 200))
    return session.finish_step()


def test_steps_in_order_with_prompts():
    s = CalibrationSession(knobs=("volume",), adc_full_scale=FS)
    names = [step.name for step in s.steps]
    assert names == ["release", "ribbon", "pressure", "knobs"]
    assert "ribbon" in s.steps[1].prompt.lower() and "end" in s.steps[1].prompt
    assert [st.name for st in CalibrationSession(ribbon=False, adc_full_scale=FS).steps] == ["release", "pressure"]


def test_a_full_session_produces_a_calibration_that_plays():
    s = CalibrationSession(knobs=("volume", "reverb"), adc_full_scale=FS)
    assert s.step.name == "release"
    assert "untouched at 2" in run_release(s)
    feed(s, ribbon=noisy(slide(1320, 25080)))
    assert "(low)" in s.finish_step()
    feed(s, pressure=noisy(press(410, 18000)))
    assert "(hardest)" in s.finish_step()
    feed(s, knobs={"volume": noisy(list(np.linspace(10, 26390, 300))),
                   "reverb": noisy(list(np.linspace(26000, 25, 300)))})
    s.finish_step()
    assert s.done and s.step is None
    c = s.result(now="2025-02-01T10:00:00Z")
    assert c.created_at == "2025-02-01T10:00:00Z"
    assert c.ribbon_open == pytest.approx(2.0, abs=3)
    assert c.ribbon_low == pytest.approx(1320, abs=300) and c.ribbon_high == pytest.approx(25080, abs=300)
    assert c.pressure_rest == pytest.approx(410, abs=3) and c.pressure_max == pytest.approx(18000, abs=100)
    assert c.knobs["volume"].min < 500 < 26000 < c.knobs["volume"].max
    assert c.knobs["reverb"].min > 25000 > 500 > c.knobs["reverb"].max  # wired backwards: kept
    assert Calibration.from_json(c.to_json()) == c
    # and the mappers accept it
    r = RibbonPitch.from_calibration(RibbonConfig(touch_settle_s=0.0), c)
    assert r.step(c.ribbon_low, 0.001) == pytest.approx(196.0, abs=0.01)
    p = PressureLoudness.from_calibration(PressureConfig(), c, auto_zero=False)
    assert p.step(c.pressure_max, 0.01) == pytest.approx(1.0, abs=0.01)
    assert Knob.from_calibration(c, "reverb").step(25.0) == 1.0


def test_ribbon_orientation_comes_from_where_the_slide_starts():
    s = CalibrationSession(pressure=False, adc_full_scale=FS)
    run_release(s, ribbon=26300.0)  # wiper pulled up this time
    feed(s, ribbon=noisy(slide(24000, 1500, untouched=26300.0)))  # low pitch end reads high
    s.finish_step()
    c = s.result()
    assert c.ribbon_low > 23000 and c.ribbon_high < 2500 and c.ribbon_open > 26000


def test_ribbon_moved_too_little_is_rejected_with_advice():
    s = CalibrationSession(pressure=False, adc_full_scale=FS)
    run_release(s)
    feed(s, ribbon=noisy(slide(10000, 10800)))
    with pytest.raises(ControlsError, match=r"^ribbon moved only 3% of the ADC range; slide from one end to the other$"):
        s.finish_step()
    assert s.step.name == "ribbon"  # same step again, samples dropped
    feed(s, ribbon=noisy(slide(1320, 25080)))
    s.finish_step()
    assert s.done


def test_ribbon_never_touched_is_rejected():
    s = CalibrationSession(pressure=False, adc_full_scale=FS)
    run_release(s)
    feed(s, ribbon=noisy([2.0] * 300))
    with pytest.raises(ControlsError, match="hardly touched.*slide from one end to the other"):
        s.finish_step()


def test_ribbon_open_level_inside_the_played_range_is_rejected():
    s = CalibrationSession(pressure=False, adc_full_scale=FS)
    run_release(s, ribbon=12000.0)  # a floating wiper that happens to sit mid-range
    feed(s, ribbon=noisy(list(np.linspace(1320, 25080, 400))))
    with pytest.raises(ControlsError, match=r"reads 1\d{4} when untouched, inside its played range.*pull-down"):
        s.finish_step()


def test_release_with_a_wandering_reading_is_rejected():
    s = CalibrationSession(pressure=False, adc_full_scale=FS)
    feed(s, ribbon=list(np.linspace(0, 8000, 200)))
    with pytest.raises(ControlsError, match="wandered over 30% of the ADC range while untouched"):
        s.finish_step()


def test_missing_readings_are_rejected():
    s = CalibrationSession(adc_full_scale=FS)
    feed(s, ribbon=[2.0] * 200, pressure=[float("nan")] * 200)
    with pytest.raises(ControlsError, match="no pressure readings arrived.*ddsp-device monitor"):
        s.finish_step()


def test_pressure_press_too_light_is_rejected():
    s = CalibrationSession(ribbon=False, adc_full_scale=FS)
    run_release(s)
    feed(s, pressure=noisy(press(410, 1200)))
    with pytest.raises(ControlsError, match="^pressure rose only 3% of the sensor's range from rest; press as hard as you will play$"):
        s.finish_step()


def test_pressure_that_falls_when_pressed():
    s = CalibrationSession(ribbon=False, adc_full_scale=FS)
    run_release(s, pressure=25000.0)
    feed(s, pressure=noisy(press(25000, 4000)))
    s.finish_step()
    c = s.result()
    assert c.pressure_rest == pytest.approx(25000, abs=3) and c.pressure_max == pytest.approx(4000, abs=100)


def test_knob_turned_too_little_names_the_knob():
    s = CalibrationSession(ribbon=False, pressure=False, knobs=("volume", "reverb"), adc_full_scale=FS)
    feed(s, knobs={"volume": list(np.linspace(0, 26000, 100)), "reverb": list(np.linspace(100, 3000, 100))})
    with pytest.raises(ControlsError, match="^knob 'reverb' turned through only 11% of the ADC range; turn it"):
        s.finish_step()


def test_result_before_the_end_lists_the_steps_left():
    s = CalibrationSession(knobs=("volume",), adc_full_scale=FS)
    run_release(s)
    with pytest.raises(ControlsError, match="steps left: ribbon, pressure, knobs"):
        s.result()


def test_controls_without_a_step_keep_the_previous_values():
    prev = example()
    s = CalibrationSession(ribbon=False, previous=prev, adc_full_scale=FS)
    run_release(s, pressure=500.0)
    feed(s, pressure=noisy(press(500, 9000)))
    s.finish_step()
    c = s.result()
    assert (c.ribbon_low, c.ribbon_high, c.ribbon_open) == (1320.0, 25080.0, 3.0)
    assert c.knobs == prev.knobs
    assert c.pressure_rest == pytest.approx(500, abs=3)


def test_finish_after_done_raises():
    s = CalibrationSession(ribbon=False, pressure=False, knobs=("v",), adc_full_scale=FS)
    feed(s, knobs={"v": list(np.linspace(0, 26000, 100))})
    s.finish_step()
    with pytest.raises(ControlsError, match="already done"):
        s.finish_step()


def test_a_session_in_the_pollers_units():
    """ADC inputs as fractions of the supply (the default) and an MPRLS breath sensor in hPa."""
    s = CalibrationSession(pressure_full_scale=60.0)
    feed(s, ribbon=noisy([0.0] * 200, 1e-4), pressure=noisy([1013.2] * 200, 0.05))
    assert "pressure at rest 1013" in s.finish_step()
    feed(s, ribbon=noisy(slide(0.05, 0.95, untouched=0.0), 1e-4))
    assert "(low)" in s.finish_step()
    feed(s, pressure=noisy(press(1013.2, 1013.2 + 35.0), 0.05))
    s.finish_step()
    c = s.result()
    assert c.ribbon_low == pytest.approx(0.05, abs=0.02) and c.ribbon_high == pytest.approx(0.95, abs=0.02)
    assert c.pressure_max - c.pressure_rest == pytest.approx(35.0, abs=1.0)
    s = CalibrationSession(ribbon=False, pressure_full_scale=60.0)
    feed(s, pressure=noisy([1013.2] * 200, 0.05))
    s.finish_step()
    feed(s, pressure=noisy(press(1013.2, 1014.2), 0.05))
    with pytest.raises(ControlsError, match="pressure rose only 2% of the sensor's range from rest"):
        s.finish_step()
    assert Calibration.default().ribbon_high == pytest.approx(0.95)
