"""SensorPoller against emulated sensors: schedule rates, faults, fades, reconnection; and the bus."""

import errno
import logging
import pathlib
import subprocess
import sys
import time

import pytest

from ddsp_device.controls import bus as bus_mod
from ddsp_device.controls.ads1x15 import ADS1015, ADS1115
from ddsp_device.controls.emulated import (
    EmulatedADS1015,
    EmulatedADS1115,
    EmulatedBus,
    EmulatedMPR121,
    EmulatedMPRLS,
    FakeClock,
    demo_bus,
)
from ddsp_device.controls.mpr121 import MPR121
from ddsp_device.controls.mprls import MPRLS
from ddsp_device.controls.poller import AdcInput, ControlState, RawReading, SensorPoller
from ddsp_device.errors import SensorError

VDD = 3.3
LOGGER = "ddsp_device.controls.poller"
PACKAGE = pathlib.Path(__file__).resolve().parents[2] / "device" / "ddsp_device"


class LinearMapper:
    """A stand-in for controls/mapping.py: f0 linear in the ribbon (or key number), loudness = pressure."""

    def map(self, raw: RawReading):
        if raw.keys is not None:
            f0_hz = 200.0 + 10.0 * raw.keys.bit_length()
        else:
            f0_hz = 100.0 + 900.0 * (raw.pitch or 0.0)
        if raw.pressure_hpa is not None:
            loudness = (raw.pressure_hpa - 1013.25) / 50.0
        else:
            loudness = raw.pressure or 0.0
        return f0_hz, loudness, raw.knobs


class Recorder:
    def __init__(self):
        self.states: list[ControlState] = []

    def __call__(self, state: ControlState) -> None:
        self.states.append(state)

    def between(self, t0, t1):
        return [s for s in self.states if t0 <= s.t < t1]


def adc_rig(kind="1015", bus_hz=400_000, knobs=2, **poller_kw):
    clock = FakeClock()
    bus = EmulatedBus(clock, bus_hz=bus_hz, **poller_kw.pop("bus_kw", {}))
    emu, drv = (EmulatedADS1015, ADS1015) if kind == "1015" else (EmulatedADS1115, ADS1115)
    chip = bus.attach(0x48, emu(clock, supply_v=VDD))
    chip.set_input(0, 0.5 * VDD)  # ribbon at the middle
    chip.set_input(1, 0.8 * VDD)  # pressing
    chip.set_input(2, 0.25 * VDD)
    chip.set_input(3, 0.75 * VDD)
    adc = drv(bus, 0x48, clock=clock, supply_v=VDD)
    rec = Recorder()
    poller = SensorPoller(
        LinearMapper(),
        pitch=AdcInput(adc, 0),
        pressure=AdcInput(adc, 1),
        knobs=[AdcInput(adc, 2 + i) for i in range(knobs)],
        clock=clock,
        on_publish=rec,
        **poller_kw,
    )
    return clock, bus, chip, adc, poller, rec


def update_times(states, field):
    """Clock times at which ``raw.<field>`` was freshly read (each new RawReading counts)."""
    times, last = [], None
    for s in states:
        if s.raw is not None and s.raw is not last:
            last = s.raw
            times.append(s.raw.t)
    return times


# -- schedule and rates ------------------------------------------------------------------------


def test_schedule_interleaves_pitch_and_pressure_with_a_knob_every_n_reads():
    *_, poller, _ = adc_rig(knob_interval=4)
    assert poller.schedule == (
        "pitch", "pressure", "pitch", "pressure", "knob0",
        "pitch", "pressure", "pitch", "pressure", "knob1",
    )  # fmt: skip


@pytest.mark.parametrize(("kind", "at_least_hz"), [("1015", 800.0), ("1115", 250.0)])
def test_pitch_and_pressure_rates_meet_the_target_and_the_estimate(kind, at_least_hz):
    clock, bus, chip, adc, poller, rec = adc_rig(kind)
    assert poller.nominal_rate_hz >= at_least_hz
    reads = {"pitch": 0, "pressure": 0, "knob": 0}
    run = poller._execute

    def counting(op, now):
        done = run(op, now)
        reads[op.role] += done
        return done

    poller._execute = counting
    poller.run_for(1.0)
    rates = poller.nominal_rates_hz
    assert reads["pitch"] == pytest.approx(rates["pitch"], rel=0.05)
    assert reads["pressure"] == pytest.approx(rates["pressure"], rel=0.05)
    assert reads["knob"] == pytest.approx(rates["knob0"] + rates["knob1"], rel=0.1)
    assert reads["pitch"] >= at_least_hz
    assert adc.late_reads == 0


def test_publishes_mapped_controls_and_knobs():
    clock, bus, chip, adc, poller, rec = adc_rig()
    chip.set_input(0, lambda t: VDD * min(t, 1.0))  # slide up over a second
    poller.run_for(1.2)
    state = poller.latest
    assert state.f0_hz == pytest.approx(1000.0, abs=2.0)
    assert state.loudness == pytest.approx(0.8, abs=1e-3)
    assert state.knobs == pytest.approx((0.25, 0.75), abs=2e-3)
    assert state.raw.pressure == pytest.approx(0.8, abs=1e-3) and state.raw.keys is None
    assert [s.seq for s in rec.states] == list(range(1, len(rec.states) + 1))
    mid = rec.between(0.5, 0.51)[0]
    assert mid.f0_hz == pytest.approx(100.0 + 900.0 * 0.5, abs=5.0)
    assert state.sensors[0].present and state.sensors[0].roles == ("pitch", "pressure", "knob")


def test_silence_until_the_sensors_have_answered_then_a_short_fade_in():
    clock, bus, chip, adc, poller, rec = adc_rig()
    assert poller.latest.loudness == 0.0 and poller.latest.f0_hz == 196.0
    poller.run_for(0.05)
    first = rec.states[0]
    assert first.loudness < 0.8
    assert rec.between(0.025, 0.05)[0].loudness == pytest.approx(0.8, abs=1e-3)


# -- faults --------------------------------------------------------------------------------------


def test_five_percent_bus_errors_are_retried_and_playing_continues(caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    clock, bus, chip, adc, poller, rec = adc_rig(
        bus_kw=dict(fault_rate=0.05, fault_errnos=(errno.EREMOTEIO, errno.EIO, errno.ETIMEDOUT), seed=1)
    )
    poller.run_for(2.0)
    sensor = poller.latest.sensors[0]
    assert bus.faults_injected > 100
    assert sensor.faults == bus.faults_injected
    assert sensor.retries >= sensor.faults * 0.9
    assert sensor.present and sensor.reconnects == 0
    times = update_times(rec.states, "pitch")
    gaps = sorted(b - a for a, b in zip(times, times[1:]))
    assert gaps[len(gaps) // 2] < 0.001 and gaps[int(0.99 * len(gaps))] < 0.005
    assert gaps[-1] < poller.grace_s  # never long enough to count as absent
    assert len(times) > 1500
    playing = rec.between(0.05, 2.0)
    assert min(s.loudness for s in playing) == pytest.approx(0.8, abs=1e-3)  # never faded
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_disconnect_fades_to_silence_logs_once_and_reconnect_picks_up(caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    clock, bus, chip, adc, poller, rec = adc_rig()
    poller.run_until(0.5)
    assert poller.latest.loudness == pytest.approx(0.8, abs=1e-3)
    bus.disconnect(0x48)
    poller.run_until(1.0)
    assert all(s.loudness <= 0.8 for s in rec.between(0.5, 1.0))
    silent_at = next(s.t for s in rec.between(0.5, 1.0) if s.loudness == 0.0)
    assert silent_at < 0.5 + 0.05  # faded out within 50 ms of the loss
    assert poller.latest.loudness == 0.0 and poller.latest.t >= silent_at
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warnings == [
        "pitch/pressure/knob sensor ADS1015 at 0x48 stopped answering (errno 121: Remote I/O error); "
        "fading to silence"
    ]
    assert not poller.latest.sensors[0].present
    calls = bus.calls
    poller.run_until(2.0)
    assert bus.calls - calls < 20  # probed at a low rate, not hammered
    bus.reconnect(0x48)
    poller.run_until(2.5)
    back = [r.getMessage() for r in caplog.records if "is back" in r.getMessage()]
    assert back == ["pitch/pressure/knob sensor ADS1015 at 0x48 is back"]
    sensor = poller.latest.sensors[0]
    assert sensor.present and sensor.reconnects == 1
    assert poller.latest.loudness == pytest.approx(0.8, abs=1e-3)
    back_at = next(s.t for s in rec.between(2.0, 2.5) if s.loudness > 0)
    assert back_at < 2.0 + poller.backoff_max_s + 0.01


def test_fade_is_gradual_not_a_step():
    clock, bus, chip, adc, poller, rec = adc_rig()
    poller.run_until(0.5)
    bus.disconnect(0x48)
    poller.run_until(0.6)
    fading = [s.loudness for s in rec.between(0.5, 0.6) if 0.0 < s.loudness < 0.79]
    assert len(fading) >= 10  # many steps on the way down
    assert all(b <= a for a, b in zip(fading, fading[1:]))


def test_missing_at_start_runs_and_publishes_silence_then_finds_it(caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    clock = FakeClock()
    bus = EmulatedBus(clock, bus_hz=400_000)
    adc = ADS1115(bus, 0x48, clock=clock)
    rec = Recorder()
    poller = SensorPoller(
        LinearMapper(), pitch=AdcInput(adc, 0), pressure=AdcInput(adc, 1), clock=clock, on_publish=rec
    )
    poller.run_for(1.0)
    assert all(s.loudness == 0.0 for s in rec.states)
    assert poller.latest.loudness == 0.0 and not poller.latest.sensors[0].present
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "pitch/pressure sensor ADS1115 at 0x48 not found at start (errno 121: Remote I/O error); "
        "playing silence until it answers"
    ]
    chip = bus.attach(0x48, EmulatedADS1115(clock, supply_v=VDD))
    chip.set_input(1, 0.5 * VDD)
    poller.run_for(0.5)
    assert poller.latest.loudness == pytest.approx(0.5, abs=1e-3)
    assert any(m.endswith("ADS1115 at 0x48 found") for m in (r.getMessage() for r in caplog.records))
    assert poller.latest.sensors[0].reconnects == 0


def test_a_lost_knob_chip_does_not_silence_the_instrument(caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    clock = FakeClock()
    bus = EmulatedBus(clock, bus_hz=400_000)
    fast = bus.attach(0x48, EmulatedADS1015(clock))
    fast.set_input(1, 0.6 * VDD)
    knobs = bus.attach(0x49, EmulatedADS1115(clock))
    knobs.set_input(0, 0.3 * VDD)
    adc = ADS1015(bus, 0x48, clock=clock)
    kadc = ADS1115(bus, 0x49, clock=clock)
    poller = SensorPoller(
        LinearMapper(),
        pitch=AdcInput(adc, 0),
        pressure=AdcInput(adc, 1),
        knobs=[AdcInput(kadc, 0)],
        clock=clock,
    )
    poller.run_until(0.5)
    bus.disconnect(0x49)
    poller.run_until(1.0)
    assert poller.latest.loudness == pytest.approx(0.6, abs=1e-3)
    assert poller.latest.knobs == pytest.approx((0.3,), abs=1e-3)  # held
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert "knob sensor ADS1115 at 0x49 stopped answering" in warning and "knobs keep" in warning


def test_other_errors_are_handled_the_same_and_logged_with_errno(caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    clock, bus, chip, adc, poller, rec = adc_rig()
    poller.run_until(0.2)
    bus.schedule = lambda index, address: errno.ENXIO
    poller.run_until(0.4)
    assert poller.latest.loudness == 0.0
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert f"errno {errno.ENXIO}" in warning
    bus.schedule = None
    poller.run_until(0.8)
    assert poller.latest.loudness == pytest.approx(0.8, abs=1e-3)


def test_a_stuck_conversion_is_a_fault_naming_the_register(caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    clock, bus, chip, adc, poller, rec = adc_rig()
    poller.run_until(0.2)
    chip.rate_error = 1000.0  # the oscillator stopped
    poller.run_until(0.5)
    assert poller.latest.loudness == 0.0
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert "ADS1015 at 0x48: conversion not finished" in warning and "register 0x01" in warning


# -- the wind-controller layout ----------------------------------------------------------------


def wind_rig():
    clock = FakeClock()
    bus = EmulatedBus(clock, bus_hz=400_000)
    keys = bus.attach(0x5A, EmulatedMPR121(clock))
    breath = bus.attach(0x18, EmulatedMPRLS(clock, pressure_hpa=1013.25 + 25.0))
    rec = Recorder()
    poller = SensorPoller(
        LinearMapper(),
        pitch=MPR121(bus, 0x5A, clock=clock),
        pressure=MPRLS(bus, 0x18, clock=clock),
        clock=clock,
        on_publish=rec,
    )
    return clock, bus, keys, breath, poller, rec


def test_wind_layout_keys_give_pitch_and_breath_gives_loudness():
    clock, bus, keys, breath, poller, rec = wind_rig()
    keys.touches = 1 << 4
    poller.run_for(0.5)
    state = poller.latest
    assert state.raw.keys == 1 << 4 and state.raw.pitch is None and state.raw.pressure is None
    assert state.f0_hz == pytest.approx(250.0)
    assert state.loudness == pytest.approx(0.5, abs=1e-3)
    rates = poller.nominal_rates_hz
    assert rates["pitch"] == pytest.approx(1000.0) and 150.0 < rates["pressure"] < 200.0
    assert keys.running


def test_wind_layout_reinitialises_the_keys_after_a_power_cycle(caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    clock, bus, keys, breath, poller, rec = wind_rig()
    keys.touches = 0b1
    poller.run_until(0.3)
    bus.disconnect(0x5A)
    poller.run_until(0.6)
    assert poller.latest.loudness == 0.0
    bus.reconnect(0x5A, power_cycle=True)  # comes back in stop mode
    assert not keys.running
    poller.run_until(1.0)
    assert keys.running  # begin() ran again
    assert poller.latest.raw.keys == 0b1 and poller.latest.loudness == pytest.approx(0.5, abs=1e-3)
    messages = [r.getMessage() for r in caplog.records]
    assert sum("MPR121 at 0x5a stopped answering" in m for m in messages) == 1
    assert sum("MPR121 at 0x5a is back" in m for m in messages) == 1


def test_overcurrent_on_the_keys_fades_and_is_reported():
    clock, bus, keys, breath, poller, rec = wind_rig()
    poller.run_until(0.2)
    keys.overcurrent = True
    poller.run_until(0.5)
    sensor = next(s for s in poller.latest.sensors if s.name == "MPR121")
    assert not sensor.present and "OVCF" in sensor.last_error
    assert poller.latest.loudness == 0.0
    keys.overcurrent = False
    poller.run_until(1.0)
    assert poller.latest.loudness == pytest.approx(0.5, abs=1e-3)


# -- the thread --------------------------------------------------------------------------------


def test_thread_runs_publishes_and_stops_with_silence():
    bus = demo_bus(bus_hz=None)  # real clock
    adc = ADS1015(bus, 0x48)
    poller = SensorPoller(
        LinearMapper(), pitch=AdcInput(adc, 0), pressure=AdcInput(adc, 1), knobs=[AdcInput(adc, 2)]
    )
    with poller:
        deadline = time.monotonic() + 30.0  # a bound on a hang only
        while poller.latest.seq < 100 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert poller.latest.seq >= 100
        thread = poller._thread
        assert thread.daemon and thread.is_alive()
    assert not thread.is_alive()
    assert poller.latest.loudness == 0.0
    poller.stop()  # twice is harmless
    assert poller.error is None


def test_a_mapper_bug_stops_the_thread_with_silence_not_a_stuck_note(caplog):
    bus = demo_bus(bus_hz=None)
    adc = ADS1015(bus, 0x48)
    calls = []

    def broken(raw):
        calls.append(raw)
        if len(calls) > 50:
            raise ZeroDivisionError("bug")
        return 440.0, 1.0, ()

    poller = SensorPoller(broken, pitch=AdcInput(adc, 0), pressure=AdcInput(adc, 1)).start()
    deadline = time.monotonic() + 30.0  # a bound on a hang only
    while poller.error is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert isinstance(poller.error, ZeroDivisionError)
    assert poller.latest.loudness == 0.0
    assert "publishing silence" in caplog.text
    poller.stop()


def test_rejects_bad_layouts():
    clock = FakeClock()
    bus = EmulatedBus(clock)
    adc = ADS1115(bus, 0x48, clock=clock)
    with pytest.raises(ValueError, match="both use ADS1115 at 0x48 channel 1"):
        SensorPoller(LinearMapper(), pitch=AdcInput(adc, 1), pressure=AdcInput(adc, 1))
    with pytest.raises(ValueError, match="one driver object per chip"):
        SensorPoller(LinearMapper(), pitch=AdcInput(adc, 0), pressure=AdcInput(ADS1115(bus, 0x48), 1))
    with pytest.raises(ValueError, match="0, 1, 2, 3"):
        SensorPoller(LinearMapper(), pitch=AdcInput(adc, 5), pressure=None)
    with pytest.raises(ValueError, match="knob_interval"):
        SensorPoller(LinearMapper(), pitch=AdcInput(adc, 0), pressure=None, knob_interval=0)


# -- the bus module ----------------------------------------------------------------------------


def test_open_bus_names_the_missing_bus():
    with pytest.raises(SensorError, match="bus 97") as info:
        bus_mod.open_bus(97)
    assert isinstance(info.value, OSError)


def test_only_bus_py_imports_smbus2_and_never_at_import_time():
    importers = [
        p.name
        for p in (PACKAGE / "controls").glob("*.py")
        if "import smbus2" in p.read_text() or "from smbus2" in p.read_text()
    ]
    assert importers == ["bus.py"]
    others = [p for p in PACKAGE.rglob("*.py") if "controls" not in p.parts and "smbus2" in p.read_text()]
    assert others == []
    code = (
        "import sys\n"
        "import ddsp_device.controls.bus, ddsp_device.controls.ads1x15, ddsp_device.controls.mpr121\n"
        "import ddsp_device.controls.mprls, ddsp_device.controls.emulated, ddsp_device.controls.poller\n"
        "assert 'smbus2' not in sys.modules, 'smbus2 imported at import time'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env={"PYTHONPATH": str(PACKAGE.parent)})


def test_a_flapping_sensor_is_logged_once_and_summarised(caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    clock, bus, chip, adc, poller, rec = adc_rig(summary_interval_s=10.0)
    poller.run_until(0.2)
    for k in range(5):  # gone for 100 ms, back for 400 ms, five times
        bus.disconnect(0x48)
        poller.run_until(0.3 + 0.5 * k)
        bus.reconnect(0x48)
        poller.run_until(0.7 + 0.5 * k)
    assert poller.latest.sensors[0].reconnects == 5
    messages = [r.getMessage() for r in caplog.records]
    assert sum("stopped answering" in m for m in messages) == 1
    assert sum("is back" in m for m in messages) == 1
    poller.run_until(10.5)
    (summary,) = [m for m in caplog.records if m.getMessage().startswith("sensor faults in the last 10 s")]
    assert "ADS1015 at 0x48" in summary.getMessage() and "5 reconnects" in summary.getMessage()
