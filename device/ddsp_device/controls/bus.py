"""The I2C bus as the sensor drivers see it, and the clock they wait on.

Drivers take a ``bus`` object and an address (Adafruit's convention) and call only the methods of
:class:`I2CBus`, a subset of ``smbus2.SMBus``; tests pass
:class:`~ddsp_device.controls.emulated.EmulatedBus` instead. This is the only module of the package
that imports smbus2, and only inside :func:`open_bus` and :func:`read_bytes`, never at import time.

Bus faults are not wrapped: a NACK, a stuck bus or a timeout reach the caller as the kernel's
``OSError`` (errno 121 ``EREMOTEIO``, 5 ``EIO``, 110 ``ETIMEDOUT``), exactly as smbus2 raises them.

What each call puts on the wire (S start, Sr repeated start, P stop; every byte is acknowledged):

=============================================  ===============================================
``write_byte_data(addr, reg, v)``              S addr+W reg v P
``write_i2c_block_data(addr, reg, [d0, …])``   S addr+W reg d0 … P
``read_byte_data(addr, reg)``                  S addr+W reg Sr addr+R d0 P
``read_i2c_block_data(addr, reg, n)``          S addr+W reg Sr addr+R d0 … dn-1 P
``read_byte(addr)``                            S addr+R d0 P
``i2c_rdwr(i2c_msg.read(addr, n))``            S addr+R d0 … dn-1 P  (see :func:`read_bytes`)
=============================================  ===============================================

The Honeywell MPRLS has no register address: its command ``AA 00 00`` is sent as
``write_i2c_block_data(addr, 0xAA, [0x00, 0x00])`` (the "register" byte is simply the first byte on
the wire), its status byte is ``read_byte(addr)``, and its 4-byte result needs a plain multi-byte
read, which smbus2 offers only through ``i2c_rdwr`` with an ``i2c_msg`` (:func:`read_bytes`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Protocol

from ..errors import SensorError

#: ``I2C_M_RD`` from ``<linux/i2c.h>``: the message is a read.
I2C_M_RD = 0x0001


class I2CBus(Protocol):
    """The calls of ``smbus2.SMBus`` that the drivers make (same names, same arguments)."""

    def read_byte(self, i2c_addr: int) -> int: ...

    def read_byte_data(self, i2c_addr: int, register: int) -> int: ...

    def write_byte_data(self, i2c_addr: int, register: int, value: int) -> None: ...

    def read_i2c_block_data(self, i2c_addr: int, register: int, length: int) -> list[int]: ...

    def write_i2c_block_data(self, i2c_addr: int, register: int, data: Sequence[int]) -> None: ...

    def i2c_rdwr(self, *i2c_msgs: Any) -> None: ...


class Clock(Protocol):
    """Where drivers and the poller read the time and sleep (seconds, monotonic).

    :class:`~ddsp_device.controls.emulated.FakeClock` makes tests fast and deterministic.
    """

    def now(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class MonotonicClock:
    """The real clock: ``time.monotonic`` and ``time.sleep``."""

    @staticmethod
    def now() -> float:
        return time.monotonic()

    @staticmethod
    def sleep(seconds: float) -> None:
        if seconds > 0.0:
            time.sleep(seconds)


#: The clock every driver uses unless given another.
SYSTEM_CLOCK = MonotonicClock()


def open_bus(number: int) -> I2CBus:
    """Open ``/dev/i2c-<number>`` as an ``smbus2.SMBus`` (close it with ``close()``).

    Raises:
        SensorError: smbus2 is not installed, or the bus cannot be opened (I2C not enabled in
            ``/boot/firmware/config.txt``, or no permission: the user is not in group ``i2c``).
    """
    try:
        import smbus2
    except ImportError as err:
        raise SensorError(
            f"cannot open I2C bus {number}: smbus2 is not installed (pip install 'ddsp-device[hw]')"
        ) from err
    try:
        return smbus2.SMBus(number)
    except OSError as err:
        raise SensorError(
            f"cannot open I2C bus {number} (/dev/i2c-{number}): {err.strerror or err}; "
            "is I2C enabled (dtparam=i2c_arm=on) and is the user in group i2c?"
        ) from err


class I2CMessage:
    """A stand-in for ``smbus2.i2c_msg`` (same fields) used when smbus2 is not installed.

    Only buses other than ``smbus2.SMBus`` (the emulated one) ever see it: a real bus implies
    smbus2 is installed, and then :func:`read_bytes` builds a real ``i2c_msg``.
    """

    __slots__ = ("addr", "flags", "len", "buf")

    def __init__(self, addr: int, flags: int, data: bytes | bytearray):
        self.addr = addr
        self.flags = flags
        self.len = len(data)
        self.buf = bytearray(data)

    @classmethod
    def read(cls, address: int, length: int) -> I2CMessage:
        return cls(address, I2C_M_RD, bytes(length))

    @classmethod
    def write(cls, address: int, data: Sequence[int] | bytes) -> I2CMessage:
        return cls(address, 0, bytes(data))

    def __bytes__(self) -> bytes:
        return bytes(self.buf)

    def __len__(self) -> int:
        return self.len

    def __iter__(self):
        return iter(self.buf)


def read_message(address: int, length: int) -> Any:
    """A read message for ``i2c_rdwr``: ``smbus2.i2c_msg.read`` if smbus2 is installed."""
    try:
        from smbus2 import i2c_msg
    except ImportError:
        return I2CMessage.read(address, length)
    return i2c_msg.read(address, length)


def fill_read_message(msg: Any, data: bytes) -> None:
    """Put ``data`` into a read message, as the kernel does (for buses that emulate ``i2c_rdwr``)."""
    if isinstance(msg, I2CMessage):
        msg.buf[: msg.len] = data[: msg.len].ljust(msg.len, b"\0")
        return
    import ctypes

    ctypes.memmove(msg.buf, data[: msg.len].ljust(msg.len, b"\0"), msg.len)


def read_bytes(bus: I2CBus, address: int, length: int) -> bytes:
    """A plain read of ``length`` bytes with no register byte first: S addr+R d0 … P.

    smbus2's register reads always write a register address first, which a device without
    registers (the MPRLS) would take as a command; ``i2c_rdwr`` with one read message does not.
    """
    msg = read_message(address, length)
    bus.i2c_rdwr(msg)
    return bytes(msg)
