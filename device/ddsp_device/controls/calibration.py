"""Calibration: the raw readings at the ends of each control, stored as JSON in the state directory.

``ddsp-device calibrate`` walks the player through :class:`CalibrationSession`'s steps, feeding it
the poller's raw readings, and saves the :class:`Calibration` it produces with :func:`save`; the
daemon reads it with :func:`load` on start or reload. Raw values are in the sensors' own units
as the poller reports them: a fraction of the supply (0..1) for the ribbon, an FSR and the knobs
on the ADC; hPa for an MPRLS breath sensor.

The file (``<state_dir>/calibration.json``)::

    {
      "version": 1,
      "created_at": "2025-01-31T18:04:05Z",
      "ribbon":   {"low": 0.048, "high": 0.951, "open": 0.0},
      "pressure": {"rest": 0.012, "max": 0.64},
      "knobs":    {"volume": {"min": 0.0005, "max": 0.9996}}
    }

Standard library and numpy only; the session logic is pure (samples in, Calibration out).
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ControlsError

__all__ = [
    "CALIBRATION_VERSION",
    "CALIBRATION_FILENAME",
    "KnobRange",
    "Calibration",
    "default_path",
    "save",
    "load",
    "CalibrationStep",
    "CalibrationSession",
]

log = logging.getLogger(__name__)

CALIBRATION_VERSION = 1
CALIBRATION_FILENAME = "calibration.json"

#: Full scale of the ADC inputs as the poller reports them: a fraction of the supply, 0..1.
ADC_FULL_SCALE = 1.0


def _utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class KnobRange:
    """Raw readings at the two ends of a knob's travel (``min`` fully anticlockwise)."""

    min: float
    max: float


@dataclass(frozen=True)
class Calibration:
    """Raw readings at the ends of every control.

    Attributes:
        ribbon_low, ribbon_high: readings at the low-pitch and high-pitch ends of the ribbon.
        ribbon_open: reading with nobody touching the ribbon.
        pressure_rest, pressure_max: readings at rest and at the hardest press played.
        knobs: ``name -> KnobRange``.
        version: file format version (:data:`CALIBRATION_VERSION`).
        created_at: ISO 8601 UTC time the calibration was taken.
    """

    ribbon_low: float
    ribbon_high: float
    ribbon_open: float
    pressure_rest: float
    pressure_max: float
    knobs: Mapping[str, KnobRange] = field(default_factory=dict)
    version: int = CALIBRATION_VERSION
    created_at: str = field(default_factory=_utc_now)

    @classmethod
    def default(
        cls,
        adc_full_scale: float = ADC_FULL_SCALE,
        knobs: Sequence[str] = (),
        pressure_rest: float = 0.0,
        pressure_max: float | None = None,
    ) -> "Calibration":
        """A guess for an uncalibrated box built as in ``hardware/``: ribbon between 5 % and 95 %
        of the ADC range with its wiper pulled to 0 V, knobs over the whole range, pressure from
        ``pressure_rest`` to ``pressure_max`` (default: an FSR from 0 to half the ADC range; for
        an MPRLS pass e.g. ``1013.25, 1053.25`` hPa, the rest being auto-zeroed anyway)."""
        fs = float(adc_full_scale)
        return cls(
            ribbon_low=0.05 * fs, ribbon_high=0.95 * fs, ribbon_open=0.0,
            pressure_rest=float(pressure_rest),
            pressure_max=0.5 * fs if pressure_max is None else float(pressure_max),
            knobs={name: KnobRange(0.0, fs) for name in knobs},
            created_at="1970-01-01T00:00:00Z",
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "created_at": self.created_at,
            "ribbon": {"low": self.ribbon_low, "high": self.ribbon_high, "open": self.ribbon_open},
            "pressure": {"rest": self.pressure_rest, "max": self.pressure_max},
            "knobs": {name: {"min": r.min, "max": r.max} for name, r in self.knobs.items()},
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    @classmethod
    def from_dict(cls, data: Any, where: str = "calibration") -> "Calibration":
        """Validate and build. Unknown fields are logged and ignored.

        Raises:
            ControlsError: ``where: field: problem`` for every problem found.
        """
        problems: list[str] = []
        if not isinstance(data, dict):
            raise ControlsError(f"{where}: expected a JSON object, got {_describe(data)}")

        def unknown(obj: Mapping[str, Any], known: Sequence[str], prefix: str) -> None:
            for name in obj:
                if name not in known:
                    log.warning("%s: ignoring unknown field %r", where, prefix + str(name))

        def number(obj: Mapping[str, Any], name: str, prefix: str) -> float:
            dotted = prefix + name
            if name not in obj:
                problems.append(f"{dotted}: missing")
                return math.nan
            v = obj[name]
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                problems.append(f"{dotted}: expected a number, got {_describe(v)}")
                return math.nan
            try:
                f = float(v)
            except OverflowError:
                f = math.inf
            if not math.isfinite(f):
                problems.append(f"{dotted}: must be a finite number, got {v}")
                return math.nan
            return f

        def table(name: str, required: bool = True) -> dict[str, Any] | None:
            if name not in data:
                if required:
                    problems.append(f"{name}: missing")
                return None
            v = data[name]
            if not isinstance(v, dict):
                problems.append(f"{name}: expected an object, got {_describe(v)}")
                return None
            return v

        def numbers(name: str, keys: tuple[str, ...]) -> list[float]:
            obj = table(name)
            if obj is None:
                return [math.nan] * len(keys)
            unknown(obj, keys, name + ".")
            return [number(obj, k, name + ".") for k in keys]

        unknown(data, ("version", "created_at", "ribbon", "pressure", "knobs"), "")
        version = data.get("version")
        if "version" not in data:
            problems.append("version: missing")
        elif isinstance(version, bool) or not isinstance(version, int):
            problems.append(f"version: expected an integer, got {_describe(version)}")
        elif version != CALIBRATION_VERSION:
            problems.append(
                f"version: this ddsp-device reads version {CALIBRATION_VERSION}, got {version}; "
                "run ddsp-device calibrate again"
            )
        created_at = data.get("created_at")
        if "created_at" not in data:
            problems.append("created_at: missing")
        elif not isinstance(created_at, str):
            problems.append(f"created_at: expected an ISO 8601 time string, got {_describe(created_at)}")
        else:
            try:
                _dt.datetime.fromisoformat(created_at.replace("Z", "+00:00"))
            except ValueError:
                problems.append(f"created_at: not an ISO 8601 time: {created_at!r}")

        low, high, open_ = numbers("ribbon", ("low", "high", "open"))
        if low == high:
            problems.append(f"ribbon.high: must differ from ribbon.low, both are {low}")
        rest, pmax = numbers("pressure", ("rest", "max"))
        if rest == pmax:
            problems.append(f"pressure.max: must differ from pressure.rest, both are {rest}")

        knobs: dict[str, KnobRange] = {}
        for name, rng in (table("knobs", required=False) or {}).items():
            prefix = f"knobs.{name}."
            if not isinstance(rng, dict):
                problems.append(f"knobs.{name}: expected an object, got {_describe(rng)}")
                continue
            unknown(rng, ("min", "max"), prefix)
            kmin, kmax = number(rng, "min", prefix), number(rng, "max", prefix)
            if kmin == kmax:
                problems.append(f"{prefix}max: must differ from {prefix}min, both are {kmin}")
            knobs[str(name)] = KnobRange(kmin, kmax)

        if problems:
            raise ControlsError(f"{where}: " + "; ".join(problems))
        return cls(low, high, open_, rest, pmax, knobs, version, created_at)

    @classmethod
    def from_json(cls, text: str | bytes, where: str = "calibration") -> "Calibration":
        """Parse and validate JSON text (see :meth:`from_dict`)."""
        try:
            data = json.loads(text)
        except (ValueError, UnicodeDecodeError) as err:
            raise ControlsError(f"{where}: not valid JSON: {err}") from err
        return cls.from_dict(data, where)


def _describe(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return f"the string {v!r}"
    if isinstance(v, (list, tuple)):
        return "a list"
    if isinstance(v, dict):
        return "an object"
    return repr(v)


# --------------------------------------------------------------------------------------------
# The file


def default_path() -> Path:
    """``<state_dir>/calibration.json`` (``ddsp_device.library.state_dir()``)."""
    from ..library import state_dir

    return state_dir() / CALIBRATION_FILENAME


def save(calibration: Calibration, path: str | os.PathLike[str] | None = None) -> Path:
    """Write atomically: a temp file in the same directory, fsync, ``os.replace``, fsync the
    directory. A crash at any point leaves either the old file or the new one, never a mix.

    The state directory is created when missing; the directory of any other ``path`` must exist.

    Returns:
        The path written.
    Raises:
        ControlsError: the directory cannot be created or written (the message names it).
    """
    from ..atomicfile import atomic_write_bytes

    target = Path(path) if path is not None else default_path()
    try:
        if path is None:
            target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(target, calibration.to_json().encode())
    except OSError as err:
        raise ControlsError(f"{target}: cannot save the calibration: {err.strerror or err}") from err
    return target


def load(path: str | os.PathLike[str] | None = None) -> Calibration | None:
    """Read and validate the calibration file; None when there is none.

    Raises:
        ControlsError: the file cannot be read or is malformed (the message names the file and
            each bad field).
    """
    target = Path(path) if path is not None else default_path()
    try:
        text = target.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as err:
        raise ControlsError(f"{target}: cannot read the calibration: {err.strerror or err}") from err
    return Calibration.from_json(text, where=str(target))


# --------------------------------------------------------------------------------------------
# The guided procedure


@dataclass(frozen=True)
class CalibrationStep:
    """One step: ``name`` (``release``, ``ribbon``, ``pressure`` or ``knobs``) and what to tell
    the player."""

    name: str
    prompt: str


_PROMPTS = {
    "release": "Let go of everything: don't touch the ribbon or the pressure sensor.",
    "ribbon": "Slide one finger along the ribbon from the LOW end to the HIGH end, slowly, "
              "all the way.",
    "pressure": "Press (or blow) as hard as you will play, two or three times.",
    "knobs": "Turn each knob fully anticlockwise, then fully clockwise.",
}


class CalibrationSession:
    """The logic of ``ddsp-device calibrate``: raw samples in, a :class:`Calibration` out.

    Use::

        session = CalibrationSession(knobs=("volume", "reverb"))
        while session.step is not None:
            print(session.step.prompt)            # then collect for a few seconds:
            session.add(ribbon=..., pressure=..., knobs={"volume": ...})   # per reading
            try:
                print(session.finish_step())      # a one-line summary; moves to the next step
            except ControlsError as err:
                print(err)                        # the step's samples are dropped: try again
        calibration = session.result()

    Steps run in order ``release`` (untouched levels and noise), ``ribbon``, ``pressure``,
    ``knobs``; controls the box lacks (``ribbon=False``, ``pressure=False``, no knob names) have
    no step and keep their values from ``previous`` (or :meth:`Calibration.default`).

    Args:
        ribbon, pressure: whether the box has them.
        knobs: names of the knobs.
        previous: the calibration being replaced (values for controls without a step).
        adc_full_scale: largest ADC reading (ribbon, knobs and the ADC pressure sensor); the
            poller reports fractions of the supply, so 1.0.
        pressure_full_scale: the pressure sensor's playing range in its units; default
            ``adc_full_scale`` (an FSR on the ADC). For an MPRLS (hPa) pass the most breath
            pressure a player uses above ambient, e.g. 60.0.
        open_band: the ribbon's untouched band as a fraction of its span (the mapper's
            ``RibbonConfig.open_band``): the untouched level must lie that far outside the
            played range.
        min_samples: readings a step needs.
        min_ribbon_span, min_knob_span, min_pressure_span: the least travel accepted, as a
            fraction of the sensor's full scale.
        max_rest_spread: the most the readings may wander while nothing is touched, as a
            fraction of full scale.
    """

    def __init__(
        self,
        *,
        ribbon: bool = True,
        pressure: bool = True,
        knobs: Sequence[str] = (),
        previous: Calibration | None = None,
        adc_full_scale: float = ADC_FULL_SCALE,
        pressure_full_scale: float | None = None,
        open_band: float = 0.02,
        min_samples: int = 20,
        min_ribbon_span: float = 0.25,
        min_knob_span: float = 0.5,
        min_pressure_span: float = 0.05,
        max_rest_spread: float = 0.05,
    ):
        self.knob_names = tuple(knobs)
        self.adc_full_scale = float(adc_full_scale)
        self.pressure_full_scale = float(pressure_full_scale or adc_full_scale)
        self.open_band = float(open_band)
        self.min_samples = int(min_samples)
        self.min_ribbon_span = float(min_ribbon_span)
        self.min_knob_span = float(min_knob_span)
        self.min_pressure_span = float(min_pressure_span)
        self.max_rest_spread = float(max_rest_spread)
        base = previous if previous is not None else Calibration.default(self.adc_full_scale, self.knob_names)
        self._values: dict[str, Any] = {
            "ribbon_low": base.ribbon_low, "ribbon_high": base.ribbon_high,
            "ribbon_open": base.ribbon_open, "pressure_rest": base.pressure_rest,
            "pressure_max": base.pressure_max,
        }
        self._knobs: dict[str, KnobRange] = dict(base.knobs)
        self._has_ribbon, self._has_pressure = ribbon, pressure
        names = []
        if ribbon or pressure:
            names.append("release")
        if ribbon:
            names.append("ribbon")
        if pressure:
            names.append("pressure")
        if self.knob_names:
            names.append("knobs")
        self.steps = tuple(CalibrationStep(n, _PROMPTS[n]) for n in names)
        self._index = 0
        self._ribbon_noise = 0.0
        self._pressure_noise = 0.0
        self._clear()

    @property
    def step(self) -> CalibrationStep | None:
        """The step collecting now; None when all are done."""
        return self.steps[self._index] if self._index < len(self.steps) else None

    @property
    def done(self) -> bool:
        return self._index >= len(self.steps)

    def _clear(self) -> None:
        self._ribbon: list[float] = []
        self._pressure: list[float] = []
        self._knob_samples: dict[str, list[float]] = {n: [] for n in self.knob_names}

    def retry(self) -> None:
        """Drop the samples collected for the current step."""
        self._clear()

    def add(
        self,
        *,
        ribbon: float | None = None,
        pressure: float | None = None,
        knobs: Mapping[str, float] | None = None,
    ) -> None:
        """Record one reading of each sensor (None or non-finite values are skipped)."""
        for value, dest in ((ribbon, self._ribbon), (pressure, self._pressure)):
            v = _finite(value)
            if v is not None:
                dest.append(v)
        for name, value in (knobs or {}).items():
            v = _finite(value)
            if v is not None and name in self._knob_samples:
                self._knob_samples[name].append(v)

    def finish_step(self) -> str:
        """Check the current step's samples; on success store them, move on, return a summary.

        Raises:
            ControlsError: the data can't be right; the message says what to do. The samples
                are dropped and the step stays current.
        """
        step = self.step
        if step is None:
            raise ControlsError("calibration: every step is already done")
        try:
            summary = getattr(self, f"_finish_{step.name}")()
        finally:
            self._clear()
        self._index += 1
        return summary

    def result(self, now: str | None = None) -> Calibration:
        """The calibration; ``now`` overrides ``created_at`` (ISO 8601).

        Raises:
            ControlsError: steps are left.
        """
        if not self.done:
            left = ", ".join(s.name for s in self.steps[self._index:])
            raise ControlsError(f"calibration: not finished; steps left: {left}")
        return Calibration(
            knobs=dict(self._knobs), created_at=now or _utc_now(), **self._values
        )

    # ---- the steps

    def _need(self, samples: list[float], what: str, hint: str) -> np.ndarray:
        if len(samples) < self.min_samples:
            got = "no" if not samples else f"only {len(samples)}"
            raise ControlsError(
                f"{got} {what} readings arrived (need {self.min_samples}); {hint}"
            )
        return np.asarray(samples, dtype=np.float64)

    def _finish_release(self) -> str:
        parts = []
        hint = "is the sensor connected? `ddsp-device monitor` shows the raw readings"
        if self._has_ribbon:
            x = self._need(self._ribbon, "ribbon", hint)
            lo, hi = np.percentile(x, [1, 99])
            spread = (hi - lo) / self.adc_full_scale
            if spread > self.max_rest_spread:
                raise ControlsError(
                    f"the ribbon reading wandered over {spread:.0%} of the ADC range while "
                    "untouched; keep your hands off it, and check that its wiper has the pull-down "
                    "resistor (hardware/)"
                )
            self._values["ribbon_open"] = float(np.median(x))
            self._ribbon_noise = float(hi - lo)
            parts.append(f"ribbon untouched at {_fmt(self._values['ribbon_open'])}")
        if self._has_pressure:
            x = self._need(self._pressure, "pressure", hint)
            lo, hi = np.percentile(x, [1, 99])
            spread = (hi - lo) / self.pressure_full_scale
            if spread > self.max_rest_spread:
                raise ControlsError(
                    f"the pressure reading wandered over {spread:.0%} of the sensor's range at "
                    "rest; don't touch or blow into it during this step"
                )
            self._values["pressure_rest"] = float(np.median(x))
            self._pressure_noise = float(hi - lo)
            parts.append(f"pressure at rest {_fmt(self._values['pressure_rest'])}")
        return "; ".join(parts)

    def _finish_ribbon(self) -> str:
        hint = "slide from one end to the other"
        x = self._need(self._ribbon, "ribbon", "is the sensor connected? `ddsp-device monitor` "
                                               "shows the raw readings")
        open_ = self._values["ribbon_open"]
        touch_gap = max(3.0 * self._ribbon_noise, 0.01 * self.adc_full_scale)
        touched = x[np.abs(x - open_) > touch_gap]
        if len(touched) < self.min_samples:
            raise ControlsError(
                f"the ribbon was hardly touched (it read its untouched level {_fmt(open_)}); {hint}"
            )
        p_lo, p_hi = (float(v) for v in np.percentile(touched, [1, 99]))
        span = (p_hi - p_lo) / self.adc_full_scale
        if span < self.min_ribbon_span:
            raise ControlsError(f"ribbon moved only {span:.0%} of the ADC range; {hint}")
        # The slide starts at the low end: whichever extreme the first touched readings are near.
        head = float(np.median(touched[: max(3, len(touched) // 10)]))
        low, high = (p_lo, p_hi) if abs(head - p_lo) <= abs(head - p_hi) else (p_hi, p_lo)
        margin = self.open_band * (p_hi - p_lo)
        if p_lo - margin < open_ < p_hi + margin:
            raise ControlsError(
                f"the ribbon reads {_fmt(open_)} when untouched, inside its played range "
                f"{_fmt(p_lo)}..{_fmt(p_hi)}, so letting go can't be told from playing; fit the "
                "pull-down resistor on the wiper and the end resistors (hardware/)"
            )
        self._values["ribbon_low"], self._values["ribbon_high"] = low, high
        return f"ribbon {_fmt(low)} (low) .. {_fmt(high)} (high), {span:.0%} of the ADC range"

    def _finish_pressure(self) -> str:
        hint = "press as hard as you will play"
        x = self._need(self._pressure, "pressure", "is the sensor connected? `ddsp-device monitor` "
                                                   "shows the raw readings")
        rest = self._values["pressure_rest"]
        p_lo, p_hi = (float(v) for v in np.percentile(x, [1, 99]))
        up, down = p_hi - rest, rest - p_lo
        sign, dev = (1.0, up) if up >= down else (-1.0, down)
        fraction = dev / self.pressure_full_scale
        if fraction < self.min_pressure_span:
            direction = "rose" if sign > 0 else "fell"
            raise ControlsError(
                f"pressure {direction} only {max(fraction, 0.0):.0%} of the sensor's range from rest; {hint}"
            )
        if dev < 10.0 * self._pressure_noise:
            raise ControlsError(
                f"the press ({_fmt(dev)}) is hardly bigger than the sensor's noise at rest "
                f"({_fmt(self._pressure_noise)}); {hint}"
            )
        self._values["pressure_max"] = rest + sign * dev
        return f"pressure {_fmt(rest)} (rest) .. {_fmt(self._values['pressure_max'])} (hardest)"

    def _finish_knobs(self) -> str:
        problems = []
        found: dict[str, KnobRange] = {}
        for name in self.knob_names:
            samples = self._knob_samples[name]
            if len(samples) < self.min_samples:
                problems.append(f"knob {name!r}: no readings arrived" if not samples
                                else f"knob {name!r}: only {len(samples)} readings arrived")
                continue
            x = np.asarray(samples, dtype=np.float64)
            p_lo, p_hi = (float(v) for v in np.percentile(x, [1, 99]))
            span = (p_hi - p_lo) / self.adc_full_scale
            if span < self.min_knob_span:
                problems.append(
                    f"knob {name!r} turned through only {span:.0%} of the ADC range; "
                    "turn it from one end to the other"
                )
                continue
            head = float(np.median(x[: max(3, len(x) // 10)]))
            found[name] = (KnobRange(p_lo, p_hi) if abs(head - p_lo) <= abs(head - p_hi)
                           else KnobRange(p_hi, p_lo))
        if problems:
            raise ControlsError("; ".join(problems))
        self._knobs.update(found)
        return ", ".join(f"{n} {_fmt(r.min)}..{_fmt(r.max)}" for n, r in found.items())


def _fmt(v: float) -> str:
    """A reading for a message: ``12000``, ``1013``, ``0.0481``."""
    return f"{v:.0f}" if abs(v) >= 100 else f"{v:.3g}"


def _finite(x: Any) -> float | None:
    try:
        v = float(x)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return None
    return v if math.isfinite(v) else None
