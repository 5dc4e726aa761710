"""MPR121: the emulated register map against the datasheet, and the driver against it."""

import errno

import pytest

from ddsp_device.controls import mpr121 as mpr
from ddsp_device.controls.emulated import EmulatedADS1115, EmulatedBus, EmulatedMPR121, FakeClock
from ddsp_device.controls.mpr121 import MPR121
from ddsp_device.errors import SensorError

ADDR = 0x5A


@pytest.fixture
def rig():
    clock = FakeClock()
    bus = EmulatedBus(clock)
    chip = bus.attach(ADDR, EmulatedMPR121(clock))
    return bus, chip, MPR121(bus, ADDR, clock=clock)


def reg(bus, register):
    return bus.read_byte_data(ADDR, register)


def test_power_on_state_is_stop_mode_with_afe_defaults(rig):
    bus, chip, _ = rig
    assert reg(bus, mpr.AFE1) == 0x10
    assert reg(bus, mpr.AFE2) == 0x24
    assert reg(bus, mpr.ECR) == 0
    assert not chip.running


def test_begin_writes_thresholds_filters_then_runs(rig):
    bus, chip, drv = rig
    drv.begin()
    thresholds = bus.read_i2c_block_data(ADDR, mpr.E0TTH, 24)
    assert thresholds == [12, 6] * 12
    assert reg(bus, mpr.MHDR) == 0x01 and reg(bus, mpr.NCLR) == 0x0E and reg(bus, mpr.NHDF) == 0x05
    assert reg(bus, mpr.AFE2) == 0x20
    assert reg(bus, mpr.ECR) == 0x80 | 12
    assert chip.running and chip.ignored_writes == 0


def test_touched_is_the_12_bit_status_of_enabled_electrodes(rig):
    bus, chip, drv = rig
    chip.touches = 0b1010_0000_0101
    assert drv.touched() == 0  # stop mode: no touch detection
    drv.begin()
    assert drv.touched() == 0b1010_0000_0101
    four = MPR121(bus, ADDR, electrodes=4)
    four.begin()
    assert four.touched() == 0b0101
    assert chip.touches & ~0xFFF == 0


def test_config_writes_while_running_are_ignored(rig):
    bus, chip, drv = rig
    drv.begin()
    bus.write_byte_data(ADDR, mpr.E0TTH, 99)
    bus.write_byte_data(ADDR, mpr.AFE1, 0x3F)
    assert reg(bus, mpr.E0TTH) == 12 and reg(bus, mpr.AFE1) == 0x10
    assert chip.ignored_writes == 2
    bus.write_byte_data(ADDR, mpr.GPIO_FIRST, 0x01)  # GPIO registers are writable while running
    assert reg(bus, mpr.GPIO_FIRST) == 0x01
    bus.write_byte_data(ADDR, mpr.ECR, 0x00)  # ECR is: stop mode
    bus.write_byte_data(ADDR, mpr.E0TTH, 99)
    assert reg(bus, mpr.E0TTH) == 99


def test_soft_reset_restores_power_on_state(rig):
    bus, chip, drv = rig
    drv.begin()
    bus.write_byte_data(ADDR, mpr.SRST, 0x63)
    assert reg(bus, mpr.ECR) == 0 and reg(bus, mpr.E0TTH) == 0 and reg(bus, mpr.AFE2) == 0x24
    bus.write_byte_data(ADDR, mpr.SRST, 0x12)  # only 0x63 resets
    assert reg(bus, mpr.AFE2) == 0x24


def test_set_thresholds_goes_through_stop_mode(rig):
    bus, chip, drv = rig
    drv.begin()
    drv.set_thresholds(40, 20)
    assert bus.read_i2c_block_data(ADDR, mpr.E0TTH, 24) == [40, 20] * 12
    assert chip.running and chip.ignored_writes == 0


def test_threshold_setters_list_allowed_values(rig):
    bus, _, drv = rig
    with pytest.raises(ValueError, match="0..255"):
        drv.set_thresholds(300, 6)
    with pytest.raises(ValueError, match="greater than"):
        drv.set_thresholds(6, 12)
    with pytest.raises(ValueError, match="1..12"):
        MPR121(bus, electrodes=13)
    with pytest.raises(ValueError, match="0..11"):
        drv.filtered_data(12)


def test_filtered_data_drops_when_touched(rig):
    _, chip, drv = rig
    drv.begin()
    untouched = drv.filtered_data(3)
    chip.touches = 1 << 3
    assert drv.filtered_data(3) < untouched
    assert drv.baseline_data(3) == pytest.approx(untouched, abs=4)


def test_something_else_at_the_address_is_not_an_mpr121():
    clock = FakeClock()
    bus = EmulatedBus(clock)
    bus.attach(ADDR, EmulatedADS1115(clock))
    with pytest.raises(SensorError) as info:
        MPR121(bus, ADDR, clock=clock).begin()
    assert "0x5a" in str(info.value) and "0x5d" in str(info.value)


def test_overcurrent_raises_and_persists_until_cleared(rig):
    bus, chip, drv = rig
    drv.begin()
    chip.overcurrent = True
    assert not chip.running
    with pytest.raises(SensorError) as info:
        drv.touched()
    assert "OVCF" in str(info.value) and "0x5a" in str(info.value) and "0x01" in str(info.value)
    drv.begin()  # the fault is still there: the chip stops itself again
    with pytest.raises(SensorError):
        drv.touched()
    chip.overcurrent = False
    drv.begin()
    chip.touches = 0b11
    assert drv.touched() == 0b11


def test_bus_faults_pass_through_and_power_cycle_needs_begin(rig):
    bus, chip, drv = rig
    drv.begin()
    chip.touches = 0b100
    bus.disconnect(ADDR)
    with pytest.raises(OSError) as info:
        drv.touched()
    assert info.value.errno == errno.EREMOTEIO and not isinstance(info.value, SensorError)
    bus.reconnect(ADDR)  # came back from a power cycle: stop mode again
    assert drv.touched() == 0
    drv.begin()
    assert drv.touched() == 0b100
