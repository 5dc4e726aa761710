"""Emulated I2C bus and sensors that follow their datasheets, for tests and the soak command.

:class:`EmulatedBus` implements :class:`~ddsp_device.controls.bus.I2CBus` by turning each smbus2
call into what it puts on the wire (a write of bytes, a read of bytes) and handing those to the
device at that address, which behaves like the real chip's register map:

* :class:`EmulatedADS1115` / :class:`EmulatedADS1015`: address pointer; config register resets to
  0x8583; writing OS = 1 in single-shot mode starts a conversion that completes
  ``1 / data_rate`` later (times ``1 + rate_error``); OS reads 0 while converting; the conversion
  register keeps the previous result until then (so switching the mux and reading at once gives
  the old channel's value); the input is sampled at the middle of the conversion. Inputs are
  volts or callables of the clock time (a test can "play a gesture").
* :class:`EmulatedMPR121`: auto-incrementing register address; touch status from a settable
  12-bit mask while running; writes to 0x2B–0x7F (except ECR and GPIO) ignored unless in stop
  mode; soft reset; an over-current flag that stops the chip.
* :class:`EmulatedMPRLS`: ``AA 00 00`` starts a measurement, busy for 5 ms, then status + 24-bit
  count from a settable pressure (transfer function A).

The bus raises ``OSError(121)`` (``EREMOTEIO``, as the kernel does for a NACK) for an address with
no device or one that was :meth:`~EmulatedBus.disconnect`\\ ed, and can inject faults (errno 121, 5,
110) at a rate, from a schedule, or for the next few calls. With ``bus_hz`` set each transaction
also takes its wire time on the clock (9 bits a byte plus start/stop at that bit rate).

Everything takes a clock: the real one by default, :class:`FakeClock` for fast deterministic
tests (its ``sleep`` just advances the time).
"""

from __future__ import annotations

import errno
import math
import os
import random
import threading
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from . import ads1x15 as ads
from . import mpr121 as mpr
from . import mprls
from .bus import I2C_M_RD, SYSTEM_CLOCK, Clock, fill_read_message

Volts = float | Callable[[float], float]


class FakeClock:
    """A clock that only moves when slept on or advanced (seconds)."""

    def __init__(self, start: float = 0.0):
        self.t = float(start)
        self._lock = threading.Lock()

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        if seconds > 0.0:
            with self._lock:
                self.t += seconds

    advance = sleep


class EmulatedDevice(Protocol):
    """What a device on the emulated bus sees: bytes written, bytes read, power cycles."""

    def write(self, data: bytes) -> None: ...

    def read(self, length: int) -> bytes: ...

    def power_on_reset(self) -> None: ...


def _oserror(code: int) -> OSError:
    return OSError(code, os.strerror(code))


class EmulatedBus:
    """An I2C bus with emulated devices attached (implements the driver's ``I2CBus``).

    Args:
        clock: the clock transactions take time on (with ``bus_hz``).
        bus_hz: bit rate for wire time (e.g. 400_000); None: transactions take no time.
        fault_rate: probability that a transaction fails with an errno from ``fault_errnos``.
        fault_errnos: errnos drawn for rate faults (121 EREMOTEIO, 5 EIO, 110 ETIMEDOUT).
        fault_addresses: limit rate faults to these addresses (None: all).
        schedule: ``schedule(call_index, address) -> errno or None``, consulted for every call.
        seed: for the fault draw.
    """

    def __init__(
        self,
        clock: Clock | None = None,
        *,
        bus_hz: float | None = None,
        fault_rate: float = 0.0,
        fault_errnos: Sequence[int] = (errno.EREMOTEIO,),
        fault_addresses: Sequence[int] | None = None,
        schedule: Callable[[int, int], int | None] | None = None,
        seed: int = 0,
    ):
        self.clock = clock or SYSTEM_CLOCK
        self.bus_hz = bus_hz
        self.fault_rate = fault_rate
        self.fault_errnos = tuple(fault_errnos)
        self.fault_addresses = None if fault_addresses is None else set(fault_addresses)
        self.schedule = schedule
        self.devices: dict[int, Any] = {}
        self.calls = 0
        self.faults_injected = 0
        self.closed = False
        self._disconnected: set[int] = set()
        self._queued: list[tuple[int, int | None]] = []
        self._rng = random.Random(seed)
        self._lock = threading.RLock()

    # -- set-up and faults ----------------------------------------------------------------------

    def attach(self, address: int, device: Any) -> Any:
        """Put ``device`` at ``address``; returns it."""
        self.devices[address] = device
        return device

    def detach(self, address: int) -> None:
        self.devices.pop(address, None)

    def disconnect(self, address: int) -> None:
        """The device stops answering (a loose wire): every call to it raises ``OSError(121)``."""
        self._disconnected.add(address)

    def reconnect(self, address: int, *, power_cycle: bool = True) -> None:
        """The device answers again; with ``power_cycle`` it comes back in its power-on state."""
        self._disconnected.discard(address)
        if power_cycle and address in self.devices:
            self.devices[address].power_on_reset()

    def fail_next(self, count: int = 1, code: int = errno.EREMOTEIO, address: int | None = None) -> None:
        """The next ``count`` calls (to ``address``, or any) fail with ``code``."""
        self._queued.extend([(code, address)] * count)

    def _fault(self, index: int, address: int) -> int | None:
        for i, (code, where) in enumerate(self._queued):
            if where is None or where == address:
                del self._queued[i]
                return code
        if self.schedule is not None:
            code = self.schedule(index, address)
            if code:
                return code
        if self.fault_rate > 0.0 and (self.fault_addresses is None or address in self.fault_addresses):
            if self._rng.random() < self.fault_rate:
                return self._rng.choice(self.fault_errnos)
        return None

    def _device(self, address: int, wire_bytes: int) -> Any:
        if self.closed:
            raise _oserror(errno.EBADF)
        index = self.calls
        self.calls += 1
        code = self._fault(index, address)
        if code is not None:
            self.faults_injected += 1
        elif address not in self.devices or address in self._disconnected:
            code = errno.EREMOTEIO  # nobody acknowledges the address
        if code is not None:
            self._wire_time(1)
            raise _oserror(code)
        self._wire_time(wire_bytes)
        return self.devices[address]

    def _wire_time(self, n_bytes: int) -> None:
        if self.bus_hz:
            self.clock.sleep((9 * n_bytes + 2) / self.bus_hz)

    # -- smbus2 calls ---------------------------------------------------------------------------

    def read_byte(self, i2c_addr: int, force: bool | None = None) -> int:
        with self._lock:
            return self._device(i2c_addr, 2).read(1)[0]

    def write_byte(self, i2c_addr: int, value: int, force: bool | None = None) -> None:
        with self._lock:
            self._device(i2c_addr, 2).write(bytes([value]))

    def read_byte_data(self, i2c_addr: int, register: int, force: bool | None = None) -> int:
        with self._lock:
            dev = self._device(i2c_addr, 4)
            dev.write(bytes([register]))
            return dev.read(1)[0]

    def write_byte_data(self, i2c_addr: int, register: int, value: int, force: bool | None = None) -> None:
        with self._lock:
            self._device(i2c_addr, 3).write(bytes([register, value]))

    def read_i2c_block_data(
        self, i2c_addr: int, register: int, length: int, force: bool | None = None
    ) -> list[int]:
        if not 0 < length <= 32:
            raise ValueError("Desired block length over 32 bytes")
        with self._lock:
            dev = self._device(i2c_addr, 3 + length)
            dev.write(bytes([register]))
            return list(dev.read(length))

    def write_i2c_block_data(
        self, i2c_addr: int, register: int, data: Sequence[int], force: bool | None = None
    ) -> None:
        if len(data) > 32:
            raise ValueError("Data length cannot exceed 32 bytes")
        with self._lock:
            self._device(i2c_addr, 2 + len(data)).write(bytes([register, *data]))

    def i2c_rdwr(self, *i2c_msgs: Any) -> None:
        """Each message is a read (``flags & I2C_M_RD``) or a write to ``msg.addr``."""
        with self._lock:
            for msg in i2c_msgs:
                dev = self._device(msg.addr, 1 + msg.len)
                if msg.flags & I2C_M_RD:
                    fill_read_message(msg, dev.read(msg.len))
                else:
                    dev.write(bytes(msg))

    def close(self) -> None:
        self.closed = True

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# -- ADS1x15 ------------------------------------------------------------------------------------

# MUX code → (positive input, negative input or None for GND).
_ADS_MUX_PINS = ((0, 1), (0, 3), (1, 3), (2, 3), (0, None), (1, None), (2, None), (3, None))


class _EmulatedADS1x15:
    """ADS1x15 register map; single-shot mode only (continuous mode is not emulated)."""

    name = "ADS1x15"
    bits = 16
    DATA_RATES: tuple[int, ...] = ()

    def __init__(self, clock: Clock | None = None, *, supply_v: float = 3.3, rate_error: float = 0.0):
        self.clock = clock or SYSTEM_CLOCK
        self.supply_v = supply_v
        #: Relative error of the oscillator: conversions take ``(1 + rate_error) / data_rate``.
        self.rate_error = rate_error
        self.inputs: list[Volts] = [0.0, 0.0, 0.0, 0.0]
        #: Conversions started (for tests).
        self.conversions = 0
        self.power_on_reset()

    def power_on_reset(self) -> None:
        self.config = ads.CONFIG_RESET & ~ads.CONFIG_OS
        self.conversion = 0x0000
        self.lo_thresh = 0x8000
        self.hi_thresh = 0x7FFF
        self.pointer = ads.REG_CONVERSION
        self._done_at: float | None = None
        self._latched = (0, 0, 0.0)  # mux, pga, sample time

    def set_input(self, channel: int, volts: Volts) -> None:
        """AIN``channel`` (0..3): volts, or a callable of the clock time returning volts."""
        if channel not in ads.CHANNELS:
            raise ValueError(f"channel must be one of 0, 1, 2, 3, got {channel!r}")
        self.inputs[channel] = volts

    @property
    def converting(self) -> bool:
        self._update()
        return self._done_at is not None

    def conversion_time_s(self) -> float:
        dr = self.DATA_RATES[(self.config & ads.CONFIG_DR_MASK) >> ads.CONFIG_DR_SHIFT]
        return (1.0 + self.rate_error) / dr

    def _pin(self, pin: int | None, t: float) -> float:
        if pin is None:
            return 0.0
        v = self.inputs[pin]
        v = float(v(t)) if callable(v) else float(v)
        return min(max(v, -0.3), self.supply_v + 0.3)

    def _code(self, mux: int, pga: int, t: float) -> int:
        pos, neg = _ADS_MUX_PINS[mux]
        v = self._pin(pos, t) - self._pin(neg, t)
        full = 1 << (self.bits - 1)
        code = round(v / ads.PGA_FSR_V[pga] * full)
        code = min(max(code, -full), full - 1)
        return (code << (16 - self.bits)) & 0xFFFF

    def _update(self) -> None:
        if self._done_at is not None and self.clock.now() >= self._done_at:
            mux, pga, t = self._latched
            self.conversion = self._code(mux, pga, t)
            self._done_at = None

    def _register(self, register: int) -> int:
        if register == ads.REG_CONVERSION:
            return self.conversion
        if register == ads.REG_CONFIG:
            return self.config | (0 if self._done_at is not None else ads.CONFIG_OS)
        return self.lo_thresh if register == ads.REG_LO_THRESH else self.hi_thresh

    def _write_register(self, register: int, value: int) -> None:
        if register == ads.REG_CONFIG:
            if not value & ads.CONFIG_MODE:
                raise NotImplementedError("continuous-conversion mode (MODE = 0) is not emulated")
            self.config = value & ~ads.CONFIG_OS
            if value & ads.CONFIG_OS and self._done_at is None:
                now = self.clock.now()
                t_conv = self.conversion_time_s()
                mux = (value & ads.CONFIG_MUX_MASK) >> ads.CONFIG_MUX_SHIFT
                pga = (value & ads.CONFIG_PGA_MASK) >> ads.CONFIG_PGA_SHIFT
                self._latched = (mux, pga, now + 0.5 * t_conv)
                self._done_at = now + t_conv
                self.conversions += 1
        elif register == ads.REG_LO_THRESH:
            self.lo_thresh = value
        elif register == ads.REG_HI_THRESH:
            self.hi_thresh = value
        # The conversion register is read-only.

    def write(self, data: bytes) -> None:
        self._update()
        if not data:
            return
        self.pointer = data[0] & 0x03
        if len(data) >= 3:
            self._write_register(self.pointer, (data[1] << 8) | data[2])

    def read(self, length: int) -> bytes:
        self._update()
        word = self._register(self.pointer).to_bytes(2, "big")
        return (word * (length // 2 + 1))[:length]


class EmulatedADS1115(_EmulatedADS1x15):
    name = "ADS1115"
    bits = 16
    DATA_RATES = ads.ADS1115.DATA_RATES


class EmulatedADS1015(_EmulatedADS1x15):
    name = "ADS1015"
    bits = 12
    DATA_RATES = ads.ADS1015.DATA_RATES


# -- MPR121 -------------------------------------------------------------------------------------

_MPR121_UNTOUCHED = 700  # filtered data of an untouched electrode (10-bit)
_MPR121_TOUCHED = 600


class EmulatedMPR121:
    """MPR121 register map. Set :attr:`touches` to play: a 12-bit mask (bit n = ELEn touched)
    or a callable of the clock time returning one."""

    name = "MPR121"

    def __init__(self, clock: Clock | None = None):
        self.clock = clock or SYSTEM_CLOCK
        self.touches: int | Callable[[float], int] = 0
        self._overcurrent = False
        #: Config writes dropped because the chip was running (for tests).
        self.ignored_writes = 0
        self.power_on_reset()

    def power_on_reset(self) -> None:
        self.regs = bytearray(0x81)
        self.regs[mpr.AFE1] = mpr.AFE1_RESET
        self.regs[mpr.AFE2] = mpr.AFE2_RESET
        self.pointer = 0
        self.ovcf = False

    @property
    def running(self) -> bool:
        """ELE_EN or ELEPROX_EN non-zero; stop mode otherwise."""
        return bool(self.regs[mpr.ECR] & 0x3F)

    @property
    def enabled_mask(self) -> int:
        n = min(self.regs[mpr.ECR] & 0x0F, mpr.N_ELECTRODES)
        return (1 << n) - 1

    @property
    def overcurrent(self) -> bool:
        return self._overcurrent

    @overcurrent.setter
    def overcurrent(self, value: bool) -> None:
        """Over-current on REXT: OVCF sets and the chip drops to stop mode."""
        self._overcurrent = bool(value)
        if value:
            self.ovcf = True
            self.regs[mpr.ECR] = 0

    def _status(self) -> int:
        if not self.running or self.ovcf:
            return 0
        touches = self.touches
        if callable(touches):
            touches = int(touches(self.clock.now()))
        return touches & self.enabled_mask

    def _read_register(self, register: int) -> int:
        if register == mpr.TOUCHSTATUS_L:
            return self._status() & 0xFF
        if register == mpr.TOUCHSTATUS_H:
            return ((self._status() >> 8) & 0x0F) | (0x80 if self.ovcf else 0)
        if mpr.EFD0LB <= register < mpr.EFD0LB + 2 * mpr.N_ELECTRODES:
            electrode, high = divmod(register - mpr.EFD0LB, 2)
            value = _MPR121_TOUCHED if self._status() >> electrode & 1 else _MPR121_UNTOUCHED
            return value >> 8 if high else value & 0xFF
        if mpr.E0BV <= register < mpr.E0BV + mpr.N_ELECTRODES:
            return (_MPR121_UNTOUCHED >> 2) if self.running else 0
        return self.regs[register] if register <= mpr.SRST else 0

    def _write_register(self, register: int, value: int) -> None:
        if register == mpr.SRST:
            if value == mpr.SRST_VALUE:
                self.power_on_reset()
            return
        if register == mpr.TOUCHSTATUS_H:
            if value & 0x80 and not self._overcurrent:
                self.ovcf = False  # writing 1 to OVCF clears it
            return
        if register < mpr.MHDR or register > mpr.SRST:
            return  # status and data registers are read-only
        if register == mpr.ECR and self._overcurrent:
            self.ovcf = True  # the fault is still there: the chip stops again
            self.ignored_writes += 1
            return
        writable_running = register == mpr.ECR or mpr.GPIO_FIRST <= register <= mpr.GPIO_LAST
        if (self.running and not writable_running) or (register == mpr.ECR and self.ovcf):
            self.ignored_writes += 1
            return
        self.regs[register] = value

    def write(self, data: bytes) -> None:
        if not data:
            return
        self.pointer = data[0]
        for value in data[1:]:
            self._write_register(self.pointer, value)
            self.pointer += 1

    def read(self, length: int) -> bytes:
        out = bytes(self._read_register(self.pointer + i) for i in range(length))
        self.pointer += length
        return out


# -- MPRLS --------------------------------------------------------------------------------------


class EmulatedMPRLS:
    """Honeywell MPRLS: set :attr:`pressure_hpa` (absolute; hPa or a callable of time)."""

    name = "MPRLS"

    def __init__(
        self,
        clock: Clock | None = None,
        *,
        pressure_hpa: Volts = 1013.25,
        psi_min: float = 0.0,
        psi_max: float = 25.0,
        measurement_time_s: float = mprls.MEASUREMENT_TIME_S,
    ):
        self.clock = clock or SYSTEM_CLOCK
        self.pressure_hpa = pressure_hpa
        self.psi_min, self.psi_max = psi_min, psi_max
        self.measurement_time_s = measurement_time_s
        self.powered = True
        self.integrity_error = False
        #: Commands other than ``AA 00 00`` (ignored; for tests).
        self.unknown_commands = 0
        self.measurements = 0
        self.power_on_reset()

    def power_on_reset(self) -> None:
        self.count = 0
        self.saturated = False
        self._done_at: float | None = None

    @property
    def busy(self) -> bool:
        self._update()
        return self._done_at is not None

    def counts_for(self, hpa: float) -> int:
        psi = hpa / mprls.HPA_PER_PSI
        span = mprls.OUTPUT_MAX - mprls.OUTPUT_MIN
        return round(mprls.OUTPUT_MIN + (psi - self.psi_min) * span / (self.psi_max - self.psi_min))

    def _update(self) -> None:
        if self._done_at is not None and self.clock.now() >= self._done_at:
            p = self.pressure_hpa
            hpa = float(p(self._done_at)) if callable(p) else float(p)
            count = self.counts_for(hpa)
            self.saturated = not 0 <= count < 1 << 24
            self.count = min(max(count, 0), (1 << 24) - 1)
            self._done_at = None

    def write(self, data: bytes) -> None:
        self._update()
        if bytes(data) == bytes([mprls.CMD_OUTPUT_MEASUREMENT, 0x00, 0x00]):
            if self._done_at is None:
                self._done_at = self.clock.now() + self.measurement_time_s
                self.measurements += 1
        else:
            self.unknown_commands += 1

    def read(self, length: int) -> bytes:
        self._update()
        status = (
            (mprls.STATUS_POWERED if self.powered else 0)
            | (mprls.STATUS_BUSY if self._done_at is not None else 0)
            | (mprls.STATUS_INTEGRITY_ERROR if self.integrity_error else 0)
            | (mprls.STATUS_MATH_SATURATION if self.saturated else 0)
        )
        c = self.count
        data = bytes([status, (c >> 16) & 0xFF, (c >> 8) & 0xFF, c & 0xFF])
        return data[:length].ljust(length, b"\0")  # (no temperature bytes)


# -- a demonstration rig ------------------------------------------------------------------------


def demo_bus(clock: Clock | None = None, *, bus_hz: float | None = 400_000) -> EmulatedBus:
    """A bus with the default build's sensors playing by themselves (for soak runs and demos).

    ADS1015 at 0x48: AIN0 a ribbon sliding slowly up and down, AIN1 an FSR pressed in 2 s
    phrases with 0.5 s rests, AIN2/AIN3 knobs at mid-travel; MPR121 at 0x5A walking up a scale;
    MPRLS at 0x18 at sea-level pressure plus breath in the same phrases. Supply 3.3 V.
    """
    clock = clock or SYSTEM_CLOCK
    bus = EmulatedBus(clock, bus_hz=bus_hz)
    vdd = 3.3

    def phrase(t: float) -> float:  # 0..1 envelope: 2 s notes, 0.5 s rests, 50 ms attack/release
        x = t % 2.5
        if x >= 2.0:
            return 0.0
        return min(1.0, x / 0.05, (2.0 - x) / 0.05)

    adc = bus.attach(0x48, EmulatedADS1015(clock, supply_v=vdd))
    adc.set_input(0, lambda t: vdd * (0.5 + 0.4 * math.sin(2 * math.pi * 0.1 * t)))
    adc.set_input(1, lambda t: vdd * 0.8 * phrase(t))
    adc.set_input(2, vdd / 2)
    adc.set_input(3, vdd / 2)
    keys = bus.attach(0x5A, EmulatedMPR121(clock))
    keys.touches = lambda t: 1 << (int(t / 2.5) % 12)  # one key per phrase, walking up
    bus.attach(0x18, EmulatedMPRLS(clock, pressure_hpa=lambda t: 1013.25 + 40.0 * phrase(t)))
    return bus
