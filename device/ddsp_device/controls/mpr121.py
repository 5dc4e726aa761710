"""NXP MPR121 12-electrode capacitive touch controller (keys of the wind-controller layout).

Registers (datasheet §5, register names as there): touch status ``0x00``–``0x01`` (ELE0–ELE11,
bit 7 of 0x01 is OVCF, the over-current flag on REXT), filter and baseline settings
``0x2B``–``0x35``, touch/release thresholds ``0x41``–``0x58``, AFE configuration ``0x5C``/``0x5D``,
the electrode configuration register ECR ``0x5E`` and soft reset ``0x80`` (write 0x63). Every
register from 0x2B to 0x7F except ECR and the GPIO registers (0x73–0x7A) can only be written in
stop mode (ECR = 0); writes while running are ignored. Register addresses auto-increment.

Construction does no I/O; :meth:`MPR121.begin` resets and configures the chip.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import SensorError
from .bus import SYSTEM_CLOCK, Clock, I2CBus

TOUCHSTATUS_L = 0x00
TOUCHSTATUS_H = 0x01
OOR_STATUS_L = 0x02
EFD0LB = 0x04  # electrode filtered data, 2 bytes per electrode, 10 bits
E0BV = 0x1E  # baseline value, 1 byte per electrode (bits 9..2 of the baseline)
MHDR = 0x2B
NHDR = 0x2C
NCLR = 0x2D
FDLR = 0x2E
MHDF = 0x2F
NHDF = 0x30
NCLF = 0x31
FDLF = 0x32
NHDT = 0x33
NCLT = 0x34
FDLT = 0x35
E0TTH = 0x41  # ELE0 touch threshold; ELEn: E0TTH + 2n; release threshold right after
E0RTH = 0x42
DTR = 0x5B  # debounce
AFE1 = 0x5C  # filter / global CDC configuration (FFI, CDC)
AFE2 = 0x5D  # filter / global CDT configuration (CDT, SFI, ESI)
ECR = 0x5E  # electrode configuration: CL[7:6] ELEPROX_EN[5:4] ELE_EN[3:0]
GPIO_FIRST = 0x73
GPIO_LAST = 0x7A
SRST = 0x80
SRST_VALUE = 0x63

OVCF = 0x8000  # in the 16-bit touch status word
AFE1_RESET = 0x10
AFE2_RESET = 0x24  # what AFE2 reads after a reset: the chip's identity check
ECR_CL_BASELINE_5MSB = 0x80  # CL = 10: baseline tracking starts from the first 5 MSBs of the data
N_ELECTRODES = 12

# Filter settings from NXP AN3944 / Adafruit's driver.
_FILTER_SETTINGS = (
    (MHDR, 0x01),
    (NHDR, 0x01),
    (NCLR, 0x0E),
    (FDLR, 0x00),
    (MHDF, 0x01),
    (NHDF, 0x05),
    (NCLF, 0x01),
    (FDLF, 0x00),
    (NHDT, 0x00),
    (NCLT, 0x00),
    (FDLT, 0x00),
    (DTR, 0x00),
    (AFE1, 0x10),  # FFI = 6 samples, CDC = 16 µA
    (AFE2, 0x20),  # CDT = 0.5 µs, SFI = 4 samples, ESI = 1 ms
)


def _check_byte(name: str, value: int) -> int:
    if not isinstance(value, int) or not 0 <= value <= 255:
        raise ValueError(f"MPR121 {name} must be an integer 0..255, got {value!r}")
    return value


class MPR121:
    """MPR121 at ``address`` (0x5A with ADDR to GND; 0x5B VDD, 0x5C SDA, 0x5D SCL).

    Args:
        bus: an :class:`~ddsp_device.controls.bus.I2CBus`.
        address: 7-bit I2C address.
        touch_threshold, release_threshold: 0..255, applied to every electrode (touch > release).
        electrodes: how many electrodes to run, 1..12 (ELE0 .. ELEn-1).
        clock: where to sleep after the soft reset.
    """

    name = "MPR121"

    def __init__(
        self,
        bus: I2CBus,
        address: int = 0x5A,
        *,
        touch_threshold: int = 12,
        release_threshold: int = 6,
        electrodes: int = N_ELECTRODES,
        clock: Clock | None = None,
    ):
        self.bus = bus
        self.address = address
        self.clock = clock or SYSTEM_CLOCK
        self._check_thresholds(touch_threshold, release_threshold)
        self._touch_threshold = touch_threshold
        self._release_threshold = release_threshold
        if electrodes not in range(1, N_ELECTRODES + 1):
            raise ValueError(f"MPR121 electrodes must be one of 1..12, got {electrodes!r}")
        self.electrodes = electrodes

    def __repr__(self) -> str:
        return f"MPR121(address=0x{self.address:02x})"

    # -- registers ------------------------------------------------------------------------------

    def _read_register(self, register: int, length: int = 1) -> list[int]:
        return self.bus.read_i2c_block_data(self.address, register, length)

    def _write_register(self, register: int, value: int | Sequence[int]) -> None:
        if isinstance(value, int):
            self.bus.write_byte_data(self.address, register, value)
        else:
            self.bus.write_i2c_block_data(self.address, register, list(value))

    def _error(self, register: int, what: str) -> SensorError:
        return SensorError(f"MPR121 at 0x{self.address:02x}: {what} (register 0x{register:02x})")

    @property
    def ecr_run(self) -> int:
        """The ECR value that runs the configured electrodes with baseline tracking."""
        return ECR_CL_BASELINE_5MSB | self.electrodes

    # -- set-up ---------------------------------------------------------------------------------

    def begin(self) -> None:
        """Soft reset, stop mode, thresholds, filters, then run the electrodes.

        Raises:
            SensorError: AFE2 does not read 0x24 after the reset (not an MPR121).
            OSError: a bus fault.
        """
        self._write_register(SRST, SRST_VALUE)
        self.clock.sleep(0.001)
        self._write_register(ECR, 0x00)
        (afe2,) = self._read_register(AFE2)
        if afe2 != AFE2_RESET:
            raise self._error(
                AFE2, f"reads 0x{afe2:02x} after soft reset, expected 0x{AFE2_RESET:02x}: not an MPR121?"
            )
        self._write_thresholds()
        for register, value in _FILTER_SETTINGS:
            self._write_register(register, value)
        self._write_register(ECR, self.ecr_run)

    def _write_thresholds(self) -> None:
        self._write_register(E0TTH, [self._touch_threshold, self._release_threshold] * N_ELECTRODES)

    @staticmethod
    def _check_thresholds(touch: int, release: int) -> None:
        _check_byte("touch_threshold", touch)
        _check_byte("release_threshold", release)
        if not touch > release:
            raise ValueError(
                f"MPR121 touch_threshold ({touch}) must be greater than release_threshold ({release})"
            )

    def set_thresholds(self, touch: int, release: int) -> None:
        """Set every electrode's thresholds (0..255, touch > release): stop, write, run again."""
        self._check_thresholds(touch, release)
        self._touch_threshold, self._release_threshold = touch, release
        self._write_register(ECR, 0x00)
        self._write_thresholds()
        self._write_register(ECR, self.ecr_run)

    @property
    def touch_threshold(self) -> int:
        return self._touch_threshold

    @property
    def release_threshold(self) -> int:
        return self._release_threshold

    # -- reading --------------------------------------------------------------------------------

    def touched(self) -> int:
        """Bitmask of touched electrodes (bit n = ELEn, 12 bits).

        Raises:
            SensorError: OVCF is set (over-current on REXT; the chip has stopped itself).
            OSError: a bus fault.
        """
        low, high = self._read_register(TOUCHSTATUS_L, 2)
        status = (high << 8) | low
        if status & OVCF:
            raise self._error(TOUCHSTATUS_H, "over-current flag OVCF set (check REXT); chip in stop mode")
        return status & 0x0FFF

    def filtered_data(self, electrode: int) -> int:
        """Electrode ``electrode``'s filtered data (10 bits; lower when touched)."""
        if electrode not in range(N_ELECTRODES):
            raise ValueError(f"MPR121 electrode must be one of 0..11, got {electrode!r}")
        low, high = self._read_register(EFD0LB + 2 * electrode, 2)
        return ((high << 8) | low) & 0x03FF

    def baseline_data(self, electrode: int) -> int:
        """Electrode ``electrode``'s baseline (the register's 8 bits are bits 9..2)."""
        if electrode not in range(N_ELECTRODES):
            raise ValueError(f"MPR121 electrode must be one of 0..11, got {electrode!r}")
        (value,) = self._read_register(E0BV + electrode)
        return value << 2
