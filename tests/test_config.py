"""Tests for ddsp_device.config: layering, validation (every error at once), origins, output."""

from __future__ import annotations

import dataclasses
import importlib.resources
import io
import re
import tomllib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ddsp_device import config as config_mod
from ddsp_device.config import (
    CHECKS,
    SCHEMA,
    SYSTEM_CONFIG_ENV,
    SYSTEM_CONFIG_PATH,
    Config,
    Key,
    check_main,
    format_config,
    load_config,
)
from ddsp_device.errors import ConfigError, DdspDeviceError


@pytest.fixture(autouse=True)
def no_real_system_file(tmp_path, monkeypatch):
    """Never read the real /etc: point the system file at a path that does not exist."""
    monkeypatch.setenv(SYSTEM_CONFIG_ENV, str(tmp_path / "no-system-config.toml"))


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def problems_of(**kwargs) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(**kwargs)
    return info.value.problems


def schema_defaults() -> dict[str, dict]:
    return {s.name: {k.name: k.default for k in s.keys.values()} for s in SCHEMA.values()}


# --- defaults and the schema ------------------------------------------------------------------


def test_defaults_load_with_documented_values():
    cfg = load_config()
    assert isinstance(cfg, Config)
    assert cfg.sources == []
    assert cfg.audio.device == "default"
    assert cfg.audio.sample_rate == 48000
    assert cfg.audio.period_size == 128
    assert cfg.audio.periods == 2
    assert cfg.model.name == "Violin"
    assert cfg.model.directory == ""
    assert cfg.model.runtime == "auto"
    assert cfg.model.fallback_sample_rate_hz == 48000
    assert cfg.model.fallback_frame_rate_hz == 250.0
    assert cfg.model.fallback_f0_min_hz == 30.0
    assert cfg.model.fallback_f0_max_hz == 4200.0
    assert cfg.synth.master_gain_db == 0.0
    assert cfg.synth.tone == 0.0
    assert cfg.synth.reverb_mix == 0.15
    assert cfg.synth.reverb_decay_s == 1.5
    assert cfg.synth.noise_seed == 0
    assert cfg.controls.adc_type == "ads1015" and cfg.controls.adc_address == 0x48
    assert cfg.panel.enabled is True and cfg.panel.led_pin == 12
    assert all(cfg.origin(f"{s}.{k}") == "defaults" for s, keys in cfg.as_dict().items() for k in keys)


def test_packaged_defaults_toml_matches_schema_and_documents_every_key():
    text = importlib.resources.files("ddsp_device").joinpath("defaults.toml").read_text("utf-8")
    assert tomllib.loads(text) == schema_defaults()
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if re.match(r"^[a-z_0-9]+ = ", line):
            assert lines[i - 1].startswith("#"), f"no comment above {line!r} in defaults.toml"


def test_values_are_typed():
    cfg = load_config(overrides=["synth.reverb_decay_s=2", "model.fallback_frame_rate_hz=100"])
    assert type(cfg.synth.reverb_decay_s) is float and cfg.synth.reverb_decay_s == 2.0
    assert type(cfg.model.fallback_frame_rate_hz) is float
    assert type(cfg.audio.sample_rate) is int


def test_config_is_frozen():
    cfg = load_config()
    with pytest.raises(AttributeError):
        cfg.audio = None
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.audio.period_size = 64
    with pytest.raises(AttributeError, match="did you mean 'audio'"):
        cfg.audo
    cfg.sources.append("x")
    assert cfg.sources == []


def test_schema_rejects_a_default_that_breaks_its_own_range():
    with pytest.raises(ValueError, match="default must be between"):
        Key("x", "int", 5, "doc", min=10, max=20)


def test_system_config_path_default():
    assert SYSTEM_CONFIG_PATH == Path("/etc/ddsp-device/config.toml")


def test_config_error_is_in_the_tree():
    assert issubclass(ConfigError, DdspDeviceError) and issubclass(ConfigError, ValueError)


# --- layering and origins ----------------------------------------------------------------------


def test_layers_later_wins(tmp_path, monkeypatch):
    system = write(tmp_path / "system.toml",
                   "[audio]\nperiod_size = 256\nperiods = 3\nsample_rate = 44100\n")
    monkeypatch.setenv(SYSTEM_CONFIG_ENV, str(system))
    user = write(tmp_path / "user.toml", "[audio]\nperiods = 4\nsample_rate = 48000\n")
    cfg = load_config(user, ["audio.sample_rate=44100"])
    assert cfg.audio.period_size == 256          # system
    assert cfg.audio.periods == 4                # --config beats system
    assert cfg.audio.sample_rate == 44100        # -o beats --config
    assert cfg.audio.device == "default"         # defaults
    assert cfg.origin("audio.period_size") == str(system)
    assert cfg.origin("audio.periods") == str(user)
    assert cfg.origin("audio.sample_rate") == "-o"
    assert cfg.origin("audio.device") == "defaults"
    assert cfg.sources == [str(system), str(user)]


def test_system_file_argument_beats_env_var(tmp_path, monkeypatch):
    env_file = write(tmp_path / "env.toml", "[audio]\nperiods = 3\n")
    arg_file = write(tmp_path / "arg.toml", "[audio]\nperiods = 5\n")
    monkeypatch.setenv(SYSTEM_CONFIG_ENV, str(env_file))
    assert load_config().audio.periods == 3
    assert load_config(system_file=arg_file).audio.periods == 5


def test_missing_system_file_is_skipped(tmp_path):
    cfg = load_config(system_file=tmp_path / "absent.toml")
    assert cfg.sources == []


def test_later_layer_can_fix_an_earlier_bad_value(tmp_path, monkeypatch):
    system = write(tmp_path / "system.toml", "[audio]\nperiod_size = 4096\n")
    monkeypatch.setenv(SYSTEM_CONFIG_ENV, str(system))
    assert load_config(overrides=["audio.period_size=64"]).audio.period_size == 64


def test_later_override_wins_over_earlier_override():
    cfg = load_config(overrides=["audio.periods=3", "audio.periods=4"])
    assert cfg.audio.periods == 4


def test_origin_of_unknown_key_raises():
    with pytest.raises(KeyError):
        load_config().origin("audio.nope")


# --- -o parsing -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("override", "dotted", "expected"),
    [
        ("audio.period_size=256", "audio.period_size", 256),
        ("synth.reverb_mix=0.5", "synth.reverb_mix", 0.5),
        ("audio.device=hw:CARD=sndrpihifiberry,DEV=0", "audio.device", "hw:CARD=sndrpihifiberry,DEV=0"),
        ('audio.device="plughw:1"', "audio.device", "plughw:1"),
        ("model.name=Violin", "model.name", "Violin"),
        ("model.name=2024", "model.name", "2024"),          # string key: the raw text
        ("model.directory=", "model.directory", ""),
        (" audio.periods = 8 ", "audio.periods", 8),
    ],
)
def test_override_values(override, dotted, expected):
    cfg = load_config(overrides=[override])
    section, key = dotted.split(".")
    value = getattr(getattr(cfg, section), key)
    assert value == expected and type(value) is type(expected)
    assert cfg.origin(dotted) == "-o"


def test_override_value_not_a_toml_value_is_a_string_and_then_type_checked():
    assert problems_of(overrides=["audio.period_size=big"]) == [
        'audio.period_size: expected an integer, got string "big" (from -o)'
    ]


def test_override_value_cannot_inject_other_keys():
    assert problems_of(overrides=["audio.periods=3\nperiod_size = 64"]) == [
        'audio.periods: expected an integer, got string "3\\nperiod_size = 64" (from -o)'
    ]


@pytest.mark.parametrize(
    ("override", "problem"),
    [
        ("audio.period_size", "-o audio.period_size: expected section.key=value (missing '=')"),
        ("period_size=256", "-o period_size=256: expected section.key=value (missing section)"),
        ("audio.x.y=1", "-o audio.x.y=1: expected section.key=value"),
        (".period_size=1", "-o .period_size=1: expected section.key=value"),
        ("=1", "-o =1: expected section.key=value"),
    ],
)
def test_bad_override_syntax(override, problem):
    assert problems_of(overrides=[override]) == [problem]


# --- each error kind --------------------------------------------------------------------------


def test_out_of_range_names_the_file(tmp_path):
    f = write(tmp_path / "c.toml", "[audio]\nperiod_size = 4096\n")
    assert problems_of(config_file=f) == [
        f"audio.period_size: must be between 32 and 2048, got 4096 (from {f})"
    ]


def test_out_of_range_in_system_file_names_it(tmp_path, monkeypatch):
    system = write(tmp_path / "system.toml", "[audio]\nperiod_size = 4096\n")
    monkeypatch.setenv(SYSTEM_CONFIG_ENV, str(system))
    assert problems_of() == [
        f"audio.period_size: must be between 32 and 2048, got 4096 (from {system})"
    ]


def test_lower_bound_only():
    assert problems_of(overrides=["synth.noise_seed=-1"]) == [
        "synth.noise_seed: must be at least 0, got -1 (from -o)"
    ]


def test_float_range_message():
    assert problems_of(overrides=["synth.reverb_mix=1.5"]) == [
        "synth.reverb_mix: must be between 0.0 and 1.0, got 1.5 (from -o)"
    ]


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_non_finite_float_rejected(value):
    assert problems_of(overrides=[f"synth.reverb_mix={value}"]) == [
        f"synth.reverb_mix: must be a finite number, got {value} (from -o)"
    ]


def test_bad_choice(tmp_path):
    f = write(tmp_path / "c.toml", '[audio]\nsample_rate = 22050\n[model]\nruntime = "tflite"\n')
    assert problems_of(config_file=f) == [
        f"audio.sample_rate: must be one of 44100, 48000, got 22050 (from {f})",
        f'model.runtime: must be one of "auto", "tflite-runtime", "ai-edge-litert", got "tflite" (from {f})',
    ]


def test_unknown_key_with_suggestion(tmp_path):
    f = write(tmp_path / "c.toml", "[audio]\nperod_size = 256\nzzz = 1\n")
    assert problems_of(config_file=f) == [
        f"audio.perod_size: unknown key (did you mean 'period_size'?) (from {f})",
        f"audio.zzz: unknown key (from {f})",
    ]


def test_unknown_section_with_suggestion(tmp_path):
    f = write(tmp_path / "c.toml", "[audo]\nperiod_size = 256\n[zzz]\nx = 1\n")
    assert problems_of(config_file=f) == [
        f"audo: unknown section (did you mean 'audio'?) (from {f})",
        f"zzz: unknown section (from {f})",
    ]


def test_section_that_is_not_a_table(tmp_path):
    f = write(tmp_path / "c.toml", "audio = 5\n")
    assert problems_of(config_file=f) == [f"audio: expected a table, got integer 5 (from {f})"]


@pytest.mark.parametrize(
    ("toml", "problem"),
    [
        ("[model]\nname = 5\n", "model.name: expected a string, got integer 5"),
        ("[model]\ndirectory = [1, 2]\n", "model.directory: expected a string (a path), got array [1, 2]"),
        ('[audio]\nperiod_size = "128"\n', 'audio.period_size: expected an integer, got string "128"'),
        ("[audio]\nperiod_size = 128.0\n", "audio.period_size: expected an integer, got float 128.0"),
        ('[synth]\nreverb_mix = "0.5"\n', 'synth.reverb_mix: expected a number, got string "0.5"'),
        ("[audio]\ndevice = {a = 1}\n", "audio.device: expected a string, got table {a = 1}"),
    ],
)
def test_wrong_type(tmp_path, toml, problem):
    f = write(tmp_path / "c.toml", toml)
    assert problems_of(config_file=f) == [f"{problem} (from {f})"]


@pytest.mark.parametrize("dotted", ["audio.periods", "synth.noise_seed", "synth.reverb_mix"])
def test_bool_is_never_a_number(tmp_path, dotted):
    section, key = dotted.split(".")
    f = write(tmp_path / "c.toml", f"[{section}]\n{key} = true\n")
    expected = "a number" if SCHEMA[section].keys[key].type == "float" else "an integer"
    assert problems_of(config_file=f) == [f"{dotted}: expected {expected}, got boolean true (from {f})"]


def test_int_accepted_for_float(tmp_path):
    f = write(tmp_path / "c.toml", "[controls]\nribbon_base_hz = 220\n")
    value = load_config(f).controls.ribbon_base_hz
    assert value == 220.0 and type(value) is float


def test_invalid_toml_has_file_line_and_column(tmp_path):
    f = write(tmp_path / "c.toml", "[audio]\nperiod_size = = 3\n")
    (problem,) = problems_of(config_file=f)
    assert problem.startswith(f"{f}: invalid TOML: ")
    assert "line 2" in problem and "column" in problem


def test_invalid_utf8(tmp_path):
    f = tmp_path / "c.toml"
    f.write_bytes(b'[audio]\ndevice = "\xff"\n')
    assert problems_of(config_file=f) == [f"{f}: invalid TOML: not UTF-8 (byte 18)"]


def test_missing_config_file(tmp_path):
    missing = tmp_path / "nope.toml"
    assert problems_of(config_file=missing) == [f"{missing}: config file not found"]


def test_unreadable_config_file(tmp_path):
    assert problems_of(config_file=tmp_path) == [f"{tmp_path}: cannot read: Is a directory"]


def test_cross_field_check_names_both_keys(tmp_path):
    f = write(tmp_path / "c.toml", "[model]\nfallback_f0_min_hz = 5000.0\n")
    assert problems_of(config_file=f) == [
        "model.fallback_f0_min_hz: must be less than model.fallback_f0_max_hz, got 5000.0 >= 4200.0"
        f" (model.fallback_f0_min_hz from {f}; model.fallback_f0_max_hz from defaults)"
    ]
    g = write(tmp_path / "g.toml", "[model]\nfallback_f0_min_hz = 100\nfallback_f0_max_hz = 100\n")
    assert problems_of(config_file=g) == [
        "model.fallback_f0_min_hz: must be less than model.fallback_f0_max_hz, got 100.0 >= 100.0"
        f" (from {g})"
    ]


def test_cross_field_check_skipped_when_a_key_is_already_invalid():
    assert problems_of(overrides=["model.fallback_f0_min_hz=30000"]) == [
        "model.fallback_f0_min_hz: must be between 1.0 and 20000.0, got 30000.0 (from -o)"
    ]


# --- every error at once ----------------------------------------------------------------------


def test_errors_from_every_layer_in_one_run(tmp_path, monkeypatch):
    system = write(tmp_path / "system.toml", "[audio]\nperiods = 99\n")
    monkeypatch.setenv(SYSTEM_CONFIG_ENV, str(system))
    user = write(tmp_path / "user.toml",
                 "[audo]\nx = 1\n[audio]\nperiod_size = 4096\nsample_rate = 22050\n"
                 "[model]\nname = 5\n[controls]\nribbon_base_hz = true\n")
    problems = problems_of(config_file=user,
                           overrides=["synth.noise_seed=-3", "bad", "audio.perod_size=1"])
    assert sorted(problems) == sorted([
        f"audo: unknown section (did you mean 'audio'?) (from {user})",
        "-o bad: expected section.key=value (missing '=')",
        "audio.perod_size: unknown key (did you mean 'period_size'?) (from -o)",
        f"audio.sample_rate: must be one of 44100, 48000, got 22050 (from {user})",
        f"audio.period_size: must be between 32 and 2048, got 4096 (from {user})",
        f"audio.periods: must be between 2 and 16, got 99 (from {system})",
        f"model.name: expected a string, got integer 5 (from {user})",
        "synth.noise_seed: must be at least 0, got -3 (from -o)",
        f"controls.ribbon_base_hz: expected a number, got boolean true (from {user})",
    ])


def test_bad_toml_in_one_file_does_not_hide_errors_in_others(tmp_path, monkeypatch):
    system = write(tmp_path / "system.toml", "[synth]\nreverb_mix = oops\n")
    monkeypatch.setenv(SYSTEM_CONFIG_ENV, str(system))
    user = write(tmp_path / "user.toml", "[audio]\nperiod_size = 4096\n")
    problems = problems_of(config_file=user, overrides=["audio.periods=1"])
    assert len(problems) == 3
    assert problems[0].startswith(f"{system}: invalid TOML: ")
    assert problems[1:] == [
        f"audio.period_size: must be between 32 and 2048, got 4096 (from {user})",
        "audio.periods: must be between 2 and 16, got 1 (from -o)",
    ]


def test_config_error_message_joins_problems():
    with pytest.raises(ConfigError) as info:
        load_config(overrides=["audio.periods=1", "audio.period_size=1"])
    assert str(info.value) == "; ".join(info.value.problems)
    assert len(info.value.problems) == 2


# --- format_config ----------------------------------------------------------------------------


def test_format_config_names_origins_and_reparses(tmp_path, monkeypatch):
    system = write(tmp_path / "system.toml", '[audio]\ndevice = "hw:CARD=sndrpihifiberry,DEV=0"\n')
    monkeypatch.setenv(SYSTEM_CONFIG_ENV, str(system))
    user = write(tmp_path / "user.toml", "[synth]\nreverb_mix = 0.3\n")
    cfg = load_config(user, ["audio.period_size=64"])
    text = format_config(cfg)
    assert tomllib.loads(text) == cfg.as_dict()
    assert f'device = "hw:CARD=sndrpihifiberry,DEV=0"  # from {system}\n' in text
    assert f"reverb_mix = 0.3  # from {user}\n" in text
    assert "period_size = 64  # from -o\n" in text
    assert "sample_rate = 48000  # from defaults\n" in text


def test_format_config_round_trips(tmp_path):
    cfg = load_config(overrides=[
        'audio.device="weird \\"name\\" \\\\ \\t\\u00e9"',
        "model.directory=/opt/models dir",
        "model.fallback_f0_min_hz=1e-0",
        "synth.master_gain_db=-59.999999999999",
        "synth.noise_seed=12345678901",
    ])
    out = write(tmp_path / "effective.toml", format_config(cfg))
    again = load_config(out)
    assert again == cfg
    assert again.as_dict() == cfg.as_dict()
    assert all(again.origin(f"{s}.{k}") == str(out) for s, keys in SCHEMA.items() for k in keys.keys)


def test_format_config_origin_with_control_characters_stays_valid_toml(tmp_path):
    f = write(tmp_path / "a\tb\x7fc.toml", "[audio]\nperiods = 3\n")
    text = format_config(load_config(f))
    assert tomllib.loads(text)["audio"]["periods"] == 3


_finite = dict(allow_nan=False, allow_infinity=False)


@settings(max_examples=60, deadline=None)
@given(
    device=st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=30),
    gain_db=st.floats(-60.0, 12.0, **_finite),
    mix=st.floats(0.0, 1.0, **_finite),
    period_size=st.integers(32, 2048),
    seed=st.integers(0, 2**63 - 1),
)
def test_format_config_round_trips_any_valid_value(tmp_path_factory, device, gain_db, mix, period_size, seed):
    f = tmp_path_factory.mktemp("rt") / "c.toml"
    f.write_text(
        f"[audio]\ndevice = {config_mod._toml_value(device)}\nperiod_size = {period_size}\n"
        f"[synth]\nmaster_gain_db = {config_mod._toml_value(gain_db)}\n"
        f"reverb_mix = {config_mod._toml_value(mix)}\nnoise_seed = {seed}\n",
        encoding="utf-8",
    )
    cfg = load_config(f)
    assert (cfg.audio.device, cfg.synth.master_gain_db, cfg.synth.reverb_mix) == (device, gain_db, mix)
    g = f.with_name("again.toml")
    g.write_text(format_config(cfg), encoding="utf-8")
    assert load_config(g) == cfg


# --- check_main -------------------------------------------------------------------------------


def test_check_main_ok(tmp_path):
    f = write(tmp_path / "c.toml", "[audio]\nperiods = 3\n")
    out, err = io.StringIO(), io.StringIO()
    assert check_main(f, ["audio.period_size=64"], out, err) == 0
    assert err.getvalue() == ""
    first, rest = out.getvalue().split("\n", 1)
    assert first == f"config OK (read: {f})"
    assert rest == format_config(load_config(f, ["audio.period_size=64"]))
    assert tomllib.loads(rest)["audio"]["periods"] == 3


def test_check_main_ok_with_defaults_only():
    out, err = io.StringIO(), io.StringIO()
    assert check_main(None, [], out, err) == 0
    assert out.getvalue().startswith("config OK (read: no files, packaged defaults only)\n")


def test_check_main_errors_exit_2_one_line_each(tmp_path):
    f = write(tmp_path / "c.toml", "[audio]\nperiod_size = 4096\nperod_size = 1\n")
    out, err = io.StringIO(), io.StringIO()
    assert check_main(f, ["audio.periods"], out, err) == 2
    assert out.getvalue() == ""
    assert err.getvalue().splitlines() == [
        f"error: audio.perod_size: unknown key (did you mean 'period_size'?) (from {f})",
        "error: -o audio.periods: expected section.key=value (missing '=')",
        f"error: audio.period_size: must be between 32 and 2048, got 4096 (from {f})",
    ]
    assert "Traceback" not in err.getvalue()


def test_check_main_missing_file(tmp_path):
    out, err = io.StringIO(), io.StringIO()
    assert check_main(tmp_path / "nope.toml", (), out, err) == 2
    assert err.getvalue() == f"error: {tmp_path / 'nope.toml'}: config file not found\n"


def test_check_main_defaults_to_sys_streams(capsys, tmp_path):
    assert check_main(tmp_path / "nope.toml", ()) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.startswith("error: ")


# --- schema-as-data invariants ----------------------------------------------------------------


def test_every_key_has_doc_and_valid_default():
    for section in SCHEMA.values():
        assert section.doc
        for key in section.keys.values():
            assert key.doc and "\n" not in key.doc
            assert key.validate(key.default) is None
    for check in CHECKS:
        for dotted in check.keys:
            section, key = dotted.split(".")
            assert key in SCHEMA[section].keys


def test_pitch_and_pressure_must_use_different_adc_inputs(tmp_path):
    f = write(tmp_path / "c.toml", "[controls]\npitch_channel = 1\npressure_channel = 1\n")
    (problem,) = problems_of(config_file=f)
    assert problem.startswith("controls.pressure_channel: must differ from controls.pitch_channel")


@pytest.mark.parametrize("value", ["-1.5", "1.01", "nan", '"dark"'])
def test_tone_must_be_a_number_from_minus_1_to_1(value):
    (problem,) = problems_of(overrides=[f"synth.tone={value}"])
    assert problem.startswith("synth.tone: ") and problem.endswith("(from -o)")


def test_tone_override_is_typed_and_shown_by_config_check():
    cfg = load_config(overrides=["synth.tone=-1"])
    assert type(cfg.synth.tone) is float and cfg.synth.tone == -1.0
    out, err = io.StringIO(), io.StringIO()
    assert check_main(None, ["synth.tone=-0.5", "controls.tone_channel=2", "controls.volume_channel=-1"], out, err) == 0
    text = out.getvalue()
    assert "tone = -0.5  # from -o" in text.splitlines()
    assert "tone_channel = 2  # from -o" in text.splitlines()


@pytest.mark.parametrize(
    "overrides, problem",
    [
        (["controls.tone_channel=3"], "controls.tone_channel: ADC input 3 is already controls.reverb_channel"),
        (["controls.tone_channel=2"], "controls.tone_channel: ADC input 2 is already controls.volume_channel"),
        (["controls.tone_channel=0"], "controls.tone_channel: ADC input 0 is already controls.pitch_channel"),
        (["controls.tone_channel=1"], "controls.tone_channel: ADC input 1 is already controls.pressure_channel"),
        (["controls.reverb_channel=-1", "controls.transpose_channel=3", "controls.tone_channel=3"],
         "controls.tone_channel: ADC input 3 is already controls.transpose_channel"),
        (["controls.reverb_channel=2"], "controls.reverb_channel: ADC input 2 is already controls.volume_channel"),
    ],
)
def test_every_knob_needs_an_adc_input_of_its_own(overrides, problem):
    (message,) = problems_of(overrides=overrides)
    assert message.startswith(problem + " ("), message


@pytest.mark.parametrize(
    "overrides",
    [
        ["controls.reverb_channel=-1", "controls.tone_channel=3"],  # the tone knob in the reverb's place
        ["controls.tone_channel=0", 'controls.pitch_source="keys"'],  # A0 is free without a ribbon
        ["controls.tone_channel=1", 'controls.pressure_source="mprls"'],  # A1 is free with breath
        ["controls.volume_channel=-1", "controls.reverb_channel=-1"],  # no knobs: -1 twice is fine
    ],
)
def test_knob_inputs_that_do_not_clash_are_accepted(overrides):
    load_config(overrides=overrides)


def test_hex_addresses_are_accepted(tmp_path):
    f = write(tmp_path / "c.toml", "[controls]\nadc_address = 0x49\n")
    assert load_config(f).controls.adc_address == 0x49


def test_a_utf8_byte_order_mark_is_accepted(tmp_path):
    """Notepad and friends start a UTF-8 file with a BOM; the config reads the same without it."""
    path = tmp_path / "bom.toml"
    path.write_bytes(b"\xef\xbb\xbf[audio]\r\nperiod_size = 256\r\n")
    assert load_config(path).audio.period_size == 256
