"""Sensor polling thread: reads the sensors on a schedule and publishes the newest controls.

The poller runs off the audio path. It reads pitch and pressure interleaved as fast as the
sensors allow and one knob every ``knob_interval`` of those reads, passes each new
:class:`RawReading` to a *mapper* (the sensor → ``f0_hz`` / loudness maths lives elsewhere), and
publishes an immutable :class:`ControlState` by assigning :attr:`SensorPoller.latest` — a single
attribute store, so the audio thread reads it without a lock.

Layouts (``pitch`` source, ``pressure`` source):

* ADC ribbon + ADC pressure (FSR or analog breath sensor), knobs on ADC channels: conversions
  are pipelined (:meth:`~ddsp_device.controls.ads1x15.ADS1x15.read_pipelined`), so each read costs
  about one conversion time plus two short transactions (:attr:`SensorPoller.nominal_rates_hz`).
* MPR121 keys + pressure (ADC or MPRLS): the "wind controller"; keys are read every
  ``keys_interval_s``, the MPRLS is started and collected without blocking (≈ 5 ms a measurement).

Faults: any ``OSError`` from a sensor (the kernel's errno 121/5/110 for a NACK, an I/O error or a
timeout, or a :class:`~ddsp_device.errors.SensorError` the driver raised) is counted and retried
at once, then with exponential back-off (``backoff_min_s`` doubling to ``backoff_max_s``), while
the other sensors keep being read. A sensor that keeps failing for ``grace_s`` is marked absent
and logged once with its name, address and error; if it carries pitch or pressure the published
loudness fades to 0 over ``fade_s`` (never a stuck loud note). An absent sensor is probed every
``backoff_max_s`` at most; when it is re-initialised and read successfully it is logged once as
back and playing resumes (fading in). A sensor missing at start is one log line and the poller
publishes silence until it answers. Counters are published in :attr:`ControlState.sensors` and
summarised in the log every ``summary_interval_s`` (which also limits a sensor that keeps coming
and going to one warning per interval).
"""

from __future__ import annotations

import errno
import logging
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ..errors import SensorError
from .ads1x15 import ADS1x15
from .bus import SYSTEM_CLOCK, Clock
from .mpr121 import MPR121
from .mprls import MPRLS

log = logging.getLogger(__name__)

#: Errnos the kernel's I2C drivers give for a NACK, an I/O error and a bus timeout.
BUS_ERRNOS = frozenset({errno.EREMOTEIO, errno.EIO, errno.ETIMEDOUT})

# Bits on the wire per transaction (9 per byte, plus start and stop), for rate estimates.
_BITS_WRITE_WORD = 9 * 4 + 2  # addr reg msb lsb
_BITS_READ_WORD = 9 * 5 + 2  # addr reg addr msb lsb
_MAX_SLEEP_S = 0.05  # the longest nap, so that stop() is answered promptly
_FADE_TICK_S = 0.001  # publish at least this often while fading
_KNOB_MAX_GAP_S = 0.05  # read a knob at least this often even when pitch and pressure are not read


@dataclass(frozen=True)
class AdcInput:
    """One single-ended input of an ADS1x15: ``adc`` channel ``channel`` (0..3)."""

    adc: ADS1x15
    channel: int


@dataclass(frozen=True, slots=True)
class RawReading:
    """What the sensors said, before any mapping.

    Attributes:
        t: clock time of this reading, seconds.
        pitch: ribbon position as a fraction of the supply, 0..1 (ADC pitch source), or None.
        keys: MPR121 touch bitmask (bit n = electrode n touched), or None without keys.
        pressure: ADC pressure sensor as a fraction of the supply, 0..1, or None.
        pressure_hpa: MPRLS *absolute* pressure in hPa (subtract the rest baseline), or None.
        knobs: one fraction of the supply 0..1 per knob, 0.0 until a knob is first read.
    """

    t: float
    pitch: float | None
    keys: int | None
    pressure: float | None
    pressure_hpa: float | None
    knobs: tuple[float, ...]


@dataclass(frozen=True, slots=True)
class SensorState:
    """One sensor chip's health: counters since start."""

    name: str  # chip, e.g. "ADS1015"
    address: int
    roles: tuple[str, ...]  # of "pitch", "pressure", "knob"
    present: bool
    faults: int  # failed operations
    retries: int  # attempts made while failing
    reconnects: int  # times it came back after being absent
    last_error: str | None


@dataclass(frozen=True, slots=True)
class ControlState:
    """The newest controls, as published to the audio thread.

    Attributes:
        f0_hz: fundamental frequency, Hz.
        loudness: 0..1, after the fade that a missing sensor triggers.
        knobs: mapped knob positions, 0..1.
        sensors: one :class:`SensorState` per chip.
        raw: the reading this was mapped from (None before the first).
        seq: increases by one per publication.
        t: clock time of publication, seconds.
    """

    f0_hz: float
    loudness: float
    knobs: tuple[float, ...]
    sensors: tuple[SensorState, ...]
    raw: RawReading | None
    seq: int
    t: float


class Mapper(Protocol):
    """Turns sensor readings into controls: ``(f0_hz, loudness 0..1, knob positions 0..1)``.

    A plain callable with the same signature as :meth:`map` is accepted too. It is called in the
    poller thread once per new reading, in time order (it may keep state: smoothing, glide).
    """

    def map(self, raw: RawReading) -> tuple[float, float, tuple[float, ...]]: ...


def describe_error(err: BaseException) -> str:
    """``errno 121: Remote I/O error`` for the kernel's errors; the message for the drivers'."""
    if isinstance(err, OSError) and not isinstance(err, SensorError) and err.errno is not None:
        return f"errno {err.errno}: {err.strerror or os.strerror(err.errno)}"
    return str(err) or type(err).__name__


class _Sensor:
    """One chip and its fault state."""

    def __init__(self, device: Any):
        self.device = device
        self.roles: list[str] = []
        self.present = False
        self.seen = False  # has ever answered
        self.fresh = False  # read successfully since it (re)appeared
        self.announced_missing = False
        self.needs_begin = True
        self.failing_since: float | None = None
        self.backoff_s = 0.0
        self.next_try = 0.0
        self.not_before = 0.0  # keys and MPRLS: when the next read is due
        self.faults = self.retries = self.reconnects = 0
        self.last_error: str | None = None
        self.faults_at_summary = 0
        self.retries_at_summary = 0
        self.reconnects_at_summary = 0
        self.lost_logged_at = float("-inf")  # when "stopped answering" was last logged
        self.quiet_episode = False  # this loss was logged at debug level (flapping)
        self.probe_channel = 0  # ADC: the channel read to prove it works

    @property
    def essential(self) -> bool:
        return "pitch" in self.roles or "pressure" in self.roles

    @property
    def label(self) -> str:
        return f"{'/'.join(self.roles)} sensor {self.device.name} at 0x{self.device.address:02x}"

    def state(self) -> SensorState:
        return SensorState(
            self.device.name,
            self.device.address,
            tuple(self.roles),
            self.present,
            self.faults,
            self.retries,
            self.reconnects,
            self.last_error,
        )


class _Op:
    """One read in the schedule."""

    __slots__ = ("sensor", "role", "index", "channel", "next_channel")

    def __init__(self, sensor: _Sensor, role: str, index: int = 0, channel: int = 0):
        self.sensor = sensor
        self.role = role  # "pitch", "pressure", "knob"
        self.index = index  # knob number
        self.channel = channel  # ADC channel
        self.next_channel = channel  # the next channel this ADC will be asked for

    def copy(self) -> _Op:
        return _Op(self.sensor, self.role, self.index, self.channel)


class SensorPoller:
    """Reads the sensors in a thread and publishes :class:`ControlState` in :attr:`latest`.

    Args:
        mapper: a :class:`Mapper` (or a callable ``raw -> (f0_hz, loudness, knobs)``).
        pitch: an ADC input (ribbon) or an :class:`~ddsp_device.controls.mpr121.MPR121` (keys).
        pressure: an ADC input (FSR / analog breath sensor) or an
            :class:`~ddsp_device.controls.mprls.MPRLS`.
        knobs: ADC inputs, one per knob.
        knob_interval: read one knob after this many pitch/pressure reads (≥ 1).
        keys_interval_s: read the MPR121 at most this often.
        grace_s: a sensor failing this long is marked absent.
        fade_s: how long the loudness takes to fade out (and back in).
        backoff_min_s, backoff_max_s: retry delays; the maximum is also the probe interval of an
            absent sensor.
        summary_interval_s: log fault counters this often when they changed.
        initial_f0_hz: published before the first reading.
        bus_hz: I2C bit rate, for :attr:`nominal_rates_hz` only.
        clock: where to sleep and read the time.
        on_publish: called with every published state, in the poller thread (monitoring, tests).

    Raises:
        ValueError: an ADC input used twice, a bad source type or a bad number.
    """

    def __init__(
        self,
        mapper: Mapper | Callable[[RawReading], tuple[float, float, tuple[float, ...]]],
        *,
        pitch: AdcInput | MPR121 | None,
        pressure: AdcInput | MPRLS | None,
        knobs: Sequence[AdcInput] = (),
        knob_interval: int = 8,
        keys_interval_s: float = 0.001,
        grace_s: float = 0.02,
        fade_s: float = 0.02,
        backoff_min_s: float = 0.001,
        backoff_max_s: float = 0.2,
        summary_interval_s: float = 60.0,
        initial_f0_hz: float = 196.0,
        bus_hz: float = 400_000.0,
        clock: Clock | None = None,
        on_publish: Callable[[ControlState], None] | None = None,
    ):
        if not isinstance(knob_interval, int) or knob_interval < 1:
            raise ValueError(f"knob_interval must be an integer ≥ 1, got {knob_interval!r}")
        for name, value in (("grace_s", grace_s), ("fade_s", fade_s), ("backoff_min_s", backoff_min_s)):
            if not value > 0.0:
                raise ValueError(f"{name} must be > 0 s, got {value!r}")
        if not backoff_max_s >= backoff_min_s:
            raise ValueError(f"backoff_max_s ({backoff_max_s}) must be ≥ backoff_min_s ({backoff_min_s})")
        self._map = mapper.map if hasattr(mapper, "map") else mapper
        self.clock = clock or SYSTEM_CLOCK
        self.knob_interval = knob_interval
        self.keys_interval_s = keys_interval_s
        self.grace_s = grace_s
        self.fade_s = fade_s
        self.backoff_min_s = backoff_min_s
        self.backoff_max_s = backoff_max_s
        self.summary_interval_s = summary_interval_s
        self.bus_hz = bus_hz
        self.on_publish = on_publish

        self._sensors: list[_Sensor] = []
        used: dict[tuple[int, int], str] = {}

        def sensor_for(device: Any, role: str) -> _Sensor:
            for s in self._sensors:
                if s.device is device:
                    break
                if s.device.bus is device.bus and s.device.address == device.address:
                    raise ValueError(
                        f"{device.name} and {s.device.name} objects both drive address "
                        f"0x{device.address:02x}: use one driver object per chip"
                    )
            else:
                s = _Sensor(device)
                self._sensors.append(s)
            if role not in s.roles:
                s.roles.append(role)
            return s

        def adc_op(inp: AdcInput, role: str, index: int = 0) -> _Op:
            if not isinstance(inp, AdcInput):
                raise ValueError(f"{role} must be an AdcInput, got {inp!r}")
            inp.adc.config_for(inp.channel)  # validates the channel
            key = (id(inp.adc), inp.channel)
            what = f"{role} {index}" if role == "knob" else role
            if key in used:
                raise ValueError(
                    f"{what} and {used[key]} both use {inp.adc.name} at 0x{inp.adc.address:02x} "
                    f"channel {inp.channel}"
                )
            used[key] = what
            sensor = sensor_for(inp.adc, role)
            if len(sensor.roles) == 1 and sensor.roles[0] == role:
                sensor.probe_channel = inp.channel
            return _Op(sensor, role, index, inp.channel)

        fast: list[_Op] = []
        if isinstance(pitch, MPR121):
            fast.append(_Op(sensor_for(pitch, "pitch"), "pitch"))
        elif pitch is not None:
            fast.append(adc_op(pitch, "pitch"))
        if isinstance(pressure, MPRLS):
            fast.append(_Op(sensor_for(pressure, "pressure"), "pressure"))
        elif pressure is not None:
            fast.append(adc_op(pressure, "pressure"))
        knob_ops = [adc_op(inp, "knob", i) for i, inp in enumerate(knobs)]
        self._sequence = self._build_sequence(fast, knob_ops, knob_interval)
        self._link_pipelines()

        self._has_keys = isinstance(pitch, MPR121)
        self._has_adc_pitch = pitch is not None and not self._has_keys
        self._pressure_kind = None if pressure is None else "hpa" if isinstance(pressure, MPRLS) else "adc"
        self._pitch: float | None = None
        self._keys: int | None = None
        self._pressure: float | None = None
        self._pressure_hpa: float | None = None
        self._knobs = [0.0] * len(knob_ops)
        self._pos = 0
        self._has_fast = bool(fast)
        self._fast_reads = 0  # pitch/pressure reads so far
        self._fast_reads_at_knob = 0
        self._knob_t = float("-inf")
        self._gain = 0.0
        self._gain_t: float | None = None
        self._mapped: tuple[float, float, tuple[float, ...]] = (float(initial_f0_hz), 0.0, tuple(self._knobs))
        self._raw: RawReading | None = None
        self._states_dirty = True
        self._states: tuple[SensorState, ...] = ()
        self._seq = 0
        self._next_summary: float | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        #: The exception that ended the thread, if one did (the poller then publishes silence).
        self.error: BaseException | None = None
        #: The newest controls. Read it; never write it.
        self.latest = ControlState(
            float(initial_f0_hz), 0.0, tuple(self._knobs), self._sensor_states(), None, 0, self.clock.now()
        )

    # -- schedule -------------------------------------------------------------------------------

    @staticmethod
    def _build_sequence(fast: list[_Op], knob_ops: list[_Op], knob_interval: int) -> list[_Op]:
        if not fast:
            return [op.copy() for op in knob_ops]
        seq: list[_Op] = []
        fi = ki = 0
        while True:
            for _ in range(knob_interval):
                seq.append(fast[fi % len(fast)].copy())
                fi += 1
            if knob_ops:
                seq.append(knob_ops[ki % len(knob_ops)].copy())
                ki += 1
            if fi % len(fast) == 0 and (not knob_ops or ki % len(knob_ops) == 0):
                return seq

    def _link_pipelines(self) -> None:
        """Tell each ADC read which channel the same chip will be asked for next."""
        seq = self._sequence
        n = len(seq)
        for i, op in enumerate(seq):
            if isinstance(op.sensor.device, ADS1x15):
                for j in range(1, n + 1):
                    other = seq[(i + j) % n]
                    if other.sensor is op.sensor:
                        op.next_channel = other.channel
                        break

    @property
    def schedule(self) -> tuple[str, ...]:
        """One scan, as role names (``pitch``, ``pressure``, ``knob0`` …), repeated forever."""
        return tuple(f"knob{op.index}" if op.role == "knob" else op.role for op in self._sequence)

    @property
    def nominal_rates_hz(self) -> dict[str, float]:
        """Estimated reads per second of each role (``pitch``, ``pressure``, ``knob0`` …).

        An ADC read costs one conversion plus a config write and an OS poll at :attr:`bus_hz`
        (the result read overlaps the next conversion) and the ADC reads of one scan follow each
        other; keys are read every ``keys_interval_s``; the MPRLS takes ≈ 5 ms a measurement;
        knobs get one read per ``knob_interval`` pitch/pressure reads. Python and scheduling
        overheads are not counted.
        """
        key_cost = _BITS_READ_WORD / self.bus_hz
        cycle = 0.0
        for op in self._sequence:
            dev = op.sensor.device
            if isinstance(dev, ADS1x15):
                cycle += dev.conversion_time_s + (_BITS_WRITE_WORD + _BITS_READ_WORD) / self.bus_hz
            elif isinstance(dev, MPR121):
                cycle += key_cost
        names = self.schedule
        rates: dict[str, float] = {}
        for name, op in dict(zip(names, self._sequence)).items():
            dev = op.sensor.device
            by_scan = names.count(name) / cycle if cycle > 0.0 else float("inf")
            if isinstance(dev, MPRLS):
                rates[name] = 1.0 / (dev.measurement_time_s + 0.00025 + (20 + 47 + 38) / self.bus_hz)
            elif isinstance(dev, MPR121):
                rates[name] = min(by_scan, 1.0 / max(self.keys_interval_s, key_cost))
            else:
                rates[name] = by_scan
        fast_total = sum(r for n, r in rates.items() if not n.startswith("knob"))
        n_knobs = len(self._knobs)
        for name in rates:
            if name.startswith("knob") and fast_total > 0.0:
                rates[name] = min(rates[name], fast_total / self.knob_interval / n_knobs)
        return rates

    @property
    def nominal_rate_hz(self) -> float:
        """The slower of pitch and pressure in :attr:`nominal_rates_hz` (the playing rate)."""
        rates = self.nominal_rates_hz
        fast = [rates[r] for r in ("pitch", "pressure") if r in rates]
        return min(fast) if fast else 0.0

    @property
    def sensors(self) -> tuple[SensorState, ...]:
        return self._sensor_states()

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> SensorPoller:
        """Start the polling thread (a daemon). Sensors are opened in the thread: never raises for them."""
        if self._thread is not None and self._thread.is_alive():
            return self
        self._stop.clear()
        self._thread = threading.Thread(target=self._thread_main, name="ddsp-sensor-poller", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 1.0) -> None:
        """Stop the thread (join with ``timeout_s``) and publish silence. Twice is harmless."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout_s)
            if thread.is_alive():
                log.warning("sensor poller did not stop within %.1f s", timeout_s)
        self._publish_silence()

    close = stop

    def __enter__(self) -> SensorPoller:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _thread_main(self) -> None:
        try:
            while not self._stop.is_set():
                self._step()
        except Exception as err:  # a bug: say so, and never leave a note sounding
            self._publish_silence()  # first: whoever sees `error` must already see silence
            log.exception("sensor poller stopped by an unexpected error; publishing silence")
            self.error = err

    def run_until(self, t_end: float) -> None:
        """Poll in the calling thread until the clock reaches ``t_end`` (tests, soak runs).

        Not while the thread runs: one poller, one polling thread.
        """
        while self.clock.now() < t_end and not self._stop.is_set():
            self._step()

    def run_for(self, duration_s: float) -> None:
        """Poll in the calling thread for ``duration_s`` of clock time."""
        self.run_until(self.clock.now() + duration_s)

    # -- one step -------------------------------------------------------------------------------

    def _step(self) -> None:
        now = self.clock.now()
        if self._next_summary is None:
            self._next_summary = now + self.summary_interval_s
        self._check_sensors(now)
        op = self._next_op(now)
        changed = False
        if op is not None:
            changed = self._execute(op, now)
        else:
            self.clock.sleep(self._sleep_s(now))
        now = self.clock.now()
        self._publish(now, changed)
        if now >= self._next_summary:
            self._log_summary()
            self._next_summary = now + self.summary_interval_s

    def _next_op(self, now: float) -> _Op | None:
        seq = self._sequence
        n = len(seq)
        for k in range(n):
            op = seq[(self._pos + k) % n]
            s = op.sensor
            if s.present and now >= s.next_try and now >= s.not_before:
                if op.role == "knob" and self._has_fast and not self._knob_due(now):
                    continue
                self._pos = (self._pos + k + 1) % n
                return op
        return None

    def _knob_due(self, now: float) -> bool:
        """One knob per ``knob_interval`` pitch/pressure reads (and at least every 50 ms)."""
        return (
            self._fast_reads - self._fast_reads_at_knob >= self.knob_interval
            or now - self._knob_t >= _KNOB_MAX_GAP_S
        )

    def _sleep_s(self, now: float) -> float:
        wake = now + _MAX_SLEEP_S
        for s in self._sensors:
            wake = min(wake, max(s.next_try, s.not_before if s.present else 0.0))
            if s.present and s.failing_since is not None:
                wake = min(wake, s.failing_since + self.grace_s)  # when it will count as absent
        if self._gain != self._gain_target():
            wake = min(wake, now + _FADE_TICK_S)
        return max(wake - now, 10e-6)

    def _execute(self, op: _Op, now: float) -> bool:
        s = op.sensor
        dev = s.device
        if s.failing_since is not None:
            s.retries += 1
            self._states_dirty = True
        try:
            if s.needs_begin:
                dev.begin()
                s.needs_begin = False
            if isinstance(dev, ADS1x15):
                value = dev.fraction(dev.read_pipelined(op.channel, op.next_channel))
                if op.role == "knob":
                    self._knobs[op.index] = value
                    self._fast_reads_at_knob = self._fast_reads
                    self._knob_t = now
                elif op.role == "pitch":
                    self._pitch = value
                else:
                    self._pressure = value
            elif isinstance(dev, MPR121):
                self._keys = dev.touched()
                # Due every keys_interval_s, without drifting by the read time.
                s.not_before = max(s.not_before + self.keys_interval_s, now)
            else:
                hpa = dev.poll()
                s.not_before = max(dev.ready_at, self.clock.now() + 0.00025)
                if hpa is None:
                    self._succeeded(s)
                    return False
                self._pressure_hpa = hpa
        except OSError as err:
            self._failed(s, err, self.clock.now())
            return False
        self._succeeded(s)
        s.fresh = True
        if op.role != "knob":
            self._fast_reads += 1
        return True

    def _succeeded(self, s: _Sensor) -> None:
        if s.failing_since is not None:
            s.failing_since = None
            s.backoff_s = 0.0
            s.next_try = 0.0
            self._states_dirty = True

    def _failed(self, s: _Sensor, err: OSError, now: float) -> None:
        s.faults += 1
        s.last_error = describe_error(err)
        self._states_dirty = True
        if isinstance(err, SensorError) or err.errno not in BUS_ERRNOS:
            s.needs_begin = True  # the chip may be in a strange state: initialise it again
        if s.failing_since is None:  # a glitch: retry at once
            s.failing_since = now
            s.backoff_s = 0.0
        else:  # then backoff_min_s, doubling up to backoff_max_s
            s.backoff_s = min(max(2.0 * s.backoff_s, self.backoff_min_s), self.backoff_max_s)
        s.next_try = now + s.backoff_s

    def _check_sensors(self, now: float) -> None:
        for s in self._sensors:
            if s.present:
                if s.failing_since is not None and now - s.failing_since >= self.grace_s:
                    s.present = False
                    s.fresh = False
                    s.needs_begin = True
                    self._states_dirty = True
                    # Once per episode; a sensor that keeps coming and going is logged once a
                    # summary interval, and the summary counts its reconnects.
                    s.quiet_episode = now - s.lost_logged_at < self.summary_interval_s
                    if not s.quiet_episode:
                        s.lost_logged_at = now
                    log.log(
                        logging.DEBUG if s.quiet_episode else logging.WARNING,
                        "%s stopped answering (%s); %s",
                        s.label,
                        s.last_error,
                        "fading to silence" if s.essential else "knobs keep their last positions",
                    )
            elif now >= s.next_try:
                self._probe(s, now)

    def _probe(self, s: _Sensor, now: float) -> None:
        """Initialise an absent sensor and read it once: it is back only if that works."""
        dev = s.device
        try:
            dev.begin()
            if isinstance(dev, ADS1x15):
                dev.read_raw(s.probe_channel)
            elif isinstance(dev, MPR121):
                dev.touched()
            elif isinstance(dev, MPRLS):
                dev.read_counts()
        except OSError as err:
            s.last_error = describe_error(err)
            if s.seen:  # went away: keep doubling the delay up to the probe interval
                s.backoff_s = min(max(2.0 * s.backoff_s, self.backoff_min_s), self.backoff_max_s)
            else:  # never seen: probe at the slow rate
                s.backoff_s = self.backoff_max_s
            s.next_try = self.clock.now() + s.backoff_s
            if not s.seen and not s.announced_missing:
                s.announced_missing = True
                self._states_dirty = True
                log.warning(
                    "%s not found at start (%s); %s until it answers",
                    s.label,
                    s.last_error,
                    "playing silence" if s.essential else "knobs stay at 0",
                )
            return
        s.needs_begin = False
        s.present = True
        s.failing_since = None
        s.backoff_s = 0.0
        s.next_try = 0.0
        self._states_dirty = True
        if s.seen:
            s.reconnects += 1
            log.log(logging.DEBUG if s.quiet_episode else logging.INFO, "%s is back", s.label)
        elif s.announced_missing:
            log.info("%s found", s.label)
        s.seen = True

    # -- publishing -----------------------------------------------------------------------------

    def _gain_target(self) -> float:
        essential = [s for s in self._sensors if s.essential]
        return 1.0 if essential and all(s.present and s.fresh for s in essential) else 0.0

    def _sensor_states(self) -> tuple[SensorState, ...]:
        if self._states_dirty:
            self._states = tuple(s.state() for s in self._sensors)
            self._states_dirty = False
        return self._states

    def _publish(self, now: float, changed: bool) -> None:
        target = self._gain_target()
        gain = self._gain
        if self._gain_t is not None and gain != target:
            step = (now - self._gain_t) / self.fade_s
            gain = min(gain + step, target) if target > gain else max(gain - step, target)
        self._gain_t = now
        dirty = self._states_dirty
        if not (changed or dirty or gain != self._gain):
            return
        self._gain = gain
        if changed:
            raw = RawReading(
                now,
                self._pitch if self._has_adc_pitch else None,
                self._keys if self._has_keys else None,
                self._pressure if self._pressure_kind == "adc" else None,
                self._pressure_hpa if self._pressure_kind == "hpa" else None,
                tuple(self._knobs),
            )
            self._raw = raw
            f0_hz, loudness, knobs = self._map(raw)
            f0_hz = float(f0_hz)
            if not 0.0 < f0_hz < float("inf"):
                f0_hz = self._mapped[0]  # keep the last good pitch
            loudness = float(loudness)
            loudness = 0.0 if not loudness > 0.0 else min(loudness, 1.0)
            self._mapped = (f0_hz, loudness, tuple(knobs))
        f0_hz, loudness, knobs = self._mapped
        self._seq += 1
        state = ControlState(f0_hz, loudness * gain, knobs, self._sensor_states(), self._raw, self._seq, now)
        self.latest = state
        if self.on_publish is not None:
            self.on_publish(state)

    def _publish_silence(self) -> None:
        self._gain = 0.0
        f0_hz, _, knobs = self._mapped
        self._seq += 1
        self.latest = ControlState(
            f0_hz, 0.0, knobs, self._sensor_states(), self._raw, self._seq, self.clock.now()
        )

    def _log_summary(self) -> None:
        parts = []
        for s in self._sensors:
            faults = s.faults - s.faults_at_summary
            retries = s.retries - s.retries_at_summary
            reconnects = s.reconnects - s.reconnects_at_summary
            if faults or retries or reconnects:
                parts.append(
                    f"{s.label}: {faults} faults, {retries} retries, {reconnects} reconnects "
                    f"(last: {s.last_error})"
                )
            s.faults_at_summary, s.retries_at_summary = s.faults, s.retries
            s.reconnects_at_summary = s.reconnects
        if parts:
            log.info("sensor faults in the last %.0f s: %s", self.summary_interval_s, "; ".join(parts))
