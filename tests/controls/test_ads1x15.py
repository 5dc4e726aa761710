"""ADS1115 / ADS1015: the emulated register map against the datasheet, and the driver against it."""

import errno

import pytest

from ddsp_device.controls import ads1x15 as ads
from ddsp_device.controls.ads1x15 import ADS1015, ADS1115
from ddsp_device.controls.emulated import EmulatedADS1015, EmulatedADS1115, EmulatedBus, FakeClock
from ddsp_device.errors import DdspDeviceError, SensorError

ADDR = 0x48
VDD = 3.3


def rig(kind="1115", bus_hz=None, **device_kw):
    clock = FakeClock()
    bus = EmulatedBus(clock, bus_hz=bus_hz)
    emu_cls, drv_cls = (EmulatedADS1115, ADS1115) if kind == "1115" else (EmulatedADS1015, ADS1015)
    chip = bus.attach(ADDR, emu_cls(clock, supply_v=VDD, **device_kw))
    return clock, bus, chip, drv_cls(bus, ADDR, clock=clock, supply_v=VDD)


def read_word(bus, register):
    msb, lsb = bus.read_i2c_block_data(ADDR, register, 2)
    return (msb << 8) | lsb


def write_word(bus, register, value):
    bus.write_i2c_block_data(ADDR, register, [value >> 8, value & 0xFF])


def single_shot(channel, dr_code=7, pga_code=1, os_bit=True):
    return (
        (ads.CONFIG_OS if os_bit else 0)
        | (ads.MUX_SINGLE_ENDED[channel] << ads.CONFIG_MUX_SHIFT)
        | (pga_code << ads.CONFIG_PGA_SHIFT)
        | ads.CONFIG_MODE
        | (dr_code << ads.CONFIG_DR_SHIFT)
        | ads.CONFIG_COMP_QUE_DISABLE
    )


# -- the emulated chip ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["1115", "1015"])
def test_config_register_resets_to_0x8583(kind):
    _, bus, _, _ = rig(kind)
    assert read_word(bus, ads.REG_CONFIG) == 0x8583
    assert read_word(bus, ads.REG_CONVERSION) == 0


@pytest.mark.parametrize(("kind", "dr_code"), [("1115", 7), ("1115", 0), ("1015", 6), ("1015", 0)])
def test_os_bit_reads_0_for_one_conversion_time(kind, dr_code):
    clock, bus, chip, _ = rig(kind)
    period = 1.0 / chip.DATA_RATES[dr_code]
    write_word(bus, ads.REG_CONFIG, single_shot(0, dr_code))
    assert not read_word(bus, ads.REG_CONFIG) & ads.CONFIG_OS
    clock.advance(period * 0.99)
    assert not read_word(bus, ads.REG_CONFIG) & ads.CONFIG_OS
    clock.advance(period * 0.02)
    assert read_word(bus, ads.REG_CONFIG) & ads.CONFIG_OS


def test_conversion_register_keeps_the_old_channel_until_done():
    clock, bus, chip, _ = rig("1115")
    chip.set_input(0, 1.0)
    chip.set_input(1, 2.0)
    write_word(bus, ads.REG_CONFIG, single_shot(0))
    clock.advance(0.01)
    ch0 = read_word(bus, ads.REG_CONVERSION)
    assert ch0 == round(1.0 / 4.096 * 32768)
    # Switch the mux without starting: nothing changes.
    write_word(bus, ads.REG_CONFIG, single_shot(1, os_bit=False))
    clock.advance(0.01)
    assert read_word(bus, ads.REG_CONVERSION) == ch0
    # Start channel 1 and read at once: still channel 0's value.
    write_word(bus, ads.REG_CONFIG, single_shot(1))
    assert read_word(bus, ads.REG_CONVERSION) == ch0
    clock.advance(1.0 / 860)
    assert read_word(bus, ads.REG_CONVERSION) == round(2.0 / 4.096 * 32768)


def test_os_write_while_converting_does_not_restart():
    clock, bus, chip, _ = rig("1115")
    chip.set_input(0, 1.0)
    chip.set_input(1, 2.0)
    write_word(bus, ads.REG_CONFIG, single_shot(0))
    clock.advance(0.5 / 860)
    write_word(bus, ads.REG_CONFIG, single_shot(1))  # ignored: converting
    assert chip.conversions == 1
    clock.advance(0.51 / 860)
    assert read_word(bus, ads.REG_CONFIG) & ads.CONFIG_OS
    assert read_word(bus, ads.REG_CONVERSION) == round(1.0 / 4.096 * 32768)


def test_ads1015_result_is_12_bit_left_justified():
    clock, bus, chip, drv = rig("1015")
    chip.set_input(2, 1.0)
    write_word(bus, ads.REG_CONFIG, single_shot(2, dr_code=6))
    clock.advance(0.001)
    word = read_word(bus, ads.REG_CONVERSION)
    assert word & 0x000F == 0
    assert word >> 4 == round(1.0 / 4.096 * 2048)
    assert drv.read_conversion() == round(1.0 / 4.096 * 2048)


def test_input_follows_a_gesture_sampled_mid_conversion():
    clock, bus, chip, drv = rig("1115")
    chip.set_input(0, lambda t: t)  # one volt per second
    clock.advance(1.0)
    counts = drv.read_raw(0)
    assert drv.volts(counts) == pytest.approx(1.0 + 0.5 / 860, abs=2 * drv.lsb_v)


def test_power_cycle_on_reconnect_restores_reset_state():
    clock, bus, chip, drv = rig("1115")
    chip.set_input(0, 1.0)
    drv.read_raw(0)
    bus.disconnect(ADDR)
    with pytest.raises(OSError) as info:
        read_word(bus, ads.REG_CONFIG)
    assert info.value.errno == errno.EREMOTEIO
    bus.reconnect(ADDR)
    assert read_word(bus, ads.REG_CONFIG) == 0x8583
    assert read_word(bus, ads.REG_CONVERSION) == 0


def test_continuous_mode_is_not_emulated():
    _, bus, _, _ = rig("1115")
    with pytest.raises(NotImplementedError):
        write_word(bus, ads.REG_CONFIG, single_shot(0) & ~ads.CONFIG_MODE)


# -- the driver --------------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "full"), [("1115", 26400), ("1015", 1650)])
def test_read_gives_counts_and_fraction_of_supply(kind, full):
    _, _, chip, drv = rig(kind)
    for ch, frac in enumerate((0.0, 0.25, 0.5, 1.0)):
        chip.set_input(ch, frac * VDD)
    for ch, frac in enumerate((0.0, 0.25, 0.5, 1.0)):
        counts, fraction = drv.read(ch)
        assert counts == pytest.approx(frac * full, abs=1)
        assert fraction == pytest.approx(frac, abs=1e-3)
    assert 0.0 <= drv.fraction(-5) <= drv.fraction(10**6) <= 1.0


def test_driver_waits_the_conversion_time_then_polls():
    clock, bus, chip, drv = rig("1115")
    drv.data_rate = 128
    assert drv.conversion_time_s == pytest.approx(1 / 128)
    t0 = clock.now()
    drv.read_raw(0)
    assert clock.now() - t0 == pytest.approx(1 / 128, rel=0.01)


def test_driver_copes_with_a_slow_oscillator():
    clock, bus, chip, drv = rig("1115", rate_error=0.1)
    chip.set_input(1, 1.5)
    assert drv.volts(drv.read_raw(1)) == pytest.approx(1.5, abs=2 * drv.lsb_v)


def test_conversion_that_never_finishes_raises_sensor_error_naming_address_and_register():
    clock, bus, chip, drv = rig("1115", rate_error=1000.0)
    with pytest.raises(SensorError) as info:
        drv.read_raw(0)
    err = info.value
    assert isinstance(err, OSError) and isinstance(err, DdspDeviceError)
    assert "0x48" in str(err) and "0x01" in str(err) and "ADS1115" in str(err)
    assert clock.now() <= drv.timeout_s + 0.01


def test_bus_faults_pass_through_as_the_kernels_oserror():
    _, bus, _, drv = rig("1115")
    bus.fail_next(1, errno.EIO)
    with pytest.raises(OSError) as info:
        drv.read_raw(0)
    assert info.value.errno == errno.EIO
    assert not isinstance(info.value, SensorError)
    drv.read_raw(0)  # and the next read works
    with pytest.raises(OSError) as info:
        ADS1115(bus, 0x4B).begin()  # nobody there
    assert info.value.errno == errno.EREMOTEIO


def test_setters_list_the_allowed_values():
    _, bus, _, drv = rig("1115")
    with pytest.raises(ValueError, match="8, 16, 32, 64, 128, 250, 475, 860"):
        drv.data_rate = 3300
    with pytest.raises(ValueError, match="128, 250, 490, 920, 1600, 2400, 3300"):
        ADS1015(bus, data_rate=860)
    with pytest.raises(ValueError, match="6.144, 4.096, 2.048, 1.024, 0.512, 0.256"):
        drv.full_scale_v = 5.0
    with pytest.raises(ValueError, match="0, 1, 2, 3"):
        drv.read_raw(4)
    assert ADS1015(bus).data_rate == 3300 and ADS1115(bus).data_rate == 860


def test_pipelined_reads_return_each_channels_own_value():
    clock, bus, chip, drv = rig("1015", bus_hz=400_000)
    volts = (0.3, 1.1, 2.2, 3.0)
    for ch, v in enumerate(volts):
        chip.set_input(ch, v)
    order = [0, 1, 0, 1, 2, 0, 1, 3]
    t0 = clock.now()
    for i in range(4 * len(order)):
        ch, nxt = order[i % len(order)], order[(i + 1) % len(order)]
        assert drv.volts(drv.read_pipelined(ch, nxt)) == pytest.approx(volts[ch], abs=drv.lsb_v)
    per_read = (clock.now() - t0) / (4 * len(order))
    # One conversion plus a config write (38 bits) and an OS poll (47 bits); the result read overlaps.
    assert per_read == pytest.approx(1 / 3300 + 85 / 400_000, rel=0.05)
    assert drv.late_reads == 0 and drv.pipelining


def test_pipelining_gives_up_on_a_bus_too_slow_for_it():
    clock, bus, chip, drv = rig("1015", bus_hz=50_000)  # a read takes longer than a conversion
    chip.set_input(0, 0.5)
    chip.set_input(1, 2.5)
    for i in range(20):
        ch = i % 2
        assert drv.volts(drv.read_pipelined(ch, 1 - ch)) == pytest.approx((0.5, 2.5)[ch], abs=drv.lsb_v)
    assert drv.late_reads == ads.LATE_RUN_LIMIT
    assert not drv.pipelining


def test_fault_after_starting_a_conversion_does_not_mislabel_the_next_read():
    clock, bus, chip, drv = rig("1115")
    chip.set_input(0, 0.5)
    chip.set_input(1, 2.5)
    drv.read_pipelined(0, 1)  # channel 1 now converting
    bus.fail_next(1, errno.EREMOTEIO)
    with pytest.raises(OSError):
        drv.read_pipelined(1, 0)  # fails at its first transaction
    # Channel 0 is asked for next; channel 1's conversion may be in flight: must not leak into it.
    assert drv.volts(drv.read_pipelined(0, 1)) == pytest.approx(0.5, abs=drv.lsb_v)
    assert drv.volts(drv.read_pipelined(1, 0)) == pytest.approx(2.5, abs=drv.lsb_v)
