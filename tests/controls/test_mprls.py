"""Honeywell MPRLS: the emulated sensor against the datasheet, the driver against it, raw reads."""

import builtins
import errno

import pytest

from ddsp_device.controls import bus as bus_mod
from ddsp_device.controls import mprls
from ddsp_device.controls.emulated import EmulatedBus, EmulatedMPRLS, FakeClock
from ddsp_device.controls.mprls import MPRLS
from ddsp_device.errors import SensorError

ADDR = 0x18


@pytest.fixture
def rig():
    clock = FakeClock()
    bus = EmulatedBus(clock)
    chip = bus.attach(ADDR, EmulatedMPRLS(clock, pressure_hpa=1013.25))
    return clock, bus, chip, MPRLS(bus, ADDR, clock=clock)


def test_busy_for_5_ms_after_the_command_then_status_and_count(rig):
    clock, bus, chip, _ = rig
    bus.write_i2c_block_data(ADDR, 0xAA, [0x00, 0x00])
    assert bus.read_byte(ADDR) == 0x60  # powered + busy
    clock.advance(0.0049)
    assert bus.read_byte(ADDR) & mprls.STATUS_BUSY
    clock.advance(0.0002)
    data = bus_mod.read_bytes(bus, ADDR, 4)
    assert data[0] == 0x40
    count = int.from_bytes(data[1:], "big")
    expected = mprls.OUTPUT_MIN + 1013.25 / mprls.HPA_PER_PSI / 25 * (mprls.OUTPUT_MAX - mprls.OUTPUT_MIN)
    assert count == round(expected)


def test_transfer_function_end_points(rig):
    drv = rig[3]
    assert drv.counts_to_hpa(mprls.OUTPUT_MIN) == pytest.approx(0.0)
    assert drv.counts_to_hpa(mprls.OUTPUT_MAX) == pytest.approx(25 * 68.947572932)
    assert drv.counts_to_hpa(drv.hpa_to_counts(1050.0)) == pytest.approx(1050.0, abs=2e-4)


def test_blocking_read_follows_the_pressure(rig):
    clock, bus, chip, drv = rig
    drv.begin()
    assert drv.read_pressure_hpa() == pytest.approx(1013.25, abs=1e-3)
    chip.pressure_hpa = lambda t: 1013.25 + 1000.0 * t  # breath building up
    t0 = clock.now()
    hpa = drv.read_pressure_hpa()
    assert clock.now() - t0 == pytest.approx(0.005, abs=0.0015)
    assert hpa == pytest.approx(1013.25 + 1000.0 * clock.now(), abs=1.0)
    assert chip.unknown_commands == 0  # never a stray register byte


def test_poll_does_not_block(rig):
    clock, bus, chip, drv = rig
    assert drv.poll() is None and drv.measuring
    calls = bus.calls
    clock.advance(0.003)
    assert drv.poll() is None
    assert bus.calls == calls  # not due: no bus traffic
    clock.advance(0.0021)
    assert drv.poll() == pytest.approx(1013.25, abs=1e-3)
    assert drv.measuring  # the next one started
    assert chip.measurements == 2


def test_busy_too_long_raises_sensor_error_naming_the_address(rig):
    clock, bus, chip, drv = rig
    chip.measurement_time_s = 1.0
    with pytest.raises(SensorError) as info:
        drv.read_pressure_hpa()
    assert "MPRLS at 0x18" in str(info.value) and "busy" in str(info.value) and "status" in str(info.value)
    assert clock.now() <= drv.timeout_s + 0.002
    drv.poll()
    clock.advance(0.03)
    with pytest.raises(SensorError):
        drv.poll()


def test_status_bits_are_checked(rig):
    clock, bus, chip, drv = rig
    chip.integrity_error = True
    with pytest.raises(SensorError, match="integrity"):
        drv.read_pressure_hpa()
    chip.integrity_error = False
    chip.pressure_hpa = 5000.0  # beyond 25 psi
    with pytest.raises(SensorError, match="saturation"):
        drv.read_pressure_hpa()
    chip.pressure_hpa = 1000.0
    chip.powered = False
    with pytest.raises(SensorError, match="power"):
        drv.begin()


def test_bus_faults_pass_through(rig):
    _, bus, _, drv = rig
    bus.fail_next(1, errno.ETIMEDOUT)
    with pytest.raises(OSError) as info:
        drv.read_pressure_hpa()
    assert info.value.errno == errno.ETIMEDOUT and not isinstance(info.value, SensorError)


def test_constructor_checks():
    bus = EmulatedBus(FakeClock())
    with pytest.raises(ValueError, match="psi_max"):
        MPRLS(bus, psi_min=10, psi_max=5)
    with pytest.raises(ValueError, match="timeout_s"):
        MPRLS(bus, timeout_s=0.001)


def test_raw_read_uses_smbus2_messages_when_installed(rig):
    pytest.importorskip("smbus2")
    _, bus, _, _ = rig
    msg = bus_mod.read_message(ADDR, 4)
    assert type(msg).__module__.startswith("smbus2")
    bus.i2c_rdwr(msg)
    assert bytes(msg)[0] == 0x40


def test_raw_read_without_smbus2(rig, monkeypatch):
    real_import = builtins.__import__

    def no_smbus2(name, *args, **kwargs):
        if name == "smbus2":
            raise ImportError("no smbus2")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_smbus2)
    _, bus, _, _ = rig
    assert isinstance(bus_mod.read_message(ADDR, 4), bus_mod.I2CMessage)
    assert bus_mod.read_bytes(bus, ADDR, 4)[0] == 0x40
    with pytest.raises(SensorError, match="bus 3.*smbus2 is not installed"):
        bus_mod.open_bus(3)
