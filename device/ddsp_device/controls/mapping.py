"""Raw sensor readings -> ``f0_hz`` and ``loudness`` (0..1): the instrument's feel.

Pure Python float maths (standard library only; no hardware imports, STYLE.md point 1). Each
mapper is a small class that holds only its own state and is advanced by ``step(raw, dt_s)``
with the time since its previous reading: there is no clock inside, so a test can replay any
sequence of readings. The mappers run in the sensor thread, once per reading (about 1 kHz);
one step costs a few microseconds and allocates nothing worth mentioning.

Bad raw values (None, NaN, inf, strings) are ignored: the mapper holds its last good output.
Out-of-range values are clamped. No input makes an output NaN or infinite.

Pitch is handled in MIDI note numbers (semitones, A4 = 69 = 440 Hz, 12-tone equal temperament)
and converted to Hz at the end, so "exponential pitch" is simply linear in semitones.

Mappers:

* :class:`RibbonPitch`: soft-pot position -> f0_hz, with touch detection, hold on release,
  optional scale quantisation (strength, glide, vibrato kept) and transpose.
* :class:`KeysPitch`: MPR121 pad bitmask -> f0_hz, last-note priority.
* :class:`PressureLoudness`: FSR / breath sensor -> loudness 0..1 (auto-zero, gate, curve,
  attack/release smoothing).
* :class:`Knob` (dead-band hysteresis, 0..1) and :class:`KnobSteps` (0..1 -> integer with
  hysteresis at the boundaries); :func:`knob_to_gain_db`, :func:`knob_to_reverb_mix`,
  :func:`knob_to_tone`.
"""

from __future__ import annotations

import bisect
import difflib
import math
import operator
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import ControlsError

__all__ = [
    "A4_HZ",
    "SCALES",
    "CURVES",
    "hz_to_midi",
    "midi_to_hz",
    "note_to_hz",
    "parse_scale",
    "parse_key",
    "parse_curve",
    "ScaleGrid",
    "ribbon_position",
    "RibbonConfig",
    "RibbonPitch",
    "KeysConfig",
    "KeysPitch",
    "PressureConfig",
    "PressureLoudness",
    "Knob",
    "KnobSteps",
    "knob_to_gain_db",
    "knob_to_reverb_mix",
    "knob_to_tone",
    "TONE_KNOB_DETENT",
]

A4_HZ = 440.0
A4_MIDI = 69.0

#: Named scales: semitones above the key, within one octave.
SCALES: dict[str, tuple[float, ...]] = {
    "chromatic": tuple(float(i) for i in range(12)),
    "major": (0.0, 2.0, 4.0, 5.0, 7.0, 9.0, 11.0),
    "minor": (0.0, 2.0, 3.0, 5.0, 7.0, 8.0, 10.0),
    "harmonic_minor": (0.0, 2.0, 3.0, 5.0, 7.0, 8.0, 11.0),
    "dorian": (0.0, 2.0, 3.0, 5.0, 7.0, 9.0, 10.0),
    "mixolydian": (0.0, 2.0, 4.0, 5.0, 7.0, 9.0, 10.0),
    "pentatonic": (0.0, 2.0, 4.0, 7.0, 9.0),
    "minor_pentatonic": (0.0, 3.0, 5.0, 7.0, 10.0),
    "blues": (0.0, 3.0, 5.0, 6.0, 7.0, 10.0),
    "whole_tone": (0.0, 2.0, 4.0, 6.0, 8.0, 10.0),
}

#: Named pressure curves: the exponent ``gamma`` of :class:`PressureConfig` (see there), or
#: ``"amplitude"`` for loudness in dB = 20·log10(pressure).
CURVES: dict[str, float | None] = {"linear": 1.0, "soft": 0.5, "hard": 2.0, "amplitude": None}

_PITCH_CLASSES = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}


# --------------------------------------------------------------------------------------------
# Small helpers


def _finite(x: Any) -> float | None:
    """``float(x)`` when that is a finite number, else None (None, NaN, inf, junk, huge ints)."""
    try:
        v = float(x)
    except (TypeError, ValueError, OverflowError):
        return None
    return v if math.isfinite(v) else None


def _dt(dt_s: Any) -> float:
    """A usable time step: finite and >= 0, else 0 (time does not move)."""
    v = _finite(dt_s)
    return v if v is not None and v > 0.0 else 0.0


def _clamp(x: float, lo: float, hi: float) -> float:
    return lo if x < lo else hi if x > hi else x


def _unit(x: float) -> float:
    """``x`` clamped to 0..1; NaN (only from absurd calibrations, e.g. inf/inf) gives 0."""
    return x if 0.0 <= x <= 1.0 else 1.0 if x > 1.0 else 0.0


def _clamp01(x: Any) -> float:
    v = _finite(x)
    if v is None:
        return 1.0 if x == math.inf else 0.0
    return _clamp(v, 0.0, 1.0)


def _smoothing(dt_s: float, tau_s: float) -> float:
    """Per-step coefficient of a one-pole smoother with time constant ``tau_s`` (0 = no smoothing)."""
    if tau_s <= 0.0:
        return 1.0
    return -math.expm1(-dt_s / tau_s)


def hz_to_midi(f0_hz: float) -> float:
    """MIDI note number (fractional) of ``f0_hz`` (> 0); A4 = 440 Hz = 69."""
    return A4_MIDI + 12.0 * math.log2(f0_hz / A4_HZ)


def midi_to_hz(midi: float) -> float:
    """Frequency in Hz of a (fractional) MIDI note number."""
    return A4_HZ * 2.0 ** ((midi - A4_MIDI) / 12.0)


def parse_key(key: str | int) -> int:
    """Pitch class 0..11 (C = 0) of a key given as a name (``"G"``, ``"F#"``, ``"Bb"``) or int."""
    if isinstance(key, int) and not isinstance(key, bool):
        if 0 <= key <= 11:
            return key
        raise ControlsError(f"key must be 0..11 (C = 0) or a note name, got {key}")
    if isinstance(key, str):
        k = key.strip()
        if k[:1].upper() in _PITCH_CLASSES:
            pc = _PITCH_CLASSES[k[0].upper()]
            accidental = k[1:]
            if accidental in ("", "#", "b", "♯", "♭"):
                pc += 1 if accidental in ("#", "♯") else -1 if accidental in ("b", "♭") else 0
                return pc % 12
    raise ControlsError(f"key must be a note name such as C, F#, Bb (or 0..11), got {key!r}")


def note_to_hz(note: str) -> float:
    """Frequency of a note name with octave, scientific pitch notation: ``"G3"`` -> 196.0 Hz."""
    s = note.strip() if isinstance(note, str) else ""
    i = 2 if len(s) > 2 and s[1] in "#b♯♭" else 1
    try:
        octave = int(s[i:])
        pc = parse_key(s[:i])
    except (ValueError, ControlsError):
        raise ControlsError(f"note must look like G3, F#4 or Bb2, got {note!r}") from None
    return midi_to_hz(12 * (octave + 1) + pc)


def parse_scale(scale: str | Sequence[float]) -> tuple[float, ...]:
    """Scale degrees (sorted semitones in 0..12) from a name in :data:`SCALES`, a string of
    comma-separated semitones (``"0,2,4,7,9"``) or a sequence of numbers (taken modulo 12).

    Raises:
        ControlsError: naming the scales known, when the scale is unknown or empty.
    """
    if isinstance(scale, str):
        name = scale.strip().lower().replace("-", "_").replace(" ", "_")
        if name in SCALES:
            return SCALES[name]
        try:
            values: Sequence[Any] = [float(p) for p in scale.split(",") if p.strip()]
        except ValueError:
            known = ", ".join(SCALES)
            close = difflib.get_close_matches(name, list(SCALES), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ControlsError(
                f"unknown scale {scale!r}{hint}: use one of {known}, or semitones such as \"0,2,4,7,9\""
            ) from None
    else:
        values = scale
    degrees = set()
    for v in values:
        f = _finite(v)
        if f is None:
            raise ControlsError(f"scale degrees must be numbers of semitones, got {v!r}")
        degrees.add(round(f % 12.0, 9) % 12.0)
    if not degrees:
        raise ControlsError("a scale needs at least one degree")
    return tuple(sorted(degrees))


class ScaleGrid:
    """The notes of a scale in every octave: nearest / next-up / next-down note of a pitch.

    Args:
        degrees: semitones above the key within one octave (from :func:`parse_scale`).
        key_midi: any note of the key (only its value modulo 12 matters for whole-semitone keys;
            the ribbon uses the key's pitch class, the keys mapper its base note).
    """

    def __init__(self, degrees: Sequence[float], key_midi: float):
        self.degrees = tuple(sorted(degrees))
        self.key_midi = float(key_midi)
        # One octave with a neighbour each side, so a bisect always has two candidates.
        self._ext = [self.degrees[-1] - 12.0, *self.degrees, self.degrees[0] + 12.0]

    def _split(self, midi: float) -> tuple[float, float]:
        rel = midi - self.key_midi
        octave_base = 12.0 * math.floor(rel / 12.0)
        return octave_base, rel - octave_base

    def nearest(self, midi: float) -> float:
        """The scale note closest to ``midi`` (ties go down)."""
        base, frac = self._split(midi)
        i = bisect.bisect_left(self._ext, frac)
        lo, hi = self._ext[i - 1], self._ext[i]
        return self.key_midi + base + (lo if frac - lo <= hi - frac else hi)

    def ceil(self, midi: float) -> float:
        """The lowest scale note >= ``midi``."""
        base, frac = self._split(midi)
        return self.key_midi + base + self._ext[bisect.bisect_left(self._ext, frac)]

    def floor(self, midi: float) -> float:
        """The highest scale note <= ``midi``."""
        base, frac = self._split(midi)
        return self.key_midi + base + self._ext[bisect.bisect_right(self._ext, frac) - 1]

    def nearest_within(self, midi: float, lo: float, hi: float) -> float:
        """The nearest scale note that lies in ``[lo, hi]``; ``midi`` clamped when none does."""
        n = self.nearest(midi)
        if n < lo:
            n = self.ceil(lo)
        elif n > hi:
            n = self.floor(hi)
        return n if lo <= n <= hi else _clamp(midi, lo, hi)

    def pad_note(self, index: int) -> float:
        """The ``index``-th scale note counted up from the key (0 = the key itself)."""
        per_octave = len(self.degrees)
        octave, degree = divmod(index, per_octave)
        return self.key_midi + 12.0 * octave + self.degrees[degree]


def _between(v: Any, lo: float, hi: float, *, lo_open: bool = False) -> bool:
    """True when ``v`` is a finite number in ``[lo, hi]`` (``(lo, hi]`` with ``lo_open``)."""
    f = _finite(v) if not isinstance(v, (str, bool)) else None
    return f is not None and (lo < f if lo_open else lo <= f) and f <= hi


def _check(problems: list[str], ok: bool, message: str) -> None:
    if not ok:
        problems.append(message)


def _raise(kind: str, problems: list[str]) -> None:
    if problems:
        raise ControlsError(f"{kind}: " + "; ".join(problems))


def ribbon_position(raw: float, low_raw: float, high_raw: float) -> float:
    """Normalised ribbon position 0..1: ``low_raw`` -> 0, ``high_raw`` -> 1, clamped.

    ``low_raw`` may be above ``high_raw`` (ribbon wired the other way round). A bad ``raw`` gives
    0.0; use :class:`RibbonPitch` to hold the last good value instead.
    """
    x = _finite(raw)
    span = high_raw - low_raw
    if x is None or span == 0.0:
        return 0.0
    return _unit((x - low_raw) / span)


# --------------------------------------------------------------------------------------------
# Ribbon pitch


@dataclass(frozen=True)
class RibbonConfig:
    """How the ribbon plays. Each field maps to a ``[controls]`` config key.

    Pitch: position ``p`` in 0..1 plays ``base_hz · 2^(p · range_semitones / 12)``, then
    ``transpose_octaves`` and ``transpose_semitones`` (plus the ``transpose_semitones`` passed to
    :meth:`RibbonPitch.step`, e.g. from a knob) shift the result.

    Touch: the ribbon is untouched while the raw reading is within
    ``open_band · |high_raw - low_raw|`` of the calibrated untouched level ``open_raw`` (a soft pot
    whose wiper is pulled to a rail reads that rail when nobody presses it). A touch is used once
    it has lasted ``touch_settle_s`` (the ADC's first reading of a touch can be a blend of
    untouched and touched); on release the pitch from ``release_rewind_s`` before the release is
    held (the last readings of a lifting finger drift).

    Quantisation (``strength`` 0 = continuous, 1 = on the notes of ``scale`` in ``key``): see
    :class:`RibbonPitch`. ``glide_s`` is the time the snapped pitch takes to reach a new note;
    ``vibrato_hz`` the corner below which finger motion counts as "where the note is" rather than
    vibrato; moves wider than ``vibrato_window_semitones`` count as going to a new note;
    ``hysteresis_semitones`` is how far past the midpoint between two notes the finger must go
    before the note changes.

    The fields that are ``[controls]`` keys (``base_hz`` … ``glide_s``, ``scale``, ``key``) arrive
    validated by the config schema (:mod:`ddsp_device.config`, the one place for their rules) and
    are not checked again here; ``scale`` and ``key`` go through :func:`parse_scale` and
    :func:`parse_key`, which the schema uses too. The tuning fields below them are checked.
    """

    base_hz: float = 196.0  # G3
    range_semitones: float = 30.0
    transpose_octaves: int = 0
    transpose_semitones: float = 0.0
    open_band: float = 0.02
    touch_settle_s: float = 0.001
    release_rewind_s: float = 0.003
    scale: str | tuple[float, ...] = "chromatic"
    key: str | int = "C"
    strength: float = 0.0
    glide_s: float = 0.05
    vibrato_hz: float = 1.5
    vibrato_window_semitones: float = 0.6
    hysteresis_semitones: float = 0.15

    def __post_init__(self) -> None:
        p: list[str] = []
        _check(p, _between(self.open_band, 0.0, 0.49),
               f"open_band must be 0..0.49, got {self.open_band}")
        for name in ("touch_settle_s", "release_rewind_s"):
            v = getattr(self, name)
            _check(p, _between(v, 0.0, 0.1), f"{name} must be 0..0.1 s, got {v}")
        _check(p, _between(self.vibrato_hz, 0.01, 50.0),
               f"vibrato_hz must be 0.01..50, got {self.vibrato_hz}")
        _check(p, _between(self.vibrato_window_semitones, 0.0, 12.0, lo_open=True),
               f"vibrato_window_semitones must be > 0 and <= 12, got {self.vibrato_window_semitones}")
        _check(p, _between(self.hysteresis_semitones, 0.0, 6.0),
               f"hysteresis_semitones must be 0..6, got {self.hysteresis_semitones}")
        _raise("ribbon", p)

    @property
    def f0_min_hz(self) -> float:
        """Lowest f0 the ribbon plays before transpose."""
        return float(self.base_hz)

    @property
    def f0_max_hz(self) -> float:
        """Highest f0 the ribbon plays before transpose."""
        return self.base_hz * 2.0 ** (self.range_semitones / 12.0)

    @property
    def transpose_total_semitones(self) -> float:
        return 12.0 * self.transpose_octaves + self.transpose_semitones


_HISTORY = 64  # ribbon outputs remembered for the release rewind (64 ms at 1 kHz)


class RibbonPitch:
    """Soft-pot ribbon -> ``f0_hz``.

    Quantisation, per reading, with ``s`` the finger's pitch (semitones, continuous)::

        c = centre: where the finger is on average. Two cascaded one-pole low-passes at
            vibrato_hz, arranged so that c = s - HP(HP(s)): c follows a steady slide without lag
            and leaves out the wiggle above vibrato_hz. If |s - c| > vibrato_window the finger
            is going somewhere, not wiggling: c jumps to s and the jump is added to g, so the
            output stays continuous (it follows the finger, then settles onto the note).
        n = the scale note nearest c (within the ribbon's range), changed only when c is
            hysteresis past the midpoint between two notes.
        g = n glided: a straight line to each new n taking glide_s.
        out = s + strength · (g - c)

    At strength 1, ``out = g + (s - c)``: the snapped note plus the player's fast deviation from
    their own centre, so vibrato survives (a 5 Hz wiggle keeps about 90 % of its depth at the
    default 1.5 Hz corner) while a steady finger sits exactly on the note and a slow slide is a
    staircase of notes. At strength 0 ``out = s``. A new touch snaps at once (no glide from the
    previous note). The output is clamped to the ribbon's range before transpose.

    Args:
        config: the playing settings.
        low_raw, high_raw: raw readings at the ribbon's low-pitch and high-pitch ends
            (calibration; ``low_raw > high_raw`` is fine).
        open_raw: raw reading when nobody touches the ribbon (calibration).
    """

    def __init__(self, config: RibbonConfig, low_raw: float, high_raw: float, open_raw: float):
        lo, hi, op = _finite(low_raw), _finite(high_raw), _finite(open_raw)
        if lo is None or hi is None or op is None or lo == hi:
            raise ControlsError(
                f"ribbon calibration needs finite, different ends and an open level, got "
                f"low={low_raw!r} high={high_raw!r} open={open_raw!r}"
            )
        self.config = config
        self._low = lo
        self._span = hi - lo
        self._open = op
        self._open_tol = config.open_band * abs(self._span)
        self._lo_midi = hz_to_midi(config.base_hz)
        self._hi_midi = self._lo_midi + config.range_semitones
        self._grid = ScaleGrid(parse_scale(config.scale), float(parse_key(config.key)))
        self._tau = 1.0 / (2.0 * math.pi * config.vibrato_hz)
        self._t = 0.0
        self._touched = False
        self._pending_since: float | None = None
        self._position = 0.0
        self._s = self._c = self._g = self._n = self._lo_midi
        self._e = 0.0
        self._glide_left = 0.0
        self._midi = self._lo_midi  # last output, before transpose
        self._hist_t = [0.0] * _HISTORY
        self._hist_m = [0.0] * _HISTORY
        self._hist_i = 0
        self._hist_n = 0

    @classmethod
    def from_calibration(cls, config: RibbonConfig, calibration: Any) -> "RibbonPitch":
        """Build from a :class:`~ddsp_device.controls.calibration.Calibration`."""
        return cls(config, calibration.ribbon_low, calibration.ribbon_high, calibration.ribbon_open)

    @property
    def touched(self) -> bool:
        """True while a finger is on the ribbon (after ``touch_settle_s``)."""
        return self._touched

    @property
    def position(self) -> float:
        """Last touched position, 0..1."""
        return self._position

    @property
    def midi(self) -> float:
        """Last output pitch as a MIDI note number, before transpose."""
        return self._midi

    def step(self, raw: Any, dt_s: float, transpose_semitones: float = 0.0) -> float:
        """Advance by one ribbon reading taken ``dt_s`` after the previous one; return f0_hz.

        Args:
            raw: the ADC reading (any value; bad ones are ignored).
            dt_s: seconds since the previous call (bad values count as 0).
            transpose_semitones: extra transpose on top of the config's (e.g. from a knob).
        """
        dt = _dt(dt_s)
        self._t += dt
        x = _finite(raw)
        if x is not None:
            if abs(x - self._open) <= self._open_tol:
                self._release()
            else:
                p = _unit((x - self._low) / self._span)
                if self._touched:
                    self._move(p, dt)
                else:
                    if self._pending_since is None:
                        self._pending_since = self._t
                    if self._t - self._pending_since + 1e-9 >= self.config.touch_settle_s:
                        self._onset(p)
        return self._hz(transpose_semitones)

    def _hz(self, transpose_semitones: float) -> float:
        tr = _finite(transpose_semitones) or 0.0
        tr = _clamp(tr, -48.0, 48.0) + self.config.transpose_total_semitones
        return midi_to_hz(self._midi + tr)

    def _record(self) -> None:
        i = self._hist_i
        self._hist_t[i] = self._t
        self._hist_m[i] = self._midi
        self._hist_i = (i + 1) % _HISTORY
        if self._hist_n < _HISTORY:
            self._hist_n += 1

    def _release(self) -> None:
        self._pending_since = None
        if not self._touched:
            return
        self._touched = False
        # Hold the newest output at least release_rewind_s old (the oldest of this touch if none).
        target_t = self._t - self.config.release_rewind_s
        i = self._hist_i
        for _ in range(self._hist_n):
            i = (i - 1) % _HISTORY
            self._midi = self._hist_m[i]
            if self._hist_t[i] <= target_t + 1e-9:
                break

    def _onset(self, p: float) -> None:
        self._touched = True
        self._pending_since = None
        self._hist_n = 0
        self._position = p
        s = self._lo_midi + p * self.config.range_semitones
        self._s = self._c = s
        self._e = 0.0
        self._n = self._g = self._grid.nearest_within(s, self._lo_midi, self._hi_midi)
        self._glide_left = 0.0
        self._output()

    def _move(self, p: float, dt: float) -> None:
        cfg = self.config
        self._position = p
        s = self._lo_midi + p * cfg.range_semitones
        self._s = s
        d = s - (self._c + self._e)
        if abs(d) > cfg.vibrato_window_semitones:
            # Going somewhere: the centre follows the finger; g absorbs the jump (continuity).
            self._c = s
            self._e = 0.0
            self._g += d
            self._glide_left = cfg.glide_s
        else:
            a = _smoothing(dt, self._tau)
            self._c += (s - self._c) * a
            self._e += (s - self._c - self._e) * a
        c = self._c + self._e
        cand = self._grid.nearest_within(c, self._lo_midi, self._hi_midi)
        if cand != self._n and abs(c - cand) + cfg.hysteresis_semitones < abs(c - self._n):
            self._n = cand
            self._glide_left = cfg.glide_s
        if self._glide_left <= dt:
            self._g = self._n
            self._glide_left = 0.0
        else:
            self._g += (self._n - self._g) * dt / self._glide_left
            self._glide_left -= dt
        self._output()

    def _output(self) -> None:
        m = self._s + self.config.strength * (self._g - self._c - self._e)
        self._midi = _clamp(m, self._lo_midi, self._hi_midi)
        self._record()


# --------------------------------------------------------------------------------------------
# Keys


@dataclass(frozen=True)
class KeysConfig:
    """MPR121 pads as notes: pad ``i`` plays the ``i``-th note of ``scale`` counted up from
    ``base_hz`` (chromatic: ``base_hz · 2^(i/12)``). ``glide_s`` glides between notes played
    legato (a new pad pressed while another is held); a first note starts at once.

    ``base_hz``, ``scale``, ``n_pads`` and the transposes are ``[controls]`` keys: validated by
    the config schema, not checked again here (``scale`` goes through :func:`parse_scale`).
    """

    base_hz: float = 196.0  # G3
    scale: str | tuple[float, ...] = "chromatic"
    n_pads: int = 12
    glide_s: float = 0.0
    transpose_octaves: int = 0
    transpose_semitones: float = 0.0

    def __post_init__(self) -> None:
        p: list[str] = []
        _check(p, _between(self.glide_s, 0.0, 10.0),
               f"glide_s must be 0..10 s, got {self.glide_s}")
        _raise("keys", p)

    @property
    def transpose_total_semitones(self) -> float:
        return 12.0 * self.transpose_octaves + self.transpose_semitones


class KeysPitch:
    """Pad bitmask -> ``f0_hz`` with last-note priority.

    The most recently pressed pad that is still held sounds; releasing it falls back to the
    previous still-held pad; with no pad held the last pitch is held. Pads that appear pressed in
    the same reading are taken in ascending pad order (the highest one sounds).
    """

    def __init__(self, config: KeysConfig = KeysConfig()):
        self.config = config
        grid = ScaleGrid(parse_scale(config.scale), hz_to_midi(config.base_hz))
        self._pad_midi = [grid.pad_note(i) for i in range(config.n_pads)]
        self._valid = (1 << config.n_pads) - 1
        self._mask = 0
        self._held: list[int] = []  # press order, oldest first
        self._midi = self._target = self._pad_midi[0]
        self._glide_left = 0.0

    @property
    def held(self) -> tuple[int, ...]:
        """Pads held, oldest press first."""
        return tuple(self._held)

    @property
    def midi(self) -> float:
        """Last output pitch as a MIDI note number, before transpose."""
        return self._midi

    def pad_hz(self, pad: int) -> float:
        """The pitch of ``pad`` before transpose."""
        return midi_to_hz(self._pad_midi[pad])

    def step(self, mask: Any, dt_s: float, transpose_semitones: float = 0.0) -> float:
        """Advance by one touch-status reading (bit ``i`` = pad ``i``); return f0_hz.

        A mask that is not an integer in ``0 .. 2**n_pads - 1`` is ignored (held last state).
        """
        dt = _dt(dt_s)
        try:
            m: int | None = operator.index(mask)  # ints and numpy integers; not floats
        except TypeError:
            m = None
        if m is not None and 0 <= m <= self._valid and m != self._mask:
            was_held = bool(self._held)
            released = self._mask & ~m
            pressed = m & ~self._mask
            if released:
                self._held = [i for i in self._held if not released >> i & 1]
            for i in range(self.config.n_pads):
                if pressed >> i & 1:
                    self._held.append(i)
            self._mask = m
            if self._held:
                target = self._pad_midi[self._held[-1]]
                if target != self._target:
                    self._target = target
                    self._glide_left = self.config.glide_s if was_held else 0.0
        if self._glide_left <= dt:
            self._midi = self._target
            self._glide_left = 0.0
        else:
            self._midi += (self._target - self._midi) * dt / self._glide_left
            self._glide_left -= dt
        tr = _clamp(_finite(transpose_semitones) or 0.0, -48.0, 48.0)
        return midi_to_hz(self._midi + tr + self.config.transpose_total_semitones)


# --------------------------------------------------------------------------------------------
# Pressure -> loudness


def parse_curve(curve: str | float) -> float | None:
    """The exponent of a curve name or number (0.1..10); None for "amplitude".

    Raises:
        ControlsError: naming the curves known.
    """
    if isinstance(curve, str):
        name = curve.strip().lower()
        if name in CURVES:
            return CURVES[name]
        v = _finite(name)
    else:
        v = _finite(curve)
    if v is None or not 0.1 <= v <= 10.0:
        names = ", ".join(CURVES)
        raise ControlsError(f"curve must be one of {names} or an exponent 0.1..10, got {curve!r}")
    return v


@dataclass(frozen=True)
class PressureConfig:
    """How pressure becomes loudness.

    ``p`` = (raw - baseline) / (calibrated max - calibrated rest), the press as a fraction of the
    hardest press. At or below ``threshold`` (the noise gate) the loudness is 0 (silence). Above
    it ``u = (p - threshold) / (1 - threshold)`` (0..1) goes through the curve::

        loudness_db = -range_db · (1 - u^gamma)        (exponent curves; "linear" = 1,
                                                         "soft" = 0.5, "hard" = 2)
        loudness_db = max(20 · log10(u), -range_db)     ("amplitude": sound amplitude ∝ press,
                                                         like a wind instrument's breath)
        loudness    = loudness_db / 80 + 1              (the model's scale, 0..1)

    so the lightest press past the gate plays at ``-range_db`` dB (loudness ``1 - range_db/80``,
    quiet enough for the step from silence not to click) and the hardest at 0 dB (loudness 1).
    ``gamma > 1`` gives more room at the quiet end, ``< 1`` at the loud end.

    Smoothing is a one-pole toward that target with ``attack_s`` when rising and ``release_s``
    when falling; the 90 % rise time is ``2.3 · attack_s`` rounded up to the reading period
    (default 0.5 ms: one reading at 1 kHz). When the gate is shut and the smoothed value falls
    below the quietest playable level it snaps to 0, so the engine's silence gate closes.

    The baseline is the average of the first ``baseline_samples`` readings whose spread is within
    ``baseline_tolerance`` of the calibrated range (an unsteady start restarts the count); the
    loudness is 0 until then.

    ``threshold``, ``curve``, ``range_db``, ``attack_s`` and ``release_s`` are ``[controls]``
    keys: validated by the config schema, not checked again here (``curve`` goes through
    :func:`parse_curve`, as in the schema). The ``baseline_*`` fields are checked.
    """

    threshold: float = 0.03
    curve: str | float = "linear"
    range_db: float = 60.0
    attack_s: float = 0.0005
    release_s: float = 0.03
    baseline_samples: int = 100
    baseline_tolerance: float = 0.05

    def __post_init__(self) -> None:
        p: list[str] = []
        _check(p, isinstance(self.baseline_samples, int) and 1 <= self.baseline_samples <= 100000,
               f"baseline_samples must be an integer 1..100000, got {self.baseline_samples}")
        _check(p, _between(self.baseline_tolerance, 0.0, 1.0, lo_open=True),
               f"baseline_tolerance must be > 0 and <= 1, got {self.baseline_tolerance}")
        _raise("pressure", p)


class PressureLoudness:
    """Pressure sensor -> ``loudness`` 0..1 (see :class:`PressureConfig`).

    Args:
        config: the playing settings.
        rest_raw: calibrated reading at rest; the initial baseline when ``auto_zero`` is False.
        max_raw: calibrated reading at the hardest press (below ``rest_raw`` if pressing lowers
            the reading, e.g. an FSR on the high side of its divider).
        auto_zero: take the baseline from the first readings (breath sensors read the weather).
    """

    def __init__(self, config: PressureConfig, rest_raw: float, max_raw: float, auto_zero: bool = True):
        rest, mx = _finite(rest_raw), _finite(max_raw)
        if rest is None or mx is None or rest == mx:
            raise ControlsError(
                f"pressure calibration needs finite, different rest and max, got "
                f"rest={rest_raw!r} max={max_raw!r}"
            )
        self.config = config
        self._span = mx - rest
        self._gamma = parse_curve(config.curve)
        self._floor = 1.0 - config.range_db / 80.0
        self._snap = max(self._floor, 0.01)
        self._baseline: float | None = None if auto_zero else rest
        self._n = 0
        self._sum = 0.0
        self._min = self._max = 0.0
        self._pressure = 0.0
        self._target = 0.0
        self._loudness = 0.0

    @classmethod
    def from_calibration(cls, config: PressureConfig, calibration: Any, auto_zero: bool = True) -> "PressureLoudness":
        """Build from a :class:`~ddsp_device.controls.calibration.Calibration`."""
        return cls(config, calibration.pressure_rest, calibration.pressure_max, auto_zero)

    @property
    def baseline(self) -> float | None:
        """The rest reading in use; None while auto-zeroing."""
        return self._baseline

    @property
    def pressure(self) -> float:
        """Last press as a fraction of the calibrated range (clamped 0..1)."""
        return self._pressure

    @property
    def loudness(self) -> float:
        """Last output, 0..1."""
        return self._loudness

    def set_baseline(self, raw: float) -> None:
        """Use ``raw`` as the rest reading from now on (ignored if not finite)."""
        v = _finite(raw)
        if v is not None:
            self._baseline = v

    def rezero(self) -> None:
        """Start auto-zeroing again (silent until it has the baseline)."""
        self._baseline = None
        self._n = 0

    def curve(self, p: float) -> float:
        """Steady-state loudness for a press ``p`` (fraction of the calibrated range)."""
        cfg = self.config
        if not p > cfg.threshold:
            return 0.0
        u = min((p - cfg.threshold) / (1.0 - cfg.threshold), 1.0)
        if self._gamma is None:
            db = 20.0 * math.log10(u) if u > 0.0 else -cfg.range_db
            return 1.0 + max(db, -cfg.range_db) / 80.0
        return self._floor + (1.0 - self._floor) * u**self._gamma

    def step(self, raw: Any, dt_s: float) -> float:
        """Advance by one pressure reading taken ``dt_s`` after the previous; return loudness.

        A bad ``raw`` repeats the previous target (the smoothing still advances).
        """
        dt = _dt(dt_s)
        x = _finite(raw)
        if x is not None:
            if self._baseline is None:
                self._zeroing(x)
            else:
                p = _unit((x - self._baseline) / self._span)
                self._pressure = p
                self._target = self.curve(p)
        return self._smooth(dt)

    def release(self, dt_s: float) -> float:
        """Advance with the gate shut (the sensor is gone): fades to silence at ``release_s``."""
        self._target = 0.0
        self._pressure = 0.0
        return self._smooth(_dt(dt_s))

    def _zeroing(self, x: float) -> None:
        cfg = self.config
        if self._n == 0:
            self._min = self._max = x
            self._sum = 0.0
        self._min = min(self._min, x)
        self._max = max(self._max, x)
        if self._max - self._min > cfg.baseline_tolerance * abs(self._span):
            self._n = 0  # unsteady: start again from this reading
            self._min = self._max = x
            self._sum = 0.0
        self._sum += x
        self._n += 1
        if self._n >= cfg.baseline_samples:
            self._baseline = self._sum / self._n
            self._n = 0

    def _smooth(self, dt: float) -> float:
        y, target = self._loudness, self._target
        tau = self.config.attack_s if target > y else self.config.release_s
        y += (target - y) * _smoothing(dt, tau)
        if target == 0.0 and y < self._snap:
            y = 0.0
        self._loudness = _clamp(y, 0.0, 1.0)
        return self._loudness


# --------------------------------------------------------------------------------------------
# Knobs


class Knob:
    """A potentiometer -> 0..1 with a dead band: the value changes only when the normalised
    reading moves more than ``dead_band`` from the current value (or reaches an end of travel,
    so 0 and 1 stay reachable). Untouched, the value does not jitter.

    Args:
        min_raw, max_raw: calibrated readings at the two ends of travel (either order).
        dead_band: fraction of the travel, 0..0.5.
        initial: the value before the first good reading.
    """

    def __init__(self, min_raw: float, max_raw: float, dead_band: float = 0.01, initial: float = 0.0):
        lo, hi, db = _finite(min_raw), _finite(max_raw), _finite(dead_band)
        if lo is None or hi is None or lo == hi:
            raise ControlsError(f"knob calibration needs finite, different ends, got {min_raw!r}, {max_raw!r}")
        if db is None or not 0.0 <= db <= 0.5:
            raise ControlsError(f"knob dead_band must be 0..0.5, got {dead_band!r}")
        self._lo = lo
        self._span = hi - lo
        self._dead_band = db
        self._value = _clamp01(initial)
        self._fresh = True

    @classmethod
    def from_calibration(cls, calibration: Any, name: str, dead_band: float = 0.01) -> "Knob":
        """Build from the ``name`` entry of a Calibration's ``knobs``."""
        rng = calibration.knobs[name]
        return cls(rng.min, rng.max, dead_band)

    @property
    def value(self) -> float:
        return self._value

    def step(self, raw: Any) -> float:
        """Advance by one reading; return the value 0..1."""
        x = _finite(raw)
        if x is not None:
            v = _unit((x - self._lo) / self._span)
            if (
                self._fresh
                or abs(v - self._value) > self._dead_band
                or (v != self._value and (v == 0.0 or v == 1.0))
            ):
                self._value = v
                self._fresh = False
        return self._value


class KnobSteps:
    """Knob value 0..1 -> an integer ``lo..hi`` (e.g. transpose in octaves), with hysteresis.

    The travel is cut into ``hi - lo + 1`` equal slices; the output changes only when the value
    goes ``hysteresis`` (fraction of a slice) past the edge of the current slice.
    """

    def __init__(self, lo: int, hi: int, hysteresis: float = 0.25, initial: int | None = None):
        """``initial`` is the output before the first reading; None: the first reading decides."""
        if not (isinstance(lo, int) and isinstance(hi, int) and lo <= hi):
            raise ControlsError(f"knob steps need integers lo <= hi, got {lo!r}, {hi!r}")
        h = _finite(hysteresis)
        if h is None or not 0.0 <= h < 0.5:
            raise ControlsError(f"knob step hysteresis must be 0..0.5, got {hysteresis!r}")
        self.lo, self.hi = lo, hi
        self._n = hi - lo + 1
        self._h = h
        start = (lo + hi) // 2 if initial is None else initial
        self._index = int(_clamp(start, lo, hi)) - lo
        self._fresh = initial is None

    @property
    def value(self) -> int:
        return self.lo + self._index

    def step(self, value: Any) -> int:
        """Advance with a knob value 0..1 (bad values ignored); return the integer."""
        v = _finite(value)
        if v is not None:
            x = _clamp(v, 0.0, 1.0) * self._n  # slice i covers [i, i + 1)
            i = self._index
            if self._fresh or x < i - self._h or x > i + 1 + self._h:
                self._index = min(int(x), self._n - 1)
                self._fresh = False
        return self.value


def knob_to_gain_db(value: float, min_db: float = -60.0, max_db: float = 0.0) -> float:
    """Volume knob 0..1 -> gain in dB, linear in dB from ``min_db`` to ``max_db``."""
    return min_db + (max_db - min_db) * _clamp01(value)


def knob_to_reverb_mix(value: float, max_mix: float = 1.0) -> float:
    """Reverb knob 0..1 -> wet/dry mix 0..``max_mix``."""
    return max_mix * _clamp01(value)


#: Half-width of the tone knob's flat zone around its centre, fraction of half its travel.
TONE_KNOB_DETENT = 0.05


def knob_to_tone(value: float, detent: float = TONE_KNOB_DETENT) -> float:
    """Tone knob 0..1 -> tone -1..+1: dark at the left, flat at the centre, bright at the right.

    ``u = 2·value − 1`` (value clamped to 0..1); a zone ``|u| ≤ detent`` around the centre (a
    pot's centre detent, or where a plain pot is left by eye) gives exactly 0, and the rest is
    stretched so that the ends still reach −1 and +1: ``tone = sign(u)·(|u| − detent) /
    (1 − detent)``. Continuous and monotonic. A value that is not a finite number gives 0.
    """
    v = _finite(value)
    if v is None:
        return 0.0
    u = 2.0 * _clamp(v, 0.0, 1.0) - 1.0
    d = _clamp(float(detent), 0.0, 0.5)
    if abs(u) <= d:
        return 0.0
    return math.copysign((abs(u) - d) / (1.0 - d), u)
