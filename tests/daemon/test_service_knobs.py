"""The daemon's knobs and synth settings: the tone knob, the configured tone, and the status."""

import time

import pytest

from ddsp_device.config import load_config
from ddsp_device.controls.bus import SYSTEM_CLOCK
from ddsp_device.controls.mapping import knob_to_tone
from ddsp_device.controls.tools import EmulatedPlayer
from ddsp_device.daemon.service import RunOptions, Service
from ddsp_device.daemon.status import format_status
from ddsp_device.engine import Engine, EngineSettings

TONE_KNOB = ["controls.reverb_channel=-1", "controls.tone_channel=3", "panel.enabled=false"]


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    monkeypatch.setenv("DDSP_DEVICE_SYSTEM_CONFIG", str(tmp_path / "absent.toml"))
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path / "state"))


class StubEngine:
    """What apply_knobs and status() touch: plain float attributes."""

    gain = 1.0
    reverb_mix = 0.15
    tone = 0.0


def knob_service(overrides, knob_volts=None):
    """A Service on an emulated build; the tone knob (A3) at ``knob_volts`` if given."""
    player = EmulatedPlayer(load_config(None, overrides), SYSTEM_CLOCK, gesture=True)
    if knob_volts is not None:
        player.adc.set_input(3, knob_volts)
    service = Service(RunOptions(overrides=list(overrides)), bus=player.bus, clock=SYSTEM_CLOCK)
    service.rig = service.start_controls()
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline:  # until every knob has been read
        time.sleep(0.05)
        if service.rig.poller.latest.raw is not None and all(service.rig.poller.latest.raw.knobs):
            break
    return service


def test_the_tone_knob_sets_the_engine_tone_and_status_shows_it():
    service = knob_service(TONE_KNOB, knob_volts=0.1 * 3.3)
    try:
        service.engine = StubEngine()
        service.apply_knobs()
        knob = service.rig.knob(service.rig.poller.latest, "tone")
        assert service.engine.tone == knob_to_tone(knob) == pytest.approx(-0.79, abs=0.02)
        assert service.engine.reverb_mix == 0.15  # no reverb knob: untouched
        doc = service.status()
        assert doc["tone"] == {"value": service.engine.tone, "from": "knob"}
        assert f"tone      {service.engine.tone:+.2f} (darker, from the knob)" in format_status(doc).splitlines()
    finally:
        service.rig.close()


def test_without_a_tone_knob_the_configured_tone_plays():
    service = knob_service(["synth.tone=0.4", "panel.enabled=false"])
    try:
        service.engine = StubEngine()
        service.engine.tone = service.cfg.synth.tone  # as run_service builds it (EngineSettings)
        service.apply_knobs()
        assert service.engine.tone == 0.4
        doc = service.status()
        assert doc["tone"] == {"value": 0.4, "from": "config"}
        assert "tone      +0.40 (brighter, from config)" in format_status(doc).splitlines()
    finally:
        service.rig.close()


@pytest.mark.runtime
def test_reload_applies_a_new_configured_tone_unless_a_knob_sets_it(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text("[panel]\nenabled = false\n[synth]\ntone = -0.5\n")
    service = Service(RunOptions(config_file=str(config)))
    service.model_name = "TestFixture"
    service.engine = Engine(service.load_model("TestFixture"), EngineSettings.from_config(service.cfg))
    try:
        assert service.engine.tone == -0.5
        config.write_text("[panel]\nenabled = false\n[synth]\ntone = 0.75\n")
        service._reload()
        assert service.engine.tone == 0.75 and service.reloads_refused == 0
        # with a tone knob fitted, the knob keeps the say
        service.rig = StubRig(0.5)
        config.write_text("[panel]\nenabled = false\n[synth]\ntone = -1.0\n")
        service._reload()
        assert service.engine.tone == 0.75
    finally:
        service.engine.close()


class StubRig:
    """A rig with a tone knob at ``value`` (0..1) and nothing else; reload_controls skips it."""

    def __init__(self, value):
        self.value = value
        self.knob_roles = ("tone",)
        self.poller = type("P", (), {"latest": None})()

    def knob(self, state, role):
        return self.value if role == "tone" else None
