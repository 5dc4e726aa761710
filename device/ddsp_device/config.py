"""Layered, typed configuration (mopidy's model).

Layers, later wins::

    packaged defaults.toml < system file (/etc/ddsp-device/config.toml, if present)
                           < --config FILE (must exist) < -o section.key=value

The schema is data (:data:`SCHEMA`): a later feature adds a key by adding a :class:`Key` to a
:class:`Section`, or a section by adding a :class:`Section`. Every layer is read and the merged
result validated before anything is raised, so one :class:`~ddsp_device.errors.ConfigError`
lists every problem, one ``section.key: message (from ORIGIN)`` per line.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.resources
import logging
import math
import os
import sys
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any, TextIO

from ddsp_device.errors import ConfigError

__all__ = [
    "SCHEMA",
    "CHECKS",
    "SYSTEM_CONFIG_PATH",
    "SYSTEM_CONFIG_ENV",
    "Key",
    "Section",
    "Check",
    "Config",
    "load_config",
    "format_config",
    "check_main",
]

log = logging.getLogger(__name__)

SYSTEM_CONFIG_PATH = Path("/etc/ddsp-device/config.toml")
SYSTEM_CONFIG_ENV = "DDSP_DEVICE_SYSTEM_CONFIG"

#: Origin names that are not file paths.
ORIGIN_DEFAULTS = "defaults"
ORIGIN_OVERRIDE = "-o"

_PY_TYPES: dict[str, type] = {"str": str, "path": str, "int": int, "float": float, "bool": bool}
_EXPECTED: dict[str, str] = {
    "str": "a string",
    "path": "a string (a path)",
    "int": "an integer",
    "float": "a number",
    "bool": "a boolean (true or false)",
}


# --------------------------------------------------------------------------------------------
# Schema


@dataclasses.dataclass(frozen=True)
class Key:
    """One typed config key.

    ``type`` is one of ``str``, ``path`` (a string naming a file or directory), ``int``,
    ``float`` (ints accepted) or ``bool``. ``min``/``max`` are inclusive; ``choices`` lists the
    allowed values; ``check(value)`` returns the problem with a value of the right type (a
    scale name, a note name ...) or None. ``doc`` is one line, with the unit.
    """

    name: str
    type: str
    default: Any
    doc: str
    min: float | None = None
    max: float | None = None
    choices: tuple[Any, ...] | None = None
    check: Callable[[Any], str | None] | None = None

    def __post_init__(self) -> None:
        if self.type not in _PY_TYPES:
            raise ValueError(f"key {self.name!r}: unknown type {self.type!r}")
        if self.type == "float" and isinstance(self.default, int) and not isinstance(self.default, bool):
            object.__setattr__(self, "default", float(self.default))
        problem = self.validate(self.default)
        if problem is not None:
            raise ValueError(f"key {self.name!r}: default {problem}")

    @property
    def py_type(self) -> type:
        return _PY_TYPES[self.type]

    def coerce(self, value: Any) -> tuple[Any, str | None]:
        """Return ``(typed_value, None)``, or ``(None, message)`` if ``value`` is not allowed."""
        t = self.type
        if t in ("str", "path"):
            ok = isinstance(value, str)
        elif t == "bool":
            ok = isinstance(value, bool)
        elif t == "int":
            ok = isinstance(value, int) and not isinstance(value, bool)
        else:  # float
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            if ok:
                value = float(value)
                if not math.isfinite(value):
                    return None, f"must be a finite number, got {_toml_value(value)}"
        if not ok:
            return None, f"expected {_EXPECTED[t]}, got {_describe(value)}"
        if self.choices is not None and value not in self.choices:
            allowed = ", ".join(_toml_value(c) for c in self.choices)
            return None, f"must be one of {allowed}, got {_toml_value(value)}"
        lo, hi = self.min, self.max
        if lo is not None and hi is not None and not lo <= value <= hi:
            return None, f"must be between {_toml_value(lo)} and {_toml_value(hi)}, got {_toml_value(value)}"
        if lo is not None and hi is None and value < lo:
            return None, f"must be at least {_toml_value(lo)}, got {_toml_value(value)}"
        if hi is not None and lo is None and value > hi:
            return None, f"must be at most {_toml_value(hi)}, got {_toml_value(value)}"
        if self.check is not None:
            problem = self.check(value)
            if problem is not None:
                return None, problem
        return value, None

    def validate(self, value: Any) -> str | None:
        """The problem with ``value`` (without the ``section.key:`` prefix), or None."""
        return self.coerce(value)[1]


@dataclasses.dataclass(frozen=True, eq=False)
class Section:
    """A ``[section]`` of the config file: a name, a one-line doc and its keys, in order."""

    name: str
    doc: str
    keys: Mapping[str, Key]

    def __init__(self, name: str, doc: str, keys: Iterable[Key]):
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "doc", doc)
        by_name: dict[str, Key] = {}
        for key in keys:
            if key.name in by_name:
                raise ValueError(f"section {name!r}: duplicate key {key.name!r}")
            by_name[key.name] = key
        object.__setattr__(self, "keys", MappingProxyType(by_name))


@dataclasses.dataclass(frozen=True)
class Check:
    """A rule across keys, run only when every key it names is individually valid.

    ``keys`` are dotted names; the error is reported against the first, with the origins of the
    first ``shown`` keys (all when None; the others only decide whether the rule applies).
    ``message`` is formatted with the values (as TOML) as ``{0}``, ``{1}``, ..., or is a
    function of the values that returns the text.
    """

    keys: tuple[str, ...]
    test: Callable[..., bool]
    message: str | Callable[..., str]
    shown: int | None = None

    def problem(self, values: Sequence[Any]) -> str | None:
        """The message (without ``section.key:``) when ``values`` break the rule, else None."""
        if self.test(*values):
            return None
        if callable(self.message):
            return self.message(*values)
        return self.message.format(*(_toml_value(v) for v in values))


# -- rules that need the controls' own knowledge (scales, note names, chips) -------------------
# The parsers live with the code that uses the values (controls.mapping, the ADC driver); the
# schema calls them, so that `config check` refuses exactly what `run` would, and the rig and
# the mapping take the values as given.


def _scale_problem(value: str) -> str | None:
    from .controls.mapping import parse_scale
    from .errors import ControlsError

    try:
        parse_scale(value)
    except ControlsError as err:
        return str(err)
    return None


def _key_problem(value: str) -> str | None:
    from .controls.mapping import parse_key
    from .errors import ControlsError

    try:
        parse_key(value)
    except ControlsError as err:
        return str(err)
    return None


def _curve_problem(value: str) -> str | None:
    from .controls.mapping import parse_curve
    from .errors import ControlsError

    try:
        parse_curve(value)
    except ControlsError as err:
        return str(err)
    return None


def _adc_rates(adc_type: str) -> tuple[str, tuple[int, ...]]:
    from .controls.ads1x15 import ADS1015, ADS1115

    cls = ADS1015 if adc_type == "ads1015" else ADS1115
    return cls.__name__, tuple(sorted(set(cls.DATA_RATES)))


def _data_rate_ok(rate: int, adc_type: str) -> bool:
    return rate == 0 or rate in _adc_rates(adc_type)[1]


def _data_rate_message(rate: int, adc_type: str) -> str:
    name, rates = _adc_rates(adc_type)
    return f"the {name} converts at 0 (its fastest) or {', '.join(map(str, rates))} samples per second, got {rate}"


_KNOBS = ("volume", "reverb", "transpose", "tone")  # the knobs' roles: [controls] <role>_channel


def _uses_adc(pitch_source: str, pressure_source: str, *knob_channels: int) -> bool:
    return pitch_source == "ribbon" or pressure_source == "adc" or any(c >= 0 for c in knob_channels)


def _input_checks() -> tuple[Check, ...]:
    """Each ADC input read by one control only; each I2C address driven by one chip only.

    Only the inputs and chips the chosen sources read count (a knob may use input 0 when keys
    play pitch), as in :func:`ddsp_device.controls.rig.build_rig`.
    """
    checks = [
        Check(("controls.pressure_channel", "controls.pitch_channel", "controls.pitch_source",
               "controls.pressure_source"),
              lambda a, b, pitch, pressure: a != b or pitch != "ribbon" or pressure != "adc",
              "must differ from controls.pitch_channel, both are {0}", shown=2),
    ]
    for i, role in enumerate(_KNOBS):
        knob = f"controls.{role}_channel"
        checks.append(Check((knob, "controls.pitch_channel", "controls.pitch_source"),
                            lambda k, p, src: k < 0 or src != "ribbon" or k != p,
                            "ADC input {0} is already controls.pitch_channel", shown=2))
        checks.append(Check((knob, "controls.pressure_channel", "controls.pressure_source"),
                            lambda k, p, src: k < 0 or src != "adc" or k != p,
                            "ADC input {0} is already controls.pressure_channel", shown=2))
        for other in _KNOBS[:i]:
            checks.append(Check((knob, f"controls.{other}_channel"), lambda k, o: k < 0 or k != o,
                                f"ADC input {{0}} is already controls.{other}_channel"))
    checks += [
        Check(("controls.adc_data_rate", "controls.adc_type"), _data_rate_ok, _data_rate_message),
        Check(("controls.mprls_address", "controls.adc_address", "controls.pressure_source",
               "controls.pitch_source", *(f"controls.{r}_channel" for r in _KNOBS)),
              lambda m, a, pressure, pitch, *knobs: pressure != "mprls" or m != a or not _uses_adc(pitch, pressure,
                                                                                                   *knobs),
              lambda m, *_: f"0x{m:02x} is already controls.adc_address", shown=2),
        Check(("controls.mprls_address", "controls.keys_address", "controls.pressure_source",
               "controls.pitch_source"),
              lambda m, k, pressure, pitch: pressure != "mprls" or pitch != "keys" or m != k,
              lambda m, *_: f"0x{m:02x} is already controls.keys_address", shown=2),
    ]
    return tuple(checks)


def _schema(*sections: Section) -> Mapping[str, Section]:
    return MappingProxyType({s.name: s for s in sections})


SCHEMA: Mapping[str, Section] = _schema(
    Section("audio", "ALSA output", [
        Key("device", "str", "default",
            'ALSA PCM name, e.g. "hw:CARD=sndrpihifiberry,DEV=0"'),
        Key("sample_rate", "int", 48000, "output sample rate, Hz", choices=(44100, 48000)),
        Key("period_size", "int", 128, "ALSA period size, frames", min=32, max=2048),
        Key("periods", "int", 2, "number of periods in the ALSA buffer", min=2, max=16),
        Key("pace", "bool", False,
            "pace writes to the wall clock, for PCMs that never block (ALSA null/file plugins)"),
    ]),
    Section("model", "the DDSP model and its runtime", [
        Key("name", "str", "Violin",
            "model name looked up in the models directories, or a path to a .tflite file"),
        Key("directory", "path", "", 'extra models directory, searched first; "" = none'),
        Key("runtime", "str", "auto", "TFLite runtime to use",
            choices=("auto", "tflite-runtime", "ai-edge-litert")),
        Key("fallback_sample_rate_hz", "int", 48000,
            "model sample rate, Hz, for model files without metadata", min=8000, max=192000),
        Key("fallback_frame_rate_hz", "float", 250.0,
            "model control frame rate, Hz, for model files without metadata", min=10.0, max=2000.0),
        Key("fallback_f0_min_hz", "float", 30.0,
            "lowest f0, Hz, for model files without metadata", min=1.0, max=20000.0),
        Key("fallback_f0_max_hz", "float", 4200.0,
            "highest f0, Hz, for model files without metadata", min=1.0, max=20000.0),
    ]),
    Section("synth", "harmonic + noise synthesiser and reverb", [
        Key("master_gain_db", "float", 0.0, "output gain, dB", min=-60.0, max=12.0),
        Key("tone", "float", 0.0,
            "tone: -1 dark (distant) .. 0 the model's own voicing .. +1 bright (close)", min=-1.0, max=1.0),
        Key("reverb_mix", "float", 0.15, "reverb wet/dry mix, 0 (dry) .. 1 (wet)", min=0.0, max=1.0),
        Key("reverb_decay_s", "float", 1.5, "reverb decay time (RT60), seconds", min=0.1, max=10.0),
        Key("noise_seed", "int", 0, "noise generator seed", min=0),
    ]),
    Section("controls", "sensors (I2C) and how they map to pitch and loudness", [
        Key("i2c_bus", "int", 1, "I2C bus number (/dev/i2c-N)", min=0, max=31),
        Key("i2c_hz", "int", 400000,
            "I2C bit rate, Hz; match dtparam=i2c_arm_baudrate (used for the sensor-rate estimate)",
            min=100000, max=1000000),
        Key("pitch_source", "str", "ribbon",
            "what plays pitch: ribbon (soft pot on the ADC), keys (MPR121 pads) or none",
            choices=("ribbon", "keys", "none")),
        Key("pressure_source", "str", "adc",
            "what plays loudness: adc (FSR or analog breath sensor), mprls (digital breath) or none",
            choices=("adc", "mprls", "none")),
        Key("adc_type", "str", "ads1015", "ADC chip: ads1015 (12-bit, 3300 SPS) or ads1115 (16-bit, 860 SPS)",
            choices=("ads1015", "ads1115")),
        Key("adc_address", "int", 0x48, "ADC I2C address (0x48..0x4B)", min=0x48, max=0x4B),
        Key("adc_data_rate", "int", 0,
            "ADC samples per second, one the chip has (ADS1015: 128..3300, ADS1115: 8..860); 0 = the chip's fastest"),
        Key("adc_full_scale_v", "float", 4.096, "ADC input range (PGA), volts; 4.096 for a 3.3 V supply",
            choices=(6.144, 4.096, 2.048, 1.024, 0.512, 0.256)),
        Key("supply_v", "float", 3.3, "supply across the ribbon, FSR and knob dividers, volts", min=2.0, max=5.5),
        Key("pitch_channel", "int", 0, "ADC input of the ribbon", min=0, max=3),
        Key("pressure_channel", "int", 1, "ADC input of the FSR / analog breath sensor", min=0, max=3),
        Key("volume_channel", "int", 2, "ADC input of the volume knob; -1 = none", min=-1, max=3),
        Key("reverb_channel", "int", 3, "ADC input of the reverb knob; -1 = none", min=-1, max=3),
        Key("transpose_channel", "int", -1, "ADC input of the transpose knob (-12..+12 semitones); -1 = none",
            min=-1, max=3),
        Key("tone_channel", "int", -1, "ADC input of the tone knob (dark..bright, centre = flat); -1 = none",
            min=-1, max=3),
        Key("knob_interval", "int", 8, "read one knob after this many pitch/pressure reads", min=1, max=64),
        Key("keys_address", "int", 0x5A, "MPR121 I2C address (0x5A..0x5D)", min=0x5A, max=0x5D),
        Key("keys_electrodes", "int", 12, "MPR121 pads in use", min=1, max=12),
        Key("mprls_address", "int", 0x18, "MPRLS I2C address", min=0x08, max=0x77),
        Key("mprls_psi_max", "float", 25.0, "MPRLS part's full-scale pressure, PSI", min=1.0, max=60.0),
        Key("grace_s", "float", 0.02, "a sensor failing this long counts as gone (the note fades out), s",
            min=0.005, max=1.0),
        Key("fade_s", "float", 0.02, "fade out (and back in) when a sensor goes (and returns), s",
            min=0.005, max=0.5),
        Key("ribbon_base_hz", "float", 196.0, "pitch at the low end of the ribbon, Hz (196 = G3)",
            min=20.0, max=5000.0),
        Key("ribbon_range_semitones", "float", 30.0, "span of the ribbon, semitones", min=1.0, max=96.0),
        Key("scale", "str", "chromatic",
            'quantisation scale: chromatic, major, minor, pentatonic, ... or semitones like "0,2,4,7,9"',
            check=_scale_problem),
        Key("scale_key", "str", "C", "key of the scale (note name)", check=_key_problem),
        Key("quantise_strength", "float", 0.0, "pull towards the scale's notes: 0 = free, 1 = on the notes",
            min=0.0, max=1.0),
        Key("glide_s", "float", 0.05, "time to glide to a new note when quantising, s", min=0.0, max=10.0),
        Key("transpose_octaves", "int", 0, "transpose, octaves", min=-4, max=4),
        Key("transpose_semitones", "int", 0, "transpose, semitones", min=-48, max=48),
        Key("keys_base_hz", "float", 196.0, "pitch of pad 0 in keys mode, Hz", min=20.0, max=5000.0),
        Key("keys_scale", "str", "chromatic", "scale the pads walk up in keys mode", check=_scale_problem),
        Key("pressure_threshold", "float", 0.03, "noise gate, fraction of the calibrated pressure range",
            min=0.0, max=0.5),
        Key("pressure_curve", "str", "linear",
            'pressure to loudness: linear, soft, hard, amplitude, or an exponent like "0.7"', check=_curve_problem),
        Key("pressure_range_db", "float", 60.0, "dynamic range: the lightest press plays this far below full, dB",
            min=1.0, max=80.0),
        Key("pressure_attack_s", "float", 0.0005, "smoothing on a rising pressure, s", min=0.0, max=0.05),
        Key("pressure_release_s", "float", 0.03, "smoothing on a falling pressure, s", min=0.0, max=5.0),
        Key("pressure_auto_zero", "bool", True,
            "take the pressure sensor's rest level from its first readings at start (don't touch it then)"),
        Key("knob_dead_band", "float", 0.01, "knob hysteresis, fraction of its travel", min=0.0, max=0.5),
        Key("volume_min_db", "float", -60.0, "volume knob at its lowest, dB (its highest is 0 dB)",
            min=-80.0, max=0.0),
    ]),
    Section("panel", "rotary encoder, button and status LED (GPIO, BCM numbering)", [
        Key("enabled", "bool", True, "use the panel (false on a box without one)"),
        Key("encoder_a_pin", "int", 5, "encoder A, BCM GPIO; -1 = not fitted", min=-1, max=27),
        Key("encoder_b_pin", "int", 6, "encoder B, BCM GPIO; -1 = not fitted", min=-1, max=27),
        Key("button_pin", "int", 26, "push button, BCM GPIO; -1 = not fitted", min=-1, max=27),
        Key("led_pin", "int", 12, "status LED (PWM), BCM GPIO; -1 = not fitted", min=-1, max=27),
        Key("hold_time_s", "float", 1.0, "hold the button this long to mute/unmute (panic), s",
            min=0.1, max=10.0),
        Key("short_press", "str", "none", "what a short press does", choices=("none", "mute_toggle", "next_model")),
        Key("led_brightness", "float", 0.5, "LED brightness while playing, 0..1", min=0.0, max=1.0),
    ]),
)

CHECKS: tuple[Check, ...] = (
    *_input_checks(),
    Check(("model.fallback_f0_min_hz", "model.fallback_f0_max_hz"), lambda lo, hi: lo < hi,
          "must be less than model.fallback_f0_max_hz, got {0} >= {1}"),
)


# --------------------------------------------------------------------------------------------
# The loaded config


_SECTION_CLASSES: dict[tuple[str, tuple[str, ...]], type] = {}


def _section_class(section: Section) -> type:
    """A frozen dataclass with one typed field per key of ``section`` (cached)."""
    cache_key = (section.name, tuple(section.keys))
    cls = _SECTION_CLASSES.get(cache_key)
    if cls is None:
        name = "".join(part.capitalize() for part in section.name.split("_")) + "Config"
        cls = dataclasses.make_dataclass(
            name, [(k.name, k.py_type) for k in section.keys.values()], frozen=True, slots=True
        )
        cls.__module__ = __name__
        cls.__doc__ = f"[{section.name}]: {section.doc}"
        _SECTION_CLASSES[cache_key] = cls
    return cls


class Config:
    """The effective configuration: ``cfg.audio.sample_rate``; read-only.

    ``sources`` lists the files read, in order (the packaged defaults not included);
    ``origin("section.key")`` says where a value came from. Two configs are equal when their
    values are, wherever they came from.
    """

    __slots__ = ("_sections", "_origins", "_sources")

    def __init__(
        self,
        values: Mapping[str, Mapping[str, Any]],
        origins: Mapping[str, str],
        sources: Sequence[str] = (),
    ):
        sections = {}
        for name, section in SCHEMA.items():
            sections[name] = _section_class(section)(**values[name])
        object.__setattr__(self, "_sections", MappingProxyType(sections))
        object.__setattr__(self, "_origins", MappingProxyType(dict(origins)))
        object.__setattr__(self, "_sources", tuple(sources))

    def __getattr__(self, name: str) -> Any:
        try:
            return self._sections[name]
        except KeyError:
            raise AttributeError(f"no config section {name!r}{_suggest(name, SCHEMA)}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Config is read-only")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("Config is read-only")

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | set(self._sections))

    @property
    def sources(self) -> list[str]:
        """The config files actually read, in order (a new list each time)."""
        return list(self._sources)

    def origin(self, dotted_key: str) -> str:
        """``"defaults"``, the file path, or ``"-o"`` for ``"section.key"``."""
        try:
            return self._origins[dotted_key]
        except KeyError:
            raise KeyError(f"no config key {dotted_key!r}") from None

    def as_dict(self) -> dict[str, dict[str, Any]]:
        return {name: dataclasses.asdict(obj) for name, obj in self._sections.items()}

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Config):
            return NotImplemented
        return self.as_dict() == other.as_dict()

    def __hash__(self) -> int:
        return hash(tuple(self._sections.values()))

    def __repr__(self) -> str:
        return f"Config({self.as_dict()!r}, sources={list(self._sources)!r})"


# --------------------------------------------------------------------------------------------
# Loading


def default_system_file() -> Path:
    """``$DDSP_DEVICE_SYSTEM_CONFIG`` if set and non-empty, else :data:`SYSTEM_CONFIG_PATH`."""
    env = os.environ.get(SYSTEM_CONFIG_ENV)
    return Path(env) if env else SYSTEM_CONFIG_PATH


def load_config(
    config_file: str | os.PathLike[str] | None = None,
    overrides: Sequence[str] = (),
    system_file: str | os.PathLike[str] | None = None,
) -> Config:
    """Read every layer, validate the merged result, return it or raise one ConfigError.

    ``system_file=None`` means :func:`default_system_file`; it is skipped if it does not exist.
    ``config_file`` (``--config``) must exist. ``overrides`` are ``section.key=value`` strings
    (``-o``); the value is parsed as a TOML value, or taken as a plain string if it is not one
    (or if the key is a string key and the value parses as some other type, so that
    ``-o model.name=2024`` names a model).
    """
    problems: list[str] = []
    # (section, key) -> (raw value, origin); unknown sections/keys never get in.
    merged: dict[tuple[str, str], tuple[Any, str]] = {}
    sources: list[str] = []

    defaults_text = importlib.resources.files("ddsp_device").joinpath("defaults.toml").read_bytes()
    for section in SCHEMA.values():
        for key in section.keys.values():
            merged[section.name, key.name] = (key.default, ORIGIN_DEFAULTS)
    data = _parse_toml(defaults_text, ORIGIN_DEFAULTS, problems)
    if data is not None:
        _merge_table(data, ORIGIN_DEFAULTS, merged, problems)

    system_path = Path(system_file) if system_file is not None else default_system_file()
    if system_path.exists():
        _read_file(system_path, merged, problems, sources)
    else:
        log.debug("no system config at %s", system_path)

    if config_file is not None:
        path = Path(config_file)
        if not path.exists():
            problems.append(f"{path}: config file not found")
        else:
            _read_file(path, merged, problems, sources)

    for override in overrides:
        _apply_override(override, merged, problems)

    values: dict[str, dict[str, Any]] = {name: {} for name in SCHEMA}
    origins: dict[str, str] = {}
    valid: dict[str, Any] = {}
    for section in SCHEMA.values():
        for key in section.keys.values():
            raw, origin = merged[section.name, key.name]
            dotted = f"{section.name}.{key.name}"
            origins[dotted] = origin
            value, problem = key.coerce(raw)
            if problem is not None:
                problems.append(f"{dotted}: {problem}{_from(origin)}")
            else:
                values[section.name][key.name] = value
                valid[dotted] = value

    for check in CHECKS:
        if all(k in valid for k in check.keys):
            message = check.problem([valid[k] for k in check.keys])
            if message is not None:
                shown = check.keys[: check.shown]
                problems.append(f"{check.keys[0]}: {message}{_from_many(shown, origins)}")

    if problems:
        raise ConfigError(problems)
    log.debug("config read from %s", ", ".join(sources) or "packaged defaults only")
    return Config(values, origins, sources)


def _read_file(
    path: Path,
    merged: dict[tuple[str, str], tuple[Any, str]],
    problems: list[str],
    sources: list[str],
) -> None:
    origin = str(path)
    try:
        raw = path.read_bytes()
    except OSError as err:
        problems.append(f"{origin}: cannot read: {err.strerror or err}")
        return
    log.debug("reading config file %s", origin)
    sources.append(origin)
    data = _parse_toml(raw, origin, problems)
    if data is not None:
        _merge_table(data, origin, merged, problems)


def _parse_toml(raw: bytes, origin: str, problems: list[str]) -> dict[str, Any] | None:
    try:
        text = raw.decode("utf-8-sig")  # a UTF-8 BOM, as some Windows editors write, is fine
    except UnicodeDecodeError as err:
        problems.append(f"{origin}: invalid TOML: not UTF-8 (byte {err.start})")
        return None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        problems.append(f"{origin}: invalid TOML: {err}")
        return None


def _merge_table(
    data: Mapping[str, Any],
    origin: str,
    merged: dict[tuple[str, str], tuple[Any, str]],
    problems: list[str],
) -> None:
    for section_name, table in data.items():
        section = SCHEMA.get(section_name)
        if section is None:
            problems.append(f"{section_name}: unknown section{_suggest(section_name, SCHEMA)}{_from(origin)}")
            continue
        if not isinstance(table, dict):
            problems.append(f"{section_name}: expected a table, got {_describe(table)}{_from(origin)}")
            continue
        for key_name, value in table.items():
            _set(section, key_name, value, origin, merged, problems)


def _set(
    section: Section,
    key_name: str,
    value: Any,
    origin: str,
    merged: dict[tuple[str, str], tuple[Any, str]],
    problems: list[str],
) -> None:
    if key_name not in section.keys:
        problems.append(
            f"{section.name}.{key_name}: unknown key{_suggest(key_name, section.keys)}{_from(origin)}"
        )
        return
    merged[section.name, key_name] = (value, origin)


def _apply_override(
    override: str,
    merged: dict[tuple[str, str], tuple[Any, str]],
    problems: list[str],
) -> None:
    dotted, sep, text = override.partition("=")
    dotted = dotted.strip()
    parts = dotted.split(".")
    if not sep:
        problems.append(f"-o {override}: expected section.key=value (missing '=')")
        return
    if len(parts) == 1 and parts[0]:
        problems.append(f"-o {override}: expected section.key=value (missing section)")
        return
    if len(parts) != 2 or not all(p.strip() for p in parts):
        problems.append(f"-o {override}: expected section.key=value")
        return
    section_name, key_name = (p.strip() for p in parts)
    section = SCHEMA.get(section_name)
    if section is None:
        problems.append(
            f"{section_name}: unknown section{_suggest(section_name, SCHEMA)}{_from(ORIGIN_OVERRIDE)}"
        )
        return
    value = _parse_override_value(text.strip())
    key = section.keys.get(key_name)
    if key is not None and key.type in ("str", "path") and not isinstance(value, str):
        value = text.strip()
    _set(section, key_name, value, ORIGIN_OVERRIDE, merged, problems)


def _parse_override_value(text: str) -> Any:
    """``text`` as a TOML value, or ``text`` itself if it is not exactly one TOML value."""
    try:
        parsed = tomllib.loads(f"v = {text}")
    except tomllib.TOMLDecodeError:
        return text
    if list(parsed) != ["v"]:  # e.g. "1\nx = 2": not one value
        return text
    return parsed["v"]


# --------------------------------------------------------------------------------------------
# Messages and TOML output


def _suggest(name: str, options: Iterable[str]) -> str:
    matches = difflib.get_close_matches(name, list(options), n=1)
    return f" (did you mean {matches[0]!r}?)" if matches else ""


def _from(origin: str | None) -> str:
    return f" (from {origin})" if origin else ""


def _from_many(keys: Sequence[str], origins: Mapping[str, str]) -> str:
    where = [origins[k] for k in keys]
    if len(set(where)) == 1:
        return _from(where[0])
    return " (" + "; ".join(f"{k} from {o}" for k, o in zip(keys, where)) + ")"


def _toml_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "table"
    return type(value).__name__  # datetime, date, time


def _describe(value: Any, limit: int = 60) -> str:
    """``integer 5``, ``string "x"``, ``boolean true`` ... for error messages."""
    text = _toml_value(value)
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return f"{_toml_type(value)} {text}"


_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def _toml_string(text: str) -> str:
    out = []
    for ch in text:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _toml_value(value: Any) -> str:
    """``value`` written as a TOML value (scalars, arrays, inline tables)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def _toml_key(name: str) -> str:
    if name and all(c.isascii() and (c.isalnum() or c in "_-") for c in name):
        return name
    return _toml_string(name)


def _comment(text: str) -> str:
    """``text`` made safe for a TOML comment (no control characters)."""
    return "".join(ch if ch == "\t" or (ord(ch) >= 0x20 and ord(ch) != 0x7F) else "?" for ch in text)


def format_config(cfg: Config) -> str:
    """The effective config as valid TOML; each key's trailing comment says where it came from."""
    lines = ["# Effective ddsp-device configuration."]
    values = cfg.as_dict()
    for section in SCHEMA.values():
        lines.append("")
        lines.append(f"[{section.name}]")
        for key_name in section.keys:
            origin = cfg.origin(f"{section.name}.{key_name}")
            value = _toml_value(values[section.name][key_name])
            lines.append(f"{key_name} = {value}  # from {_comment(origin)}")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------
# ddsp-device config check [FILE]


def check_main(
    config_file: str | os.PathLike[str] | None,
    overrides: Sequence[str] = (),
    out: TextIO | None = None,
    err: TextIO | None = None,
    *,
    system_file: str | os.PathLike[str] | None = None,
) -> int:
    """``ddsp-device config check [FILE]``: 0 and the effective config, or 2 and every problem."""
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    try:
        cfg = load_config(config_file, overrides, system_file=system_file)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"error: {problem}", file=err)
        return 2
    read = ", ".join(cfg.sources) if cfg.sources else "no files, packaged defaults only"
    print(f"config OK (read: {read})", file=out)
    out.write(format_config(cfg))
    return 0
