"""The front panel: a rotary encoder, a push button and a status LED. The only module that
imports ``gpiozero``.

The encoder picks the next or previous model, holding the button mutes (panic), and the LED
says what the box is doing. gpiozero calls the handlers from its own threads (the pin-event
thread and the button's hold thread); the handlers only put a :class:`PanelEvent` on a
:class:`PanelEvents` queue, which the daemon drains from its control loop. Nothing here touches
audio. The LED patterns run on gpiozero's own background threads, so :meth:`Panel.set_led`
never blocks.

Tests pass ``pin_factory=MockFactory(pin_class=MockPWMPin)``; see ``tests/controls/test_panel.py``.
Wiring and default pins: ``hardware/README.md``.
"""

from __future__ import annotations

import collections
import dataclasses
import enum
import itertools
import logging
import threading
import time
from typing import Any

from ..errors import ConfigError, DdspDeviceError

__all__ = [
    "RESERVED_GPIOS",
    "SHORT_PRESS_ACTIONS",
    "LedMode",
    "Panel",
    "PanelError",
    "PanelEvent",
    "PanelEvents",
    "PanelSettings",
]

log = logging.getLogger(__name__)


class PanelError(DdspDeviceError, OSError):
    """The panel's GPIOs cannot be opened (no GPIO access, pin in use, gpiozero missing)."""


#: GPIOs (BCM numbers) the default build uses for something else, with what uses them.
RESERVED_GPIOS: dict[int, str] = {
    0: "the HAT ID EEPROM (ID_SD)",
    1: "the HAT ID EEPROM (ID_SC)",
    2: "I2C SDA (the sensors)",
    3: "I2C SCL (the sensors)",
    18: "the I2S DAC (BCLK)",
    19: "the I2S DAC (LRCLK)",
    20: "the I2S DAC (DIN)",
    21: "the I2S DAC (DOUT)",
}

#: What a short press of the button (released before ``hold_time_s``) does.
SHORT_PRESS_ACTIONS = ("none", "mute_toggle", "next_model")


@dataclasses.dataclass(frozen=True)
class PanelSettings:
    """Pins and timings of the panel. Pins are BCM GPIO numbers; ``None`` means not fitted.

    Attributes:
        encoder_a_pin: encoder contact A (its common contact C goes to GND).
        encoder_b_pin: encoder contact B. Swap A and B to reverse the direction.
        button_pin: push button to GND (the internal pull-up is used).
        led_pin: status LED anode, through a series resistor; cathode to GND.
        hold_time_s: how long the button must be held to toggle mute, seconds.
        short_press: what a shorter press does, one of :data:`SHORT_PRESS_ACTIONS`.
        button_bounce_s: contact debounce time, seconds; ``None`` for none.
        led_brightness: LED level while playing, 0..1 (the other modes use the full range).
        led_frequency_hz: LED PWM frequency, Hz.
    """

    encoder_a_pin: int | None = 5
    encoder_b_pin: int | None = 6
    button_pin: int | None = 26
    led_pin: int | None = 12
    hold_time_s: float = 1.0
    short_press: str = "none"
    button_bounce_s: float | None = 0.01
    led_brightness: float = 0.5
    led_frequency_hz: float = 100.0

    def problems(self) -> list[str]:
        """Every problem with these settings, one ``panel.key: message`` each ([] when valid)."""
        out: list[str] = []
        pins = {
            "encoder_a_pin": self.encoder_a_pin,
            "encoder_b_pin": self.encoder_b_pin,
            "button_pin": self.button_pin,
            "led_pin": self.led_pin,
        }
        seen: dict[int, str] = {}
        for key, pin in pins.items():
            if pin is None:
                continue
            if isinstance(pin, bool) or not isinstance(pin, int) or not 0 <= pin <= 27:
                out.append(f"panel.{key}: {pin!r} is not a BCM GPIO number 0..27")
                continue
            if pin in RESERVED_GPIOS:
                out.append(f"panel.{key}: GPIO {pin} is used by {RESERVED_GPIOS[pin]}")
            if pin in seen:
                out.append(f"panel.{key}: GPIO {pin} is also panel.{seen[pin]}")
            else:
                seen[pin] = key
        if (self.encoder_a_pin is None) != (self.encoder_b_pin is None):
            out.append("panel.encoder_b_pin: the encoder needs both pins, or neither")
        if not 0.05 <= self.hold_time_s <= 10.0:
            out.append(f"panel.hold_time_s: {self.hold_time_s!r} is outside 0.05..10 seconds")
        if self.short_press not in SHORT_PRESS_ACTIONS:
            out.append(
                f"panel.short_press: {self.short_press!r} is not one of "
                + ", ".join(SHORT_PRESS_ACTIONS)
            )
        if self.button_bounce_s is not None and not 0.0 <= self.button_bounce_s <= 0.2:
            out.append(f"panel.button_bounce_s: {self.button_bounce_s!r} is outside 0..0.2 seconds")
        if not 0.0 <= self.led_brightness <= 1.0:
            out.append(f"panel.led_brightness: {self.led_brightness!r} is outside 0..1")
        if not 1.0 <= self.led_frequency_hz <= 10000.0:
            out.append(f"panel.led_frequency_hz: {self.led_frequency_hz!r} is outside 1..10000 Hz")
        return out


class PanelEvent(enum.Enum):
    """Something the player did on the panel."""

    NEXT_MODEL = "next_model"
    PREVIOUS_MODEL = "previous_model"
    MUTE_TOGGLE = "mute_toggle"


class PanelEvents:
    """A small bounded, thread-safe FIFO of :class:`PanelEvent`.

    gpiozero's threads :meth:`put`; the daemon's control loop calls :meth:`get_nowait` or
    :meth:`drain` (not the audio thread: these take a lock). When full, the oldest event is
    dropped and counted in :attr:`dropped`.
    """

    def __init__(self, maxlen: int = 64):
        if maxlen < 1:
            raise ValueError(f"maxlen must be at least 1, not {maxlen!r}")
        self._queue: collections.deque[PanelEvent] = collections.deque(maxlen=maxlen)
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self.dropped = 0

    def put(self, event: PanelEvent) -> None:
        with self._lock:
            if len(self._queue) == self._queue.maxlen:
                self.dropped += 1
            self._queue.append(event)
            self._ready.set()

    def get_nowait(self) -> PanelEvent | None:
        """The oldest event, or ``None`` when there is none."""
        with self._lock:
            if not self._queue:
                return None
            event = self._queue.popleft()
            if not self._queue:
                self._ready.clear()
            return event

    def drain(self) -> list[PanelEvent]:
        """Every waiting event, oldest first ([] when none)."""
        with self._lock:
            events = list(self._queue)
            self._queue.clear()
            self._ready.clear()
            return events

    def wait(self, timeout_s: float | None = None) -> bool:
        """Block until an event is waiting or ``timeout_s`` passes; True if one is waiting."""
        return self._ready.wait(timeout_s)

    def __len__(self) -> int:
        with self._lock:
            return len(self._queue)


class LedMode(enum.Enum):
    """What the status LED shows."""

    OFF = "off"
    LOADING = "loading"  # breathing
    PLAYING = "playing"  # steady at PanelSettings.led_brightness
    ERROR = "error"  # double flash, pause
    MUTED = "muted"  # slow blink


#: Breathing while loading: fade in, fade out, seconds.
LOADING_FADE_S = (0.8, 0.8)
#: Slow blink while muted: on, off, seconds.
MUTED_BLINK_S = (0.5, 1.0)
#: Error pattern, one value per ERROR_STEP_S: two short flashes, then a pause.
ERROR_PATTERN = (1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0)
ERROR_STEP_S = 0.1


class Panel:
    """The encoder, button and LED, opened through gpiozero.

    Args:
        settings: pins and timings (:class:`PanelSettings`); invalid settings raise
            :class:`~ddsp_device.errors.ConfigError` listing every problem.
        events: where events go; a new :class:`PanelEvents` if not given (see :attr:`events`).
        pin_factory: a gpiozero pin factory; ``None`` uses gpiozero's default (lgpio on a Pi).
            Tests pass ``MockFactory(pin_class=MockPWMPin)``.

    Raises:
        PanelError: gpiozero is not installed, or a GPIO cannot be opened.

    Use as a context manager, or call :meth:`close` (twice is harmless)::

        with Panel(PanelSettings()) as panel:
            panel.set_led(LedMode.LOADING)
            ...
            for event in panel.events.drain():
                ...
    """

    def __init__(
        self,
        settings: PanelSettings | None = None,
        events: PanelEvents | None = None,
        *,
        pin_factory: Any = None,
    ):
        self.settings = settings = settings if settings is not None else PanelSettings()
        problems = settings.problems()
        if problems:
            raise ConfigError(problems)
        self.events = events if events is not None else PanelEvents()
        self._lock = threading.Lock()
        self._closed = False
        self._led_mode = LedMode.OFF
        self._pressed_at: float | None = None
        self._hold_fired = False
        self._encoder = self._button = self._led = None
        what = "panel"
        try:
            import gpiozero
        except ImportError as err:
            raise PanelError(
                f"the panel needs gpiozero (pip install 'ddsp-device[hw]'): {err}"
            ) from err
        try:
            if settings.encoder_a_pin is not None and settings.encoder_b_pin is not None:
                what = f"encoder on GPIO {settings.encoder_a_pin} and {settings.encoder_b_pin}"
                # max_steps=0: unbounded, so a step always fires its event.
                self._encoder = gpiozero.RotaryEncoder(
                    settings.encoder_a_pin,
                    settings.encoder_b_pin,
                    max_steps=0,
                    pin_factory=pin_factory,
                )
                self._encoder.when_rotated_clockwise = self.on_next_model
                self._encoder.when_rotated_counter_clockwise = self.on_previous_model
            if settings.button_pin is not None:
                what = f"button on GPIO {settings.button_pin}"
                self._button = gpiozero.Button(
                    settings.button_pin,
                    pull_up=True,
                    bounce_time=settings.button_bounce_s,
                    hold_time=settings.hold_time_s,
                    hold_repeat=False,
                    pin_factory=pin_factory,
                )
                self._button.when_pressed = self._on_pressed
                self._button.when_held = self._on_held
                self._button.when_released = self._on_released
            if settings.led_pin is not None:
                what = f"status LED on GPIO {settings.led_pin}"
                self._led = gpiozero.PWMLED(
                    settings.led_pin,
                    active_high=True,
                    initial_value=0.0,
                    frequency=settings.led_frequency_hz,
                    pin_factory=pin_factory,
                )
        except Exception as err:  # gpiozero's GPIOZeroError tree, lgpio.error, OSError
            self.close()
            raise PanelError(
                f"panel: cannot open the {what}: {type(err).__name__}: {err}"
            ) from err
        log.info(
            "panel: encoder GPIO %s/%s, button GPIO %s (hold %.2f s), LED GPIO %s",
            settings.encoder_a_pin,
            settings.encoder_b_pin,
            settings.button_pin,
            settings.hold_time_s,
            settings.led_pin,
        )

    # -- handlers: run in gpiozero's threads; they only queue events -------------------------

    def on_next_model(self) -> None:
        """The encoder turned one step clockwise."""
        self.events.put(PanelEvent.NEXT_MODEL)

    def on_previous_model(self) -> None:
        """The encoder turned one step counter-clockwise."""
        self.events.put(PanelEvent.PREVIOUS_MODEL)

    def on_mute_toggle(self) -> None:
        """The button was held for ``hold_time_s`` (mute / panic)."""
        self.events.put(PanelEvent.MUTE_TOGGLE)

    def _on_pressed(self) -> None:
        self._pressed_at = time.monotonic()
        self._hold_fired = False

    def _on_held(self) -> None:
        self._hold_fired = True
        self.on_mute_toggle()

    def _on_released(self) -> None:
        pressed_at, self._pressed_at = self._pressed_at, None
        if self._hold_fired or pressed_at is None:
            return
        if time.monotonic() - pressed_at >= self.settings.hold_time_s:
            return  # released just as the hold fired: count it once, as the hold
        action = self.settings.short_press
        if action == "mute_toggle":
            self.on_mute_toggle()
        elif action == "next_model":
            self.on_next_model()

    # -- LED -------------------------------------------------------------------------------

    @property
    def led_mode(self) -> LedMode:
        return self._led_mode

    def set_led(self, mode: LedMode | str, brightness: float | None = None) -> None:
        """Show ``mode`` on the status LED; returns at once (patterns run in the background).

        Args:
            mode: a :class:`LedMode` or its value (``"loading"``, ``"playing"``, ...).
            brightness: level for ``playing``, 0..1; ``None`` keeps the current one
                (initially ``settings.led_brightness``).
        """
        mode = LedMode(mode)
        if brightness is not None and not 0.0 <= brightness <= 1.0:
            raise ValueError(f"brightness must be within 0..1, not {brightness!r}")
        with self._lock:
            if self._closed:
                return
            if brightness is not None:
                self.settings = dataclasses.replace(self.settings, led_brightness=brightness)
            self._led_mode = mode
            led = self._led
            if led is None:
                return
            led.source = None  # stops an ERROR pattern; value/blink/pulse stop the others
            if mode is LedMode.OFF:
                led.off()
            elif mode is LedMode.PLAYING:
                led.value = self.settings.led_brightness
            elif mode is LedMode.LOADING:
                fade_in_s, fade_out_s = LOADING_FADE_S
                led.pulse(fade_in_time=fade_in_s, fade_out_time=fade_out_s, background=True)
            elif mode is LedMode.MUTED:
                on_s, off_s = MUTED_BLINK_S
                led.blink(on_time=on_s, off_time=off_s, background=True)
            elif mode is LedMode.ERROR:
                led.off()
                led.source_delay = ERROR_STEP_S
                led.source = itertools.cycle(ERROR_PATTERN)

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Turn the LED off and release the GPIOs. Calling it again does nothing."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            devices = (self._led, self._button, self._encoder)
            self._led = self._button = self._encoder = None
        for device in devices:
            if device is None:
                continue
            try:
                device.close()
            except Exception as err:  # closing must go on with the others
                log.warning("panel: closing %r failed: %s", device, err)

    def __enter__(self) -> Panel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else self._led_mode.value
        return f"<Panel {state} {self.settings}>"
