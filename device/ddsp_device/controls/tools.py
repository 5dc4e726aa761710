"""``ddsp-device monitor`` and ``ddsp-device calibrate``: the controls, seen over SSH.

Both run the sensor poller in its thread and read what it publishes. ``--emulate`` puts an
emulated build (:func:`emulated_bus`) behind the bus, so both commands can be tried, and are
tested, without hardware.
"""

from __future__ import annotations

import math
import time
from typing import Callable, TextIO

from ..errors import ControlsError
from . import calibration as calibration_mod
from .calibration import Calibration, CalibrationSession
from .emulated import EmulatedADS1015, EmulatedADS1115, EmulatedBus, EmulatedMPR121, EmulatedMPRLS
from .mapping import hz_to_midi, knob_to_tone
from .poller import ControlState
from .rig import KNOB_ROLES

NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
#: MPRLS breath range a player uses above ambient, hPa (for the calibration's plausibility checks).
BREATH_RANGE_HPA = 60.0


def note_name(f0_hz: float) -> str:
    """``440.0`` → ``"A4"``, with the deviation in cents when it is more than 5: ``"A4+12"``."""
    if not f0_hz > 0:
        return "-"
    midi = hz_to_midi(f0_hz)
    n = int(round(midi))
    cents = int(round(100 * (midi - n)))
    name = f"{NOTE_NAMES[n % 12]}{n // 12 - 1}"
    return name if abs(cents) <= 5 else f"{name}{cents:+d}"


def _fmt(v: float | None, spec: str = ".3f") -> str:
    return "  -  " if v is None else format(v, spec)


def format_state(state: ControlState, knob_roles: tuple[str, ...]) -> str:
    """One line: mapped controls, raw readings, knobs and sensor health."""
    raw = state.raw
    parts = [f"f0 {state.f0_hz:7.1f} Hz {note_name(state.f0_hz):<6}", f"loudness {state.loudness:.3f}"]
    if raw is not None:
        if raw.pitch is not None:
            parts.append(f"ribbon {_fmt(raw.pitch)}")
        if raw.keys is not None:
            parts.append(f"keys {raw.keys:012b}")
        if raw.pressure is not None:
            parts.append(f"pressure {_fmt(raw.pressure)}")
        if raw.pressure_hpa is not None:
            parts.append(f"breath {_fmt(raw.pressure_hpa, '.1f')} hPa")
    for role, value in zip(knob_roles, state.knobs):
        if role == "tone":  # what the knob does: −1 dark .. 0 flat .. +1 bright
            parts.append(f"tone {knob_to_tone(value):+.2f}")
        else:
            parts.append(f"{role} {value:.2f}")
    for s in state.sensors:
        health = "ok" if s.present else "ABSENT"
        faults = f" faults {s.faults}" if s.faults else ""
        parts.append(f"{s.name}@0x{s.address:02x} {health}{faults}")
    return " | ".join(parts)


def run_monitor(
    rig, out: TextIO, *, seconds: float | None = None, rate_hz: float = 20.0, tty: bool | None = None,
    clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Print the poller's newest state ``rate_hz`` times a second for ``seconds`` (after the
    first scan, at most 1 s) or until Ctrl-C.

    On a terminal the line is rewritten in place; otherwise one line per update. Updates are
    due at fixed times (``k / rate_hz``), so the rate holds however long a line takes to
    print. ``clock`` and ``sleep`` are the wall clock's, or a test's.
    """
    tty = out.isatty() if tty is None else tty
    interval = 1.0 / rate_hz
    rig.poller.start()
    first_by = clock() + 1.0  # let the first scan finish before showing health
    while rig.poller.latest.raw is None and clock() < first_by:
        sleep(0.01)
    lines = 0
    due = clock()
    t_end = None if seconds is None else due + seconds  # ``seconds`` of readings
    # Half an interval of slack at the end: the update due at exactly ``t_end`` is the next
    # window's, whatever the rounding of the sums (``seconds · rate_hz`` lines on time).
    try:
        while t_end is None or clock() < t_end - 0.5 * interval:
            line = format_state(rig.poller.latest, rig.knob_roles)
            if tty:
                out.write("\r\x1b[K" + line)
            else:
                out.write(line + "\n")
            out.flush()
            lines += 1
            due += interval
            wait = due - clock()
            if wait > 0:
                sleep(wait)
            else:
                due = clock()  # fell behind (a stalled terminal): carry on from now
    except KeyboardInterrupt:
        pass
    finally:
        if tty:
            out.write("\n")
        rig.poller.stop()
    return lines


class Collector:
    """Gathers raw readings published by the poller (its thread) for the calibration (main thread)."""

    def __init__(self):
        self.active = False
        self.samples: list = []

    def __call__(self, state: ControlState) -> None:
        if self.active and state.raw is not None:
            self.samples.append(state.raw)  # list.append is atomic

    def take(self) -> list:
        self.active = False
        samples, self.samples = self.samples, []
        return samples


def run_calibration(
    rig,
    collector: Collector,
    session: CalibrationSession,
    out: TextIO,
    *,
    wait: Callable[[str], None],
    on_step: Callable[[str], None] | None = None,
    max_attempts: int = 3,
) -> Calibration:
    """Walk the player through ``session``'s steps, collecting readings between two ``wait``s.

    ``wait(message)`` returns when the player is ready (Enter, or a timer for scripted runs).
    ``on_step(name)`` is told which step is collecting (the emulated player acts it out).

    Raises:
        ControlsError: a step failed ``max_attempts`` times (the message says why).
    """
    roles = rig.knob_roles
    total = len(session.steps)
    rig.poller.start()
    try:
        while session.step is not None:
            step = session.step
            number = session.steps.index(step) + 1
            for attempt in range(1, max_attempts + 1):
                out.write(f"\nStep {number}/{total}: {step.prompt}\n")
                wait("Press Enter, then do it; press Enter again when you are done.")
                if on_step is not None:
                    on_step(step.name)
                collector.take()
                collector.active = True
                wait("")
                for raw in collector.take():
                    value = raw.pressure_hpa if raw.pressure_hpa is not None else raw.pressure
                    session.add(ribbon=raw.pitch, pressure=value, knobs=dict(zip(roles, raw.knobs)))
                if on_step is not None:
                    on_step("idle")
                try:
                    out.write("  ok: " + session.finish_step() + "\n")
                    break
                except ControlsError as err:
                    out.write(f"  not accepted: {err}\n")
                    if attempt == max_attempts:
                        raise ControlsError(f"calibration step '{step.name}' failed {max_attempts} times: {err}") from err
                    out.write("  Let's try that step again.\n")
    finally:
        rig.poller.stop()
    return session.result()


def session_for(cfg, previous: Calibration | None) -> CalibrationSession:
    """The calibration steps the configured build needs."""
    c = cfg.controls
    roles = tuple(r for r in KNOB_ROLES if getattr(c, f"{r}_channel") >= 0)
    return CalibrationSession(
        ribbon=c.pitch_source == "ribbon",
        pressure=c.pressure_source != "none",
        knobs=roles,
        previous=previous,
        pressure_full_scale=BREATH_RANGE_HPA if c.pressure_source == "mprls" else None,
    )


class EmulatedPlayer:
    """An emulated build whose 'player' acts out whatever calibration step is collecting.

    ``bus`` carries the configured chips; call :meth:`act` with a step name (``release``,
    ``ribbon``, ``pressure``, ``knobs``, or ``idle``). With ``gesture=True`` it plays a phrase by
    itself instead (for ``monitor --emulate``).
    """

    def __init__(self, cfg, clock, *, gesture: bool = False):
        c = cfg.controls
        self.clock = clock
        self.supply_v = c.supply_v
        self.bus = EmulatedBus(clock)
        adc_cls = EmulatedADS1015 if c.adc_type == "ads1015" else EmulatedADS1115
        self.adc = self.bus.attach(c.adc_address, adc_cls(clock, supply_v=c.supply_v))
        self.cfg = cfg
        self.keys = self.mprls = None
        if c.pitch_source == "keys":
            self.keys = self.bus.attach(c.keys_address, EmulatedMPR121(clock))
        if c.pressure_source == "mprls":
            self.mprls = self.bus.attach(c.mprls_address, EmulatedMPRLS(clock, pressure_hpa=1013.25))
        self._t0 = clock.now()
        self.act("gesture" if gesture else "idle")

    #: The gesture: a scale on the ribbon (semitones above the ribbon's low end), one note per
    #: NOTE_S with a short slide between, played legato after REST_S of rest (for auto-zero).
    GESTURE_SEMITONES = (0, 2, 4, 5, 7, 9, 11, 12, 11, 9, 7, 5, 4, 2)
    NOTE_S = 1.5
    SLIDE_S = 0.03
    REST_S = 1.0

    def _gesture_ribbon(self, vdd: float, since):
        """Ribbon voltage playing :attr:`GESTURE_SEMITONES` with the default calibration."""
        span = self.cfg.controls.ribbon_range_semitones
        notes = [0.05 + 0.9 * s / span for s in self.GESTURE_SEMITONES]  # Calibration.default ends

        def ribbon(t: float) -> float:
            x = max(0.0, since(t) - self.REST_S)
            i = int(x / self.NOTE_S)
            frac = min(1.0, (x - i * self.NOTE_S) / self.SLIDE_S)
            a, b = notes[(i - 1) % len(notes)] if i else notes[0], notes[i % len(notes)]
            return vdd * (a + (b - a) * frac)

        return ribbon

    def _gesture_pressure(self, vdd: float, since):
        """FSR voltage: rest, then a legato line swelling between 24 % and 40 % of the supply."""

        def press(t: float) -> float:
            x = since(t) - self.REST_S
            if x < 0.0:
                return 0.0
            return vdd * min(1.0, x / 0.05) * (0.32 + 0.08 * math.sin(2 * math.pi * x / (2 * self.NOTE_S)))

        return press

    def gesture_f0_hz(self) -> list[float]:
        """The pitches the gesture plays, Hz (what a test should hear)."""
        c = self.cfg.controls
        return [c.ribbon_base_hz * 2 ** (s / 12) for s in self.GESTURE_SEMITONES]

    def _knob_channels(self):
        c = self.cfg.controls
        return [ch for ch in (getattr(c, f"{r}_channel") for r in KNOB_ROLES) if ch >= 0]

    def act(self, step: str) -> None:
        c, vdd, t0 = self.cfg.controls, self.supply_v, self.clock.now()

        def since(t: float) -> float:
            return t - t0

        ribbon = lambda t: 0.0  # noqa: E731 - untouched: wiper pulled to 0 V
        press = lambda t: 0.002 * vdd  # noqa: E731
        breath = 1013.25
        knob = lambda t: 0.5 * vdd  # noqa: E731
        if step == "ribbon":
            ribbon = lambda t: vdd * (0.1 + 0.85 * min(1.0, since(t) / 0.8))  # noqa: E731
        elif step == "pressure":
            press = lambda t: vdd * (0.1 + 0.6 * abs(math.sin(math.pi * since(t) / 0.4)))  # noqa: E731
            breath = lambda t: 1013.25 + 45.0 * abs(math.sin(math.pi * since(t) / 0.4))  # noqa: E731
        elif step == "knobs":
            knob = lambda t: vdd * min(1.0, 1.02 * (1.0 - abs((since(t) / 0.8) % 2.0 - 1.0)))  # noqa: E731
        elif step == "gesture":
            ribbon, press = self._gesture_ribbon(vdd, since), self._gesture_pressure(vdd, since)
            knob = lambda t: 0.9 * vdd  # noqa: E731 - volume near the top; reverb knob see below
        if c.pitch_source == "ribbon":
            self.adc.set_input(c.pitch_channel, ribbon)
        if c.pressure_source == "adc":
            self.adc.set_input(c.pressure_channel, press)
        for ch in self._knob_channels():
            self.adc.set_input(ch, knob)
        if step == "gesture" and c.reverb_channel >= 0:
            self.adc.set_input(c.reverb_channel, 0.3 * vdd)
        if step == "gesture" and c.tone_channel >= 0:
            self.adc.set_input(c.tone_channel, 0.5 * vdd)  # centre: flat
        if self.mprls is not None:
            self.mprls.pressure_hpa = breath
        if self.keys is not None:
            self.keys.touches = (lambda t: 1 << (int(t / 2.5) % 12)) if step == "gesture" else 0


def calibrate_command(cfg, out: TextIO, *, emulate: bool, step_seconds: float | None, path=None,
                      input_fn: Callable[[str], str] = input) -> int:
    """The ``calibrate`` command: guided steps, then an atomic save to the state directory.

    ``path`` (``--out``) saves elsewhere; its directory must exist (checked before the first
    step, so nobody plays through the steps for nothing), and the closing message says which
    file the daemon reads. Without ``step_seconds`` each step waits for Enter through
    ``input_fn``: the caller makes sure there is a terminal.

    Raises:
        ControlsError: a step failed, input ended (EOF), or the file cannot be saved.
    """
    from pathlib import Path

    from .bus import SYSTEM_CLOCK
    from .rig import build_rig, load_calibration

    daemon_path = calibration_mod.default_path()
    if path is not None and not Path(path).parent.is_dir():
        raise ControlsError(f"{path}: cannot save the calibration there: directory {Path(path).parent} does not exist")
    previous, _ = load_calibration(cfg, path)
    collector = Collector()
    player = EmulatedPlayer(cfg, SYSTEM_CLOCK) if emulate else None
    rig = build_rig(cfg, bus=player.bus if player else None, calibration=previous, on_publish=collector)
    if step_seconds is not None:
        def wait(message: str) -> None:
            time.sleep(step_seconds if not message else 0.05)
    else:
        def wait(message: str) -> None:
            try:
                input_fn(f"  {message} " if message else "")
            except EOFError:
                raise ControlsError("calibrate: input ended before the last step; nothing saved") from None

    out.write("Calibrating the controls. Follow each step; nothing is saved until the end.\n")
    try:
        calibration = run_calibration(rig, collector, session_for(cfg, previous), out, wait=wait,
                                      on_step=player.act if player else None)
    finally:
        rig.close()
    saved = calibration_mod.save(calibration, path)
    if _same_path(saved, daemon_path):
        out.write(f"\nSaved {saved}. The daemon uses it on its next start or reload "
                  "(sudo systemctl reload ddsp-device).\n")
    else:
        out.write(f"\nSaved {saved}. The daemon reads {daemon_path}, not this file: copy it there "
                  "to use it, then reload the daemon (sudo systemctl reload ddsp-device).\n")
    return 0


def _same_path(a, b) -> bool:
    from pathlib import Path

    try:
        return Path(a).resolve() == Path(b).resolve()
    except OSError:
        return False


def monitor_command(cfg, out: TextIO, *, emulate: bool, seconds: float | None, rate_hz: float) -> int:
    """The ``monitor`` command."""
    from .bus import SYSTEM_CLOCK
    from .rig import build_rig

    player = EmulatedPlayer(cfg, SYSTEM_CLOCK, gesture=True) if emulate else None
    rig = build_rig(cfg, bus=player.bus if player else None)
    if not rig.calibrated:
        out.write("note: no calibration saved yet; using defaults (run `ddsp-device calibrate`)\n")
    with rig:
        run_monitor(rig, out, seconds=seconds, rate_hz=rate_hz)
    return 0


__all__ = ["run_monitor", "run_calibration", "calibrate_command", "monitor_command", "format_state", "note_name"]
