"""The panel drives the daemon: the encoder steps through the models, holding the button mutes,
the LED follows. gpiozero's MockFactory stands in for the GPIO pins."""

import pytest

gpiozero = pytest.importorskip("gpiozero")
from gpiozero.pins.mock import MockFactory, MockPWMPin  # noqa: E402

from ddsp_device.controls.panel import LedMode, Panel, PanelEvent, PanelSettings  # noqa: E402
from ddsp_device.daemon.service import RunOptions, Service  # noqa: E402
from ddsp_device.engine import Engine, EngineSettings  # noqa: E402

pytestmark = pytest.mark.runtime


@pytest.fixture
def service(monkeypatch, tmp_path):
    monkeypatch.setenv("DDSP_DEVICE_SYSTEM_CONFIG", str(tmp_path / "absent.toml"))
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path / "state"))
    svc = Service(RunOptions())
    svc.model_name = "TestFixture"
    svc.engine = Engine(svc.load_model("TestFixture"), EngineSettings())
    svc.panel = Panel(PanelSettings(), pin_factory=MockFactory(pin_class=MockPWMPin))
    yield svc
    svc.panel.close()
    svc.engine.close()


def test_encoder_steps_to_the_next_model_and_remembers_it(service, tmp_path):
    (tmp_path / "state" / "models").mkdir(parents=True, exist_ok=True)
    src = service.engine.model.info.path
    (tmp_path / "state" / "models" / "Second.tflite").write_bytes(open(src, "rb").read())
    assert service.available_models() == ["Second", "TestFixture", "Violin"]
    service.panel.events.put(PanelEvent.NEXT_MODEL)  # from TestFixture, in name order: Violin
    service.handle_panel()
    assert service.model_name == "Violin"
    assert service.engine.swap_pending  # handed to the engine; the audio thread picks it up
    assert service.state.reload_selection() == "Violin"
    assert service.panel.led_mode is LedMode.PLAYING


def test_holding_the_button_mutes_and_unmutes(service):
    service.panel.events.put(PanelEvent.MUTE_TOGGLE)
    service.handle_panel()
    assert service.engine.muted and service.panel.led_mode is LedMode.MUTED
    service.panel.events.put(PanelEvent.MUTE_TOGGLE)
    service.handle_panel()
    assert not service.engine.muted and service.panel.led_mode is LedMode.PLAYING


def test_a_refused_model_shows_the_error_pattern(service, tmp_path):
    (tmp_path / "state" / "models").mkdir(parents=True, exist_ok=True)
    (tmp_path / "state" / "models" / "Aaa.tflite").write_bytes(b"broken")
    service.panel.events.put(PanelEvent.PREVIOUS_MODEL)  # TestFixture -> Aaa (sorted, wrapping)
    service.handle_panel()
    assert service.model_name == "TestFixture"
    assert service.panel.led_mode is LedMode.ERROR
    assert "Aaa.tflite" in service.last_reload_error
