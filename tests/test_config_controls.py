"""Validate once: every rule about ``[controls]`` lives in the config schema.

``config check`` must refuse exactly what ``run`` would: a config that loads builds a rig, and
the rig and the mapping take the schema's values without checking them again with other bounds.
"""

from __future__ import annotations

import random

import pytest

from ddsp_device.config import SCHEMA, load_config
from ddsp_device.controls.calibration import Calibration
from ddsp_device.controls.emulated import FakeClock
from ddsp_device.controls.rig import build_rig, default_calibration
from ddsp_device.controls.tools import EmulatedPlayer
from ddsp_device.errors import ConfigError


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    monkeypatch.setenv("DDSP_DEVICE_SYSTEM_CONFIG", str(tmp_path / "absent.toml"))
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path / "state"))


def problems(*overrides: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(None, list(overrides))
    return info.value.problems


def build(cfg, calibration=None):
    """The rig ``run`` would build for ``cfg``, on emulated chips."""
    clock = FakeClock()
    player = EmulatedPlayer(cfg, clock)
    rig = build_rig(cfg, bus=player.bus, clock=clock, calibration=calibration or default_calibration(cfg))
    rig.poller.run_for(0.02)
    return rig


# -- the cases found by hand -------------------------------------------------------------------


def test_misspelt_scale_is_refused_with_a_suggestion():
    (p,) = problems('controls.scale="majr"')
    assert p.startswith("controls.scale: unknown scale 'majr' (did you mean 'major'?)")
    assert "(from -o)" in p
    (p,) = problems('controls.keys_scale="pentatonik"')
    assert p.startswith("controls.keys_scale: unknown scale 'pentatonik' (did you mean 'pentatonic'?)")


def test_semitone_scales_are_accepted():
    assert load_config(None, ['controls.scale="0,2,4,7,9"']).controls.scale == "0,2,4,7,9"
    (p,) = problems('controls.scale="0,2,x"')
    assert p.startswith("controls.scale: unknown scale '0,2,x'")


def test_bad_key_is_refused():
    (p,) = problems('controls.scale_key="Q"')
    assert p.startswith("controls.scale_key: key must be a note name such as C, F#, Bb")
    assert load_config(None, ['controls.scale_key="F#"']).controls.scale_key == "F#"


@pytest.mark.parametrize("curve", ["loud", "-1", "0", "11", "nan"])
def test_bad_pressure_curve_is_refused(curve):
    (p,) = problems(f'controls.pressure_curve="{curve}"')
    assert p.startswith("controls.pressure_curve: curve must be one of linear, soft, hard, amplitude")


def test_pressure_curve_as_an_exponent_is_accepted():
    assert load_config(None, ['controls.pressure_curve="0.7"']).controls.pressure_curve == "0.7"


def test_a_knob_on_the_pitch_input_is_refused():
    (p,) = problems("controls.volume_channel=0")
    assert p.startswith("controls.volume_channel: ADC input 0 is already controls.pitch_channel")


def test_two_knobs_on_one_input_are_refused():
    (p,) = problems("controls.transpose_channel=3")
    assert p.startswith("controls.transpose_channel: ADC input 3 is already controls.reverb_channel")


def test_inputs_that_are_not_read_do_not_collide():
    # keys play pitch: the ADC's input 0 is free for a knob
    cfg = load_config(None, ['controls.pitch_source="keys"', "controls.volume_channel=0"])
    build(cfg).close()
    cfg = load_config(None, ['controls.pitch_source="keys"', "controls.pressure_channel=0"])
    build(cfg).close()


def test_a_data_rate_the_adc_does_not_have_is_refused():
    (p,) = problems("controls.adc_data_rate=3000")
    assert p.startswith("controls.adc_data_rate: the ADS1015 converts at 0 (its fastest) or ")
    assert "3300" in p and "got 3000" in p
    (p,) = problems('controls.adc_type="ads1115"', "controls.adc_data_rate=3300")
    assert "the ADS1115 converts at" in p and "860" in p
    assert load_config(None, ['controls.adc_type="ads1115"', "controls.adc_data_rate=860"])


def test_a_breath_sensor_on_the_adc_address_is_refused():
    (p,) = problems('controls.pressure_source="mprls"', "controls.mprls_address=0x48")
    assert p.startswith("controls.mprls_address: 0x48 is already controls.adc_address")


def test_every_problem_at_once():
    found = problems('controls.scale="majr"', 'controls.scale_key="Q"', 'controls.pressure_curve="loud"',
                     "controls.volume_channel=0", "controls.adc_data_rate=3000")
    keys = sorted(p.split(":")[0] for p in found)
    assert keys == ["controls.adc_data_rate", "controls.pressure_curve", "controls.scale", "controls.scale_key",
                    "controls.volume_channel"]


def test_config_check_refuses_them(capsys):
    from ddsp_device.cli import main

    assert main(["config", "check", "-o", 'controls.scale="majr"']) == 2
    err = capsys.readouterr().err
    assert "error: controls.scale: unknown scale 'majr' (did you mean 'major'?)" in err


# -- one place: what the schema allows, the rig builds ------------------------------------------


def _extremes(key) -> list:
    if key.choices is not None:
        return list(key.choices)
    if key.type == "bool":
        return [False, True]
    values = [key.default]
    if key.min is not None:
        values.append(int(key.min) if key.type == "int" else float(key.min))
    if key.max is not None:
        values.append(int(key.max) if key.type == "int" else float(key.max))
    return values


def test_every_bound_of_controls_builds_a_rig():
    """Each numeric [controls] key at its schema bounds (the rest at defaults): the rig builds.

    (Before: the mapping checked ``base_hz`` against 1..20000 and the schema against 20..5000;
    now the schema's bounds are the only ones, and everything inside them plays.)
    """
    for key in SCHEMA["controls"].keys.values():
        for value in _extremes(key):
            override = f"controls.{key.name}={value!r}".replace("'", '"').replace("True", "true").replace(
                "False", "false")
            try:
                cfg = load_config(None, [override])
            except ConfigError:
                continue  # the schema refuses it: run would too
            build(cfg).close()


def test_random_configs_the_schema_accepts_all_build():
    """Random [controls] combinations: whatever ``config check`` accepts, the rig builds."""
    rng = random.Random(11)
    keys = list(SCHEMA["controls"].keys.values())
    text_values = {
        "scale": ["chromatic", "major", "minor", "blues", "0,3,7", "majr", "7"],
        "keys_scale": ["chromatic", "whole_tone", "0,5", "nope"],
        "scale_key": ["C", "F#", "Bb", "Q", ""],
        "pressure_curve": ["linear", "soft", "hard", "amplitude", "0.7", "loud", "-1"],
    }
    accepted = refused = 0
    for _ in range(150):
        overrides = []
        for key in rng.sample(keys, 6):
            if key.name in text_values:
                value = f'"{rng.choice(text_values[key.name])}"'
            elif key.type == "int" and key.name.endswith("_channel"):
                value = str(rng.randint(-1, 3))
            elif key.name == "adc_data_rate":
                value = str(rng.choice([0, 128, 250, 475, 490, 860, 920, 1600, 2400, 3000, 3300]))
            else:
                value = repr(rng.choice(_extremes(key))).replace("'", '"').replace("True", "true").replace(
                    "False", "false")
            overrides.append(f"controls.{key.name}={value}")
        try:
            cfg = load_config(None, overrides)
        except ConfigError:
            refused += 1
            continue
        accepted += 1
        cal = Calibration.default(knobs=["volume"])  # a calibration without every knob still plays
        build(cfg, cal).close()
    assert accepted > 20 and refused > 20
