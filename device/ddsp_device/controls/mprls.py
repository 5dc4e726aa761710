"""Honeywell MPRLS (MPR series) absolute pressure sensor at 0x18, for breath.

The chip has no registers (datasheet "I2C communication"): the command ``AA 00 00`` starts a
measurement; every read returns the status byte first, then (when asked for 4 bytes) the 24-bit
pressure count. Status bits: 6 power indication (1 = powered), 5 busy, 2 memory integrity error,
0 internal math saturation. A measurement takes about 5 ms; with no EOC pin wired the busy bit is
polled, with a timeout. Transfer function A: 10 % of 2^24 counts at ``psi_min``, 90 % at
``psi_max`` (0..25 psi for the MPRLS0025PA00001A breakout).

It reads *absolute* pressure, so whoever uses it subtracts a rest baseline taken at start.
"""

from __future__ import annotations

from ..errors import SensorError
from .bus import SYSTEM_CLOCK, Clock, I2CBus, read_bytes

CMD_OUTPUT_MEASUREMENT = 0xAA  # followed by 0x00 0x00
STATUS_POWERED = 0x40
STATUS_BUSY = 0x20
STATUS_INTEGRITY_ERROR = 0x04
STATUS_MATH_SATURATION = 0x01
OUTPUT_MIN = 0x19999A  # 10 % of 2^24
OUTPUT_MAX = 0xE66666  # 90 % of 2^24
HPA_PER_PSI = 68.947572932
MEASUREMENT_TIME_S = 0.005


class MPRLS:
    """MPRLS at ``address`` (fixed at 0x18 on the breakout).

    Args:
        bus: an :class:`~ddsp_device.controls.bus.I2CBus`.
        address: 7-bit I2C address.
        psi_min, psi_max: the part's pressure range (transfer function A).
        clock: where to sleep and read the time.
        timeout_s: give up waiting for the busy bit this long after the command.
    """

    name = "MPRLS"

    def __init__(
        self,
        bus: I2CBus,
        address: int = 0x18,
        *,
        psi_min: float = 0.0,
        psi_max: float = 25.0,
        clock: Clock | None = None,
        timeout_s: float = 0.02,
    ):
        if not psi_max > psi_min:
            raise ValueError(f"MPRLS psi_max ({psi_max}) must be greater than psi_min ({psi_min})")
        if not timeout_s > MEASUREMENT_TIME_S:
            raise ValueError(f"MPRLS timeout_s must be > {MEASUREMENT_TIME_S} s, got {timeout_s}")
        self.bus = bus
        self.address = address
        self.psi_min = float(psi_min)
        self.psi_max = float(psi_max)
        self.clock = clock or SYSTEM_CLOCK
        self.timeout_s = float(timeout_s)
        self.measurement_time_s = MEASUREMENT_TIME_S
        self._started_at: float | None = None

    def __repr__(self) -> str:
        return f"MPRLS(address=0x{self.address:02x})"

    # -- wire -----------------------------------------------------------------------------------

    def _write_command(self, command: int, arguments: tuple[int, int] = (0x00, 0x00)) -> None:
        self.bus.write_i2c_block_data(self.address, command, list(arguments))

    def _read_status(self) -> int:
        return self.bus.read_byte(self.address)

    def _read_bytes(self, length: int) -> bytes:
        return read_bytes(self.bus, self.address, length)

    def _error(self, what: str) -> SensorError:
        return SensorError(f"MPRLS at 0x{self.address:02x}: {what} (status byte)")

    def _check_status(self, status: int) -> None:
        if not status & STATUS_POWERED:
            raise self._error(f"status 0x{status:02x}: power indication bit clear")
        if status & STATUS_INTEGRITY_ERROR:
            raise self._error(f"status 0x{status:02x}: memory integrity error")
        if status & STATUS_MATH_SATURATION:
            raise self._error(f"status 0x{status:02x}: internal math saturation (pressure out of range?)")

    # -- measuring ------------------------------------------------------------------------------

    def begin(self) -> None:
        """Check that the chip answers and reports power; forget any measurement in flight."""
        self._started_at = None
        status = self._read_status()
        if not status & STATUS_POWERED:
            raise self._error(f"status 0x{status:02x}: power indication bit clear")

    def start_measurement(self) -> None:
        """Send ``AA 00 00``."""
        self._started_at = None
        self._write_command(CMD_OUTPUT_MEASUREMENT)
        self._started_at = self.clock.now()

    @property
    def measuring(self) -> bool:
        """A measurement has been started and not yet read."""
        return self._started_at is not None

    @property
    def ready_at(self) -> float:
        """Clock time at which the measurement in flight should be done (0 if none)."""
        return 0.0 if self._started_at is None else self._started_at + self.measurement_time_s

    def read_measurement(self) -> int:
        """Read status + 24-bit count of a finished measurement; check the status bits.

        Raises:
            SensorError: busy, not powered, integrity error or math saturation.
        """
        self._started_at = None
        data = self._read_bytes(4)
        status = data[0]
        if status & STATUS_BUSY:
            raise self._error(f"status 0x{status:02x}: still busy when read")
        self._check_status(status)
        return (data[1] << 16) | (data[2] << 8) | data[3]

    def poll(self) -> float | None:
        """Non-blocking step for a polling loop: hPa when a measurement is done, else None.

        Starts a measurement if none is in flight; before :attr:`ready_at` returns None without
        touching the bus; after it reads the status byte and, when not busy, the result (and
        starts the next measurement).

        Raises:
            SensorError: still busy :attr:`timeout_s` after the command, or bad status bits.
            OSError: a bus fault.
        """
        if self._started_at is None:
            self.start_measurement()
            return None
        now = self.clock.now()
        if now < self.ready_at:
            return None
        if self._read_status() & STATUS_BUSY:
            if now - self._started_at >= self.timeout_s:
                self._started_at = None
                raise self._error(f"still busy {self.timeout_s * 1e3:.0f} ms after the measurement command")
            return None
        hpa = self.counts_to_hpa(self.read_measurement())
        self.start_measurement()
        return hpa

    def read_counts(self) -> int:
        """One blocking measurement: command, wait ≈ 5 ms, poll busy (with timeout), read; counts."""
        self.start_measurement()
        started = self._started_at
        clock = self.clock
        clock.sleep(self.ready_at - clock.now())
        while self._read_status() & STATUS_BUSY:
            if clock.now() - started >= self.timeout_s:
                self._started_at = None
                raise self._error(f"still busy {self.timeout_s * 1e3:.0f} ms after the measurement command")
            clock.sleep(0.001)
        return self.read_measurement()

    def read_pressure_hpa(self) -> float:
        """One blocking measurement in hPa (absolute)."""
        return self.counts_to_hpa(self.read_counts())

    def counts_to_hpa(self, counts: int) -> float:
        """Transfer function A: ``psi = psi_min + (counts - 10 %) · (psi_max - psi_min) / 80 %``, in hPa."""
        psi = self.psi_min + (counts - OUTPUT_MIN) * (self.psi_max - self.psi_min) / (OUTPUT_MAX - OUTPUT_MIN)
        return psi * HPA_PER_PSI

    def hpa_to_counts(self, hpa: float) -> int:
        """Inverse of :meth:`counts_to_hpa` (rounded, not clamped)."""
        psi = hpa / HPA_PER_PSI
        span = OUTPUT_MAX - OUTPUT_MIN
        return round(OUTPUT_MIN + (psi - self.psi_min) * span / (self.psi_max - self.psi_min))
