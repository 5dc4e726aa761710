"""Reloading the controls: only when [controls] or the calibration changed, without re-zeroing."""

import time

import pytest

from ddsp_device.config import load_config
from ddsp_device.controls.bus import SYSTEM_CLOCK
from ddsp_device.controls.tools import EmulatedPlayer
from ddsp_device.daemon.service import RunOptions, Service


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    monkeypatch.setenv("DDSP_DEVICE_SYSTEM_CONFIG", str(tmp_path / "absent.toml"))
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path / "state"))


def test_controls_rebuilt_only_on_change_and_keep_the_baseline(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text("[panel]\nenabled = false\n")
    player = EmulatedPlayer(load_config(config), SYSTEM_CLOCK, gesture=True)
    service = Service(RunOptions(config_file=str(config)), bus=player.bus, clock=SYSTEM_CLOCK)
    service.rig = first = service.start_controls()
    try:
        deadline = time.monotonic() + 30.0  # a bound on a hang only
        while first.mapper.pressure.baseline is None and time.monotonic() < deadline:
            time.sleep(0.01)
        baseline = first.mapper.pressure.baseline
        assert baseline is not None
        old_cfg = service.cfg
        service.reload_controls(old_cfg)  # nothing changed: same rig
        assert service.rig is first
        config.write_text("[panel]\nenabled = false\n[controls]\nquantise_strength = 1.0\n")
        service.cfg = load_config(config)
        service.reload_controls(old_cfg)
        assert service.rig is not first
        assert service.rig.mapper.pressure.baseline == pytest.approx(baseline)
        assert service.rig.mapper.pitch.config.strength == 1.0
        assert not first.poller._thread  # the old poller was stopped
    finally:
        service.rig.close()
