"""The controls built from config: emulated chips behind the bus, real drivers, poller, mapping."""

import io
import json

import pytest

from ddsp_device.cli import main
from ddsp_device.config import load_config
from ddsp_device.controls.calibration import Calibration, KnobRange
from ddsp_device.controls.emulated import EmulatedADS1015, EmulatedBus, FakeClock
from ddsp_device.controls.rig import build_rig, default_calibration, nominal_sensor_rate_hz
from ddsp_device.controls.tools import EmulatedPlayer, format_state, note_name
from ddsp_device.errors import ConfigError


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    monkeypatch.setenv("DDSP_DEVICE_SYSTEM_CONFIG", str(tmp_path / "absent.toml"))
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path / "state"))
    (tmp_path / "state").mkdir()


def cfg(*overrides):
    return load_config(None, list(overrides))


def test_default_build_reads_pitch_and_pressure_near_1khz():
    assert 800 < nominal_sensor_rate_hz(cfg()) < 1000  # ADS1015 at 3300 SPS, 400 kHz I2C
    assert 250 <= nominal_sensor_rate_hz(cfg('controls.adc_type="ads1115"')) < 400


def test_ribbon_and_fsr_play_the_mapped_pitch_and_loudness():
    clock = FakeClock()
    bus = EmulatedBus(clock)
    adc = bus.attach(0x48, EmulatedADS1015(clock, supply_v=3.3))
    cal = Calibration(ribbon_low=0.1, ribbon_high=0.9, ribbon_open=0.0, pressure_rest=0.0, pressure_max=0.5,
                      knobs={}, created_at="2026-01-01T00:00:00Z")
    c = cfg("controls.volume_channel=-1", "controls.reverb_channel=-1")
    rig = build_rig(c, bus=bus, clock=clock, calibration=cal)
    adc.set_input(1, 0.0)  # at rest while the baseline is taken
    adc.set_input(0, 3.3 * 0.5)  # half way along the ribbon: 15 semitones above G3
    rig.poller.run_for(0.3)
    adc.set_input(1, 3.3 * 0.5)  # full press
    rig.poller.run_for(0.1)
    state = rig.poller.latest
    assert state.f0_hz == pytest.approx(196.0 * 2 ** (15 / 12), rel=2e-3)
    assert state.loudness == pytest.approx(1.0, abs=0.02)
    adc.set_input(1, 0.0)
    rig.poller.run_for(0.3)
    assert rig.poller.latest.loudness == 0.0
    assert rig.poller.latest.f0_hz == pytest.approx(state.f0_hz, rel=2e-3)  # ribbon still touched


def test_knob_on_a_playing_channel_is_a_config_error():
    # refused when the config is loaded (the schema's rule), before any hardware is touched
    with pytest.raises(ConfigError, match="controls.volume_channel: ADC input 0 is already controls.pitch_channel"):
        cfg("controls.volume_channel=0")


def tone_knob_rig(calibration=None):
    """The default build with the tone knob in the reverb knob's place (A3)."""
    c = cfg("controls.reverb_channel=-1", "controls.tone_channel=3")
    clock = FakeClock()
    bus = EmulatedBus(clock)
    adc = bus.attach(0x48, EmulatedADS1015(clock, supply_v=3.3))
    rig = build_rig(c, bus=bus, clock=clock, calibration=calibration or default_calibration(c))
    return rig, adc


@pytest.mark.parametrize("volts, tone", [(0.0, -1.0), (1.65, 0.0), (3.3, 1.0), (2.5, 0.5)])
def test_tone_knob_reads_dark_to_bright(volts, tone):
    from ddsp_device.controls.mapping import knob_to_tone

    rig, adc = tone_knob_rig()
    assert rig.knob_roles == ("volume", "tone")
    adc.set_input(3, volts)
    rig.poller.run_for(0.2)
    value = rig.knob(rig.poller.latest, "tone")
    assert knob_to_tone(value) == pytest.approx(tone, abs=0.03)
    assert rig.knob(rig.poller.latest, "reverb") is None
    line = format_state(rig.poller.latest, rig.knob_roles)
    assert f"tone {knob_to_tone(value):+.2f}" in line


def test_a_tone_knob_missing_from_the_saved_calibration_takes_its_whole_range(caplog):
    saved = Calibration(ribbon_low=0.1, ribbon_high=0.9, ribbon_open=0.0, pressure_rest=0.0, pressure_max=0.5,
                        knobs={"volume": KnobRange(0.0, 1.0)}, created_at="2026-01-01T00:00:00Z")
    rig, adc = tone_knob_rig(saved)
    assert "knob tone is not in the calibration" in caplog.text
    adc.set_input(3, 3.3)
    rig.poller.run_for(0.2)
    assert rig.knob(rig.poller.latest, "tone") == pytest.approx(1.0, abs=0.01)


def test_monitor_and_calibration_know_the_tone_knob():
    from ddsp_device.controls.tools import session_for

    c = cfg("controls.reverb_channel=-1", "controls.tone_channel=3")
    assert session_for(c, None).knob_names == ("volume", "tone")
    clock = FakeClock()
    player = EmulatedPlayer(c, clock, gesture=True)  # the gesture leaves the tone knob centred
    rig = build_rig(c, bus=player.bus, clock=clock)
    rig.poller.run_for(1.0)
    assert "tone +0.00" in format_state(rig.poller.latest, rig.knob_roles)


def test_a_calibration_without_a_fitted_knob_still_builds(caplog):
    """A knob fitted after calibrating: it turns over the whole ADC range, with a warning."""
    c = cfg("controls.transpose_channel=-1")
    clock = FakeClock()
    player = EmulatedPlayer(c, clock)
    cal = Calibration.default(knobs=["volume"])  # no reverb knob when it was calibrated
    rig = build_rig(c, bus=player.bus, clock=clock, calibration=cal)
    assert rig.knob_roles == ("volume", "reverb")
    assert "knob reverb is not in the calibration" in caplog.text
    rig.close()


def test_keys_and_breath_build():
    c = cfg('controls.pitch_source="keys"', 'controls.pressure_source="mprls"')
    clock = FakeClock()
    player = EmulatedPlayer(c, clock, gesture=True)
    rig = build_rig(c, bus=player.bus, clock=clock)
    rig.poller.run_for(1.0)
    names = {s.name for s in rig.poller.latest.sensors}
    assert {"MPR121", "MPRLS"} <= names
    assert rig.poller.latest.f0_hz == pytest.approx(196.0, rel=1e-3)  # pad 0 = G3


def test_note_names_and_state_line():
    assert note_name(440.0) == "A4"
    assert note_name(196.0) == "G3"
    assert note_name(445.0) == "A4+20"
    clock = FakeClock()
    c = cfg()
    player = EmulatedPlayer(c, clock, gesture=True)
    rig = build_rig(c, bus=player.bus, clock=clock)
    rig.poller.run_for(1.0)
    line = format_state(rig.poller.latest, rig.knob_roles)
    assert "ribbon" in line and "pressure" in line and "volume" in line and "ADS1015@0x48 ok" in line


def test_calibrate_command_with_an_emulated_player(tmp_path, capsys):
    out = tmp_path / "cal.json"
    assert main(["calibrate", "--emulate", "--step-seconds", "0.9", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert text.count("ok:") == 4 and "Saved" in text
    data = json.loads(out.read_text())
    assert data["ribbon"]["low"] < 0.2 and data["ribbon"]["high"] > 0.8
    assert data["pressure"]["max"] > 0.5
    assert data["knobs"]["volume"]["min"] < 0.1 < 0.9 < data["knobs"]["volume"]["max"]


def test_calibrate_refuses_a_ribbon_that_does_not_move(tmp_path, capsys, monkeypatch):
    import ddsp_device.controls.tools as tools

    original = tools.EmulatedPlayer.act

    def lazy_player(self, step):  # never touches the ribbon
        original(self, "release" if step == "ribbon" else step)

    monkeypatch.setattr(tools.EmulatedPlayer, "act", lazy_player)
    out = tmp_path / "cal.json"
    assert main(["calibrate", "--emulate", "--step-seconds", "0.3", "--out", str(out)]) == 1
    captured = capsys.readouterr()
    assert captured.out.count("not accepted") == 3
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and "calibration step 'ribbon' failed 3 times" in err[0]
    assert not out.exists()


def test_monitor_prints_rate_hz_lines_a_second():
    """Counted on the monitor's own clock (a fake one here), so machine speed cannot change it;
    a slow line (0.05 s of the 1/12 s) does not lower the rate."""
    buf = io.StringIO()
    from ddsp_device.controls.rig import build_rig as br
    from ddsp_device.controls.bus import SYSTEM_CLOCK
    from ddsp_device.controls.tools import run_monitor

    c = cfg()
    player = EmulatedPlayer(c, SYSTEM_CLOCK, gesture=True)
    rig = br(c, bus=player.bus)
    now = [0.0]

    class SlowTerminal(io.StringIO):
        def flush(self):
            now[0] += 0.05  # printing takes time

    def sleep(s):
        now[0] += s

    buf = SlowTerminal()
    n = run_monitor(rig, buf, seconds=2.0, rate_hz=12.0, tty=False, clock=lambda: now[0], sleep=sleep)
    assert n == 24
    assert all("f0" in line for line in buf.getvalue().splitlines())


def test_monitor_without_i2c_names_the_bus(capsys):
    assert main(["monitor", "--seconds", "0.1", "-o", "controls.i2c_bus=29"]) == 1
    err = capsys.readouterr().err
    assert "/dev/i2c-29" in err and len(err.strip().splitlines()) == 1


def test_calibrate_without_a_terminal_is_one_line(tmp_path, capsys, monkeypatch):
    """`ssh box ddsp-device calibrate` or `</dev/null`: no EOFError traceback, exit 2."""
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    out = tmp_path / "cal.json"
    assert main(["calibrate", "--emulate", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a terminal" in err[0] and "--step-seconds" in err[0]
    assert not out.exists()


def test_calibrate_input_ending_midway_is_one_line(tmp_path, capsys, monkeypatch):
    from ddsp_device.controls.tools import calibrate_command
    from ddsp_device.errors import ControlsError

    def closed(prompt):
        raise EOFError

    with pytest.raises(ControlsError, match="input ended"):
        calibrate_command(cfg(), io.StringIO(), emulate=True, step_seconds=None, path=tmp_path / "c.json",
                          input_fn=closed)
    assert not (tmp_path / "c.json").exists()


def test_calibrate_out_in_a_missing_directory_creates_nothing(tmp_path, capsys):
    target = tmp_path / "nonexistent" / "c.json"
    assert main(["calibrate", "--emulate", "--step-seconds", "0.1", "--out", str(target)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not exist" in err[0]
    assert not target.parent.exists()


def test_calibrate_says_which_file_the_daemon_reads(tmp_path, capsys, monkeypatch):
    import ddsp_device.controls.tools as tools

    # the steps themselves are tested above; here only where the result goes and what is said
    monkeypatch.setattr(tools, "run_calibration", lambda rig, collector, session, out, **kw: default_calibration(cfg()))
    elsewhere = tmp_path / "elsewhere.json"
    assert main(["calibrate", "--emulate", "--step-seconds", "0.1", "--out", str(elsewhere)]) == 0
    text = capsys.readouterr().out
    daemon_file = tmp_path / "state" / "calibration.json"
    assert f"The daemon reads {daemon_file}, not this file" in text and "uses it on its next start" not in text
    assert elsewhere.is_file() and not daemon_file.exists()
    assert main(["calibrate", "--emulate", "--step-seconds", "0.1"]) == 0
    assert f"Saved {daemon_file}. The daemon uses it on its next start" in capsys.readouterr().out


@pytest.mark.parametrize("seconds", ["0", "-1", "nan"])
def test_monitor_refuses_a_duration_that_shows_nothing(capsys, seconds):
    assert main(["monitor", "--emulate", "--seconds", seconds]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--seconds: must be > 0" in err[0]


def test_version(capsys):
    from ddsp_device import __version__

    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0 and capsys.readouterr().out.strip() == f"ddsp-device {__version__}"


@pytest.mark.parametrize("k", [0, 8, 174, 175, 177, 178])
def test_monitor_line_count_does_not_depend_on_when_it_starts(k):
    """How long the first scan takes moves the start; rounding of the sums must not then add a
    25th line to 2 s at 12 Hz (it did for these starts: a loaded machine found one)."""
    from ddsp_device.controls.bus import SYSTEM_CLOCK
    from ddsp_device.controls.tools import run_monitor

    c = cfg()
    rig = build_rig(c, bus=EmulatedPlayer(c, SYSTEM_CLOCK, gesture=True).bus)
    now = [k * 0.01 + k * 1e-7]

    def sleep(s):
        now[0] += s

    assert run_monitor(rig, io.StringIO(), seconds=2.0, rate_hz=12.0, tty=False, clock=lambda: now[0],
                       sleep=sleep) == 24
