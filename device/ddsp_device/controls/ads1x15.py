"""TI ADS1115 (16-bit, ≤ 860 SPS) and ADS1015 (12-bit, ≤ 3300 SPS) ADCs, single-shot.

Register map (datasheet §8.6): the address pointer selects the conversion register (0x00) or the
config register (0x01); both are 16-bit big-endian. One conversion: write the config register
with OS = 1, the input (MUX), the range (PGA) and the rate (DR); the OS bit reads 0 while
converting and 1 when done, after about ``1 / data_rate`` (the oscillator is within ±10 %); then
the conversion register holds the result. Until then it still holds the *previous* result, so
switching the input and reading at once gives the old channel's value — :meth:`ADS1x15.read_pipelined`
uses exactly that to read one channel while the next converts.

Range: the sensors here are voltage dividers across the supply (a soft-pot ribbon, an FSR, knobs),
so what matters is the fraction of VDD. With a 3.3 V supply the ±4.096 V range (PGA = 001) is
the smallest that covers 0..VDD: 3.3 V reads 26 400 counts on the ADS1115 (1 650 on the ADS1015),
and :meth:`ADS1x15.fraction` divides by VDD, not by full scale. With a 5 V supply use ±6.144 V.

Bus faults propagate as the kernel's ``OSError``; a conversion that never finishes raises
:class:`~ddsp_device.errors.SensorError` naming the chip, address and register.
"""

from __future__ import annotations

from ..errors import SensorError
from .bus import SYSTEM_CLOCK, Clock, I2CBus

# Pointer register values (datasheet: P[1:0]).
REG_CONVERSION = 0x00
REG_CONFIG = 0x01
REG_LO_THRESH = 0x02
REG_HI_THRESH = 0x03

# Config register fields.
CONFIG_OS = 0x8000  # write 1: start a single conversion; read 0: converting, 1: idle
CONFIG_MUX_SHIFT = 12  # MUX[2:0]; 100..111 = AINx vs GND
CONFIG_MUX_MASK = 0x7000
CONFIG_PGA_SHIFT = 9  # PGA[2:0]
CONFIG_PGA_MASK = 0x0E00
CONFIG_MODE = 0x0100  # 1: single-shot / power-down, 0: continuous
CONFIG_DR_SHIFT = 5  # DR[2:0]
CONFIG_DR_MASK = 0x00E0
CONFIG_COMP_QUE_DISABLE = 0x0003  # comparator off, ALERT/RDY high-impedance
CONFIG_RESET = 0x8583  # power-on value

#: MUX code of single-ended input AIN0..AIN3 (vs GND).
MUX_SINGLE_ENDED = (0b100, 0b101, 0b110, 0b111)
#: Full-scale range (± volts) by PGA code; codes 101..111 are all ±0.256 V.
PGA_FSR_V = (6.144, 4.096, 2.048, 1.024, 0.512, 0.256, 0.256, 0.256)
CHANNELS = (0, 1, 2, 3)
#: Late pipelined reads in a row after which :meth:`ADS1x15.read_pipelined` stops pipelining.
LATE_RUN_LIMIT = 8


def _format_choices(values) -> str:
    return ", ".join(f"{v:g}" for v in values)


class ADS1x15:
    """Common part of :class:`ADS1115` and :class:`ADS1015`.

    Construction does no I/O; :meth:`begin` checks that the chip answers.

    Args:
        bus: an :class:`~ddsp_device.controls.bus.I2CBus` (``smbus2.SMBus`` or the emulated bus).
        address: 0x48 (ADDR to GND), 0x49 (VDD), 0x4A (SDA) or 0x4B (SCL).
        data_rate: samples per second, one of :attr:`DATA_RATES` (default: the fastest).
        full_scale_v: PGA range in volts, one of 6.144, 4.096, 2.048, 1.024, 0.512, 0.256.
        supply_v: VDD, the top of the sensors' dividers (for :meth:`fraction`).
        clock: where to sleep and read the time (tests pass a fake clock).
        timeout_s: how long after starting a conversion to give up waiting for OS = 1
            (default ``2 / data_rate + 5 ms``).
    """

    name = "ADS1x15"
    bits = 16
    #: DR code → samples per second.
    DATA_RATES: tuple[int, ...] = ()

    def __init__(
        self,
        bus: I2CBus,
        address: int = 0x48,
        *,
        data_rate: int | None = None,
        full_scale_v: float = 4.096,
        supply_v: float = 3.3,
        clock: Clock | None = None,
        timeout_s: float | None = None,
    ):
        self.bus = bus
        self.address = address
        self.clock = clock or SYSTEM_CLOCK
        self.data_rate = max(self.DATA_RATES) if data_rate is None else data_rate
        self.full_scale_v = full_scale_v
        if not supply_v > 0.0:
            raise ValueError(f"supply_v must be > 0 V, got {supply_v}")
        self.supply_v = float(supply_v)
        self._timeout_s = timeout_s
        self._pending_channel: int | None = None  # started and its result not yet read
        self._in_flight = False  # started and not yet seen finished (OS = 1)
        self._started_at = 0.0
        self._late_run = 0
        #: Pipelined reads thrown away because the next conversion may already have finished.
        self.late_reads = 0
        #: Whether :meth:`read_pipelined` overlaps reads with conversions (off after a run of late reads).
        self.pipelining = True

    def __repr__(self) -> str:
        return f"{self.name}(address=0x{self.address:02x}, data_rate={self.data_rate})"

    # -- settings -------------------------------------------------------------------------------

    @property
    def data_rate(self) -> int:
        """Samples per second."""
        return self._data_rate

    @data_rate.setter
    def data_rate(self, value: int) -> None:
        if value not in self.DATA_RATES:
            raise ValueError(
                f"{self.name} data_rate must be one of {_format_choices(sorted(set(self.DATA_RATES)))} SPS, "
                f"got {value!r}"
            )
        self._data_rate = int(value)
        self._dr_code = self.DATA_RATES.index(value)

    @property
    def full_scale_v(self) -> float:
        """PGA full-scale range, ± volts."""
        return self._full_scale_v

    @full_scale_v.setter
    def full_scale_v(self, value: float) -> None:
        choices = PGA_FSR_V[:6]
        for code, fsr in enumerate(choices):
            if value == fsr:
                self._full_scale_v = fsr
                self._pga_code = code
                return
        raise ValueError(
            f"{self.name} full_scale_v must be one of {_format_choices(choices)} V, got {value!r}"
        )

    @property
    def conversion_time_s(self) -> float:
        """Nominal time of one conversion, ``1 / data_rate`` (the chip may take up to 10 % longer)."""
        return 1.0 / self._data_rate

    @property
    def timeout_s(self) -> float:
        """Give up waiting for a conversion this long after starting it."""
        if self._timeout_s is not None:
            return self._timeout_s
        return 2.0 * self.conversion_time_s + 0.005

    @property
    def lsb_v(self) -> float:
        """Volts per count of :meth:`read_conversion`."""
        return self._full_scale_v / (1 << (self.bits - 1))

    # -- registers ------------------------------------------------------------------------------

    def _read_register(self, register: int) -> int:
        msb, lsb = self.bus.read_i2c_block_data(self.address, register, 2)
        return (msb << 8) | lsb

    def _write_register(self, register: int, value: int) -> None:
        self.bus.write_i2c_block_data(self.address, register, [(value >> 8) & 0xFF, value & 0xFF])

    def _error(self, register: int, what: str) -> SensorError:
        return SensorError(f"{self.name} at 0x{self.address:02x}: {what} (register 0x{register:02x})")

    # -- conversions ----------------------------------------------------------------------------

    def begin(self) -> None:
        """Check that the chip answers (reads the config register); forget any conversion in flight."""
        self._pending_channel = None
        self._in_flight = False
        self._late_run = 0
        self._read_register(REG_CONFIG)

    def config_for(self, channel: int) -> int:
        """The config word that starts a single-shot conversion of single-ended ``channel``."""
        if channel not in CHANNELS:
            raise ValueError(f"{self.name} channel must be one of 0, 1, 2, 3, got {channel!r}")
        return (
            CONFIG_OS
            | (MUX_SINGLE_ENDED[channel] << CONFIG_MUX_SHIFT)
            | (self._pga_code << CONFIG_PGA_SHIFT)
            | CONFIG_MODE
            | (self._dr_code << CONFIG_DR_SHIFT)
            | CONFIG_COMP_QUE_DISABLE
        )

    def start_conversion(self, channel: int) -> None:
        """Start a single-shot conversion of ``channel`` (0..3, single-ended).

        If a conversion started earlier has not been seen to finish, wait for it first: the chip
        ignores OS = 1 while converting, and the next result would belong to the old channel.
        """
        config = self.config_for(channel)
        if self._in_flight:
            self.wait_for_conversion()
        self._pending_channel = None
        self._write_register(REG_CONFIG, config)
        self._started_at = self.clock.now()
        self._in_flight = True
        self._pending_channel = channel

    def wait_for_conversion(self) -> None:
        """Sleep until the conversion started last should be done, then poll OS until it is.

        Returns at once if no conversion is in flight.

        Raises:
            SensorError: OS still 0 :attr:`timeout_s` after the start.
            OSError: a bus fault.
        """
        if not self._in_flight:
            return
        clock = self.clock
        started = self._started_at
        clock.sleep(started + self.conversion_time_s - clock.now())
        deadline = started + self.timeout_s
        poll_s = max(self.conversion_time_s / 8.0, 50e-6)
        while True:
            if self._read_register(REG_CONFIG) & CONFIG_OS:
                self._in_flight = False
                return
            if clock.now() >= deadline:
                self._pending_channel = None
                self._in_flight = False
                raise self._error(
                    REG_CONFIG,
                    f"conversion not finished {self.timeout_s * 1e3:.1f} ms after start (OS bit 0)",
                )
            clock.sleep(poll_s)

    def read_conversion(self) -> int:
        """The conversion register as signed counts (ADS1015: 12-bit, right-aligned)."""
        value = self._read_register(REG_CONVERSION)
        if value & 0x8000:
            value -= 0x10000
        return value >> (16 - self.bits)

    def read_raw(self, channel: int) -> int:
        """One single-shot conversion of ``channel``: start, wait (with timeout), read; counts."""
        self.start_conversion(channel)
        self.wait_for_conversion()
        self._pending_channel = None
        return self.read_conversion()

    def read(self, channel: int) -> tuple[int, float]:
        """``(counts, fraction of supply 0..1)`` of one conversion of ``channel``."""
        counts = self.read_raw(channel)
        return counts, self.fraction(counts)

    def read_pipelined(self, channel: int, next_channel: int) -> int:
        """Read ``channel`` and leave ``next_channel`` converting; counts.

        If the conversion in flight is ``channel`` (started by the previous call), wait for it,
        start ``next_channel``, then read the conversion register while the new conversion runs:
        it still holds ``channel``'s result, so reading overlaps the next conversion and a scan
        costs about one conversion time plus two short transactions per channel.

        If this thread was held up so long between starting ``next_channel`` and reading that the
        new conversion may already be done (90 % of the nominal time: the oscillator's
        tolerance), the value could belong to ``next_channel``: it is thrown away
        (:attr:`late_reads` counts it) and ``channel`` is read again the slow way. After
        :data:`LATE_RUN_LIMIT` late reads in a row (a bus too slow for the data rate)
        :attr:`pipelining` turns off and every call is a plain :meth:`read_raw`.
        """
        if not self.pipelining:
            return self.read_raw(channel)
        if self._pending_channel != channel:
            self.start_conversion(channel)
        self.wait_for_conversion()
        clock = self.clock
        before = clock.now()
        self.start_conversion(next_channel)
        try:
            counts = self.read_conversion()
        except BaseException:
            self._pending_channel = None
            raise
        if clock.now() - before < 0.9 * self.conversion_time_s:
            self._late_run = 0
            return counts
        self.late_reads += 1
        self._late_run += 1
        if self._late_run >= LATE_RUN_LIMIT:
            self.pipelining = False
        return self.read_raw(channel)

    def fraction(self, counts: int) -> float:
        """Counts → fraction of the supply, clamped to 0..1 (where a divider across VDD sits)."""
        f = counts * self.lsb_v / self.supply_v
        return 0.0 if f < 0.0 else 1.0 if f > 1.0 else f

    def volts(self, counts: int) -> float:
        """Counts → volts."""
        return counts * self.lsb_v


class ADS1115(ADS1x15):
    """16-bit, 8..860 SPS (860 SPS: 1.16 ms per conversion)."""

    name = "ADS1115"
    bits = 16
    DATA_RATES = (8, 16, 32, 64, 128, 250, 475, 860)


class ADS1015(ADS1x15):
    """12-bit (left-justified in the 16-bit register), 128..3300 SPS (3300 SPS: 0.30 ms)."""

    name = "ADS1015"
    bits = 12
    DATA_RATES = (128, 250, 490, 920, 1600, 2400, 3300, 3300)
