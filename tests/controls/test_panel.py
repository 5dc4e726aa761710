"""The panel through gpiozero's MockFactory: encoder, button hold, LED modes, lifecycle."""

import time

import pytest

gpiozero = pytest.importorskip("gpiozero")

from ddsp_device.controls.panel import (  # noqa: E402
    ERROR_PATTERN,
    LedMode,
    Panel,
    PanelError,
    PanelEvent,
    PanelEvents,
    PanelSettings,
)
from ddsp_device.errors import ConfigError, DdspDeviceError  # noqa: E402
from gpiozero.pins.mock import MockFactory, MockPWMPin  # noqa: E402

HOLD_S = 0.2
SETTINGS = PanelSettings(hold_time_s=HOLD_S, button_bounce_s=None, led_brightness=0.4)


@pytest.fixture
def factory():
    f = MockFactory(pin_class=MockPWMPin)
    yield f
    f.reset()


@pytest.fixture
def panel(factory):
    with Panel(SETTINGS, pin_factory=factory) as p:
        yield p


def pin(factory, gpio):
    return factory.pin(gpio)


def turn(factory, clockwise, steps=1):
    """Drive one full quadrature cycle per step (pull-ups: a pin low = contact closed).

    Clockwise, with A as the high bit: 0 → 2 → 3 → 1 → 0 (A closes first, B follows).
    """
    a, b = pin(factory, SETTINGS.encoder_a_pin), pin(factory, SETTINGS.encoder_b_pin)
    first, second = (a, b) if clockwise else (b, a)
    for _ in range(steps):
        first.drive_low()
        second.drive_low()
        first.drive_high()
        second.drive_high()


def wait_for(predicate, timeout_s=10.0):  # a bound on a hang only: returns when it holds
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.005)
    return predicate()


def led_values(factory):
    return [s.state for s in pin(factory, SETTINGS.led_pin).states]


# -- encoder ---------------------------------------------------------------------------------


def test_clockwise_steps_are_next_model(panel, factory):
    turn(factory, clockwise=True, steps=3)
    assert panel.events.drain() == [PanelEvent.NEXT_MODEL] * 3


def test_counter_clockwise_steps_are_previous_model(panel, factory):
    turn(factory, clockwise=False, steps=2)
    assert panel.events.drain() == [PanelEvent.PREVIOUS_MODEL] * 2


def test_steps_keep_firing_past_gpiozero_max_steps(panel, factory):
    turn(factory, clockwise=True, steps=40)
    assert panel.events.drain() == [PanelEvent.NEXT_MODEL] * 40


def test_half_a_step_and_back_is_nothing(panel, factory):
    a = pin(factory, SETTINGS.encoder_a_pin)
    a.drive_low()
    a.drive_high()
    assert panel.events.drain() == []


def test_events_keep_their_order(panel, factory):
    turn(factory, clockwise=True)
    turn(factory, clockwise=False)
    turn(factory, clockwise=True)
    assert panel.events.get_nowait() is PanelEvent.NEXT_MODEL
    assert panel.events.get_nowait() is PanelEvent.PREVIOUS_MODEL
    assert panel.events.get_nowait() is PanelEvent.NEXT_MODEL
    assert panel.events.get_nowait() is None


# -- button ----------------------------------------------------------------------------------


def test_holding_the_button_toggles_mute_once(panel, factory):
    button = pin(factory, SETTINGS.button_pin)
    button.drive_low()
    assert panel.events.wait(HOLD_S * 10)
    time.sleep(HOLD_S * 1.5)  # still held: no repeat
    button.drive_high()
    assert panel.events.drain() == [PanelEvent.MUTE_TOGGLE]


def test_a_short_press_does_nothing_by_default(panel, factory):
    button = pin(factory, SETTINGS.button_pin)
    button.drive_low()  # released at once: short however slow the machine (no sleep to overrun HOLD_S)
    button.drive_high()
    time.sleep(HOLD_S * 1.5)
    assert panel.events.drain() == []


@pytest.mark.parametrize(
    "action, expected",
    [("mute_toggle", PanelEvent.MUTE_TOGGLE), ("next_model", PanelEvent.NEXT_MODEL)],
)
def test_a_short_press_can_be_given_an_action(factory, action, expected):
    settings = PanelSettings(hold_time_s=HOLD_S, button_bounce_s=None, short_press=action)
    with Panel(settings, pin_factory=factory) as panel:
        button = pin(factory, settings.button_pin)
        button.drive_low()  # released at once: a short press on any machine
        button.drive_high()
        assert panel.events.drain() == [expected]
        # A long press is still the hold action only, not the short one as well.
        button.drive_low()
        assert panel.events.wait(HOLD_S * 10)
        button.drive_high()
        assert panel.events.drain() == [PanelEvent.MUTE_TOGGLE]


def test_events_can_go_to_a_shared_queue(factory):
    shared = PanelEvents()
    with Panel(SETTINGS, shared, pin_factory=factory) as panel:
        assert panel.events is shared
        turn(factory, clockwise=True)
    assert shared.drain() == [PanelEvent.NEXT_MODEL]


# -- LED -------------------------------------------------------------------------------------


def test_led_starts_off_and_playing_is_steady_at_the_brightness(panel, factory):
    led = pin(factory, SETTINGS.led_pin)
    assert led.state == 0.0
    assert led.frequency == SETTINGS.led_frequency_hz
    panel.set_led(LedMode.PLAYING)
    assert led.state == pytest.approx(0.4)
    time.sleep(0.1)
    assert led.state == pytest.approx(0.4)  # steady: nothing in the background
    panel.set_led("playing", brightness=0.9)
    assert led.state == pytest.approx(0.9)
    assert panel.led_mode is LedMode.PLAYING


def test_loading_breathes(panel, factory):
    pin(factory, SETTINGS.led_pin).clear_states()
    panel.set_led(LedMode.LOADING)
    assert wait_for(lambda: len({v for v in led_values(factory) if 0.0 < v < 1.0}) >= 5)
    rising = [v for v in led_values(factory)[1:8]]
    assert rising == sorted(rising)  # fading in
    panel.set_led(LedMode.OFF)
    assert pin(factory, SETTINGS.led_pin).state == 0.0


def test_muted_blinks_slowly_on_and_off(panel, factory):
    pin(factory, SETTINGS.led_pin).clear_states()
    panel.set_led(LedMode.MUTED)
    assert wait_for(lambda: led_values(factory)[-2:] == [1.0, 0.0])
    assert set(led_values(factory)) <= {0.0, 1.0}


def test_error_shows_its_pattern(panel, factory):
    pin(factory, SETTINGS.led_pin).clear_states()
    panel.set_led(LedMode.ERROR)
    # two flashes (on, off, on, off), then the pause, then it starts again
    assert wait_for(lambda: led_values(factory).count(1.0) >= 3)
    assert set(led_values(factory)) <= {0.0, 1.0}
    assert ERROR_PATTERN.count(1.0) == 2


def test_switching_from_error_stops_the_pattern(panel, factory):
    panel.set_led(LedMode.ERROR)
    time.sleep(0.15)
    panel.set_led(LedMode.PLAYING)
    led = pin(factory, SETTINGS.led_pin)
    led.clear_states()
    time.sleep(0.4)
    assert led.state == pytest.approx(0.4)
    assert len(led.states) == 1  # nothing wrote to the pin since


def test_set_led_rejects_bad_values(panel):
    with pytest.raises(ValueError):
        panel.set_led("disco")
    with pytest.raises(ValueError):
        panel.set_led(LedMode.PLAYING, brightness=1.5)


# -- settings and lifecycle ------------------------------------------------------------------


def test_settings_problems_are_all_reported():
    bad = PanelSettings(
        encoder_a_pin=2,  # I2C SDA
        encoder_b_pin=19,  # I2S
        button_pin=12,
        led_pin=12,  # duplicate
        hold_time_s=0.0,
        short_press="explode",
        led_brightness=2.0,
    )
    problems = bad.problems()
    assert any(p.startswith("panel.encoder_a_pin: GPIO 2 is used by I2C SDA") for p in problems)
    assert any(p.startswith("panel.encoder_b_pin: GPIO 19 is used by the I2S") for p in problems)
    assert any(p.startswith("panel.led_pin: GPIO 12 is also panel.button_pin") for p in problems)
    assert any(p.startswith("panel.hold_time_s:") for p in problems)
    assert any(p.startswith("panel.short_press:") for p in problems)
    assert any(p.startswith("panel.led_brightness:") for p in problems)
    with pytest.raises(ConfigError) as info:
        Panel(bad, pin_factory=MockFactory(pin_class=MockPWMPin))
    assert len(info.value.problems) == len(problems)
    assert PanelSettings().problems() == []


def test_unfitted_parts_are_skipped(factory):
    settings = PanelSettings(encoder_a_pin=None, encoder_b_pin=None, led_pin=None)
    with Panel(settings, pin_factory=factory) as panel:
        panel.set_led(LedMode.ERROR)  # no LED: harmless
        assert panel.led_mode is LedMode.ERROR
    assert PanelSettings(encoder_a_pin=None).problems() == [
        "panel.encoder_b_pin: the encoder needs both pins, or neither"
    ]


def test_a_pin_in_use_is_a_panel_error(factory):
    other = gpiozero.LED(SETTINGS.led_pin, pin_factory=factory)
    try:
        with pytest.raises(PanelError, match="status LED on GPIO 12") as info:
            Panel(SETTINGS, pin_factory=factory)
        assert isinstance(info.value, DdspDeviceError) and isinstance(info.value, OSError)
    finally:
        other.close()
    # the encoder and button opened before the failure were released again
    with Panel(SETTINGS, pin_factory=factory):
        pass


def test_close_twice_is_harmless_and_turns_the_led_off(factory):
    panel = Panel(SETTINGS, pin_factory=factory)
    panel.set_led(LedMode.LOADING)
    panel.close()
    panel.close()
    assert panel.closed
    assert pin(factory, SETTINGS.led_pin).state == 0.0
    panel.set_led(LedMode.PLAYING)  # after close: ignored
    turn(factory, clockwise=True)  # pins released: no events
    assert panel.events.drain() == []


def test_context_manager_closes(factory):
    with Panel(SETTINGS, pin_factory=factory) as panel:
        panel.set_led(LedMode.ERROR)
    assert panel.closed
    led = pin(factory, SETTINGS.led_pin)
    led.clear_states()
    time.sleep(0.3)
    assert len(led.states) == 1  # the pattern thread stopped


def test_events_queue_is_bounded_and_counts_drops():
    q = PanelEvents(maxlen=2)
    for _ in range(3):
        q.put(PanelEvent.NEXT_MODEL)
    assert len(q) == 2 and q.dropped == 1
    assert q.wait(0) is True
    assert q.drain() == [PanelEvent.NEXT_MODEL] * 2
    assert q.wait(0) is False


def test_only_the_panel_imports_gpiozero():
    import ast
    from pathlib import Path

    import ddsp_device

    package = Path(ddsp_device.__file__).parent
    importers = []
    for path in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            if any(n == "gpiozero" or n.startswith("gpiozero.") for n in names):
                importers.append(path.relative_to(package).as_posix())
                break
    assert importers == ["controls/panel.py"]
