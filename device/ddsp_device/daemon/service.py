"""``ddsp-device run``: the box, from power-on to power-off.

One function, :func:`run_service`, starts the subsystems in order and stops them in reverse in
``finally`` (mopidy's shape). Three kinds of thread:

- the **audio thread** (:class:`~ddsp_device.daemon.audio.AudioThread`): engine → sink, period
  by period; no locks, no logging, no allocation;
- the **sensor thread** (:class:`~ddsp_device.controls.poller.SensorPoller`): publishes the
  newest controls by one attribute assignment;
- the **control thread** (the main thread, here): everything slow — signals, reloads, model
  loading and checking, panel events, knobs, systemd notifications, the status socket, logging.

SIGHUP (``systemctl reload``) re-reads the config, the calibration and the selected model; the
new model is loaded and checked here, then handed to the engine, which crossfades to it. Anything
that fails its checks is logged with the reason and the old state keeps playing. SIGTERM fades
out within 20 ms, drains, closes the PCM and exits 0.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from .. import __version__
from ..config import load_config
from ..errors import AudioError, ConfigError, DdspDeviceError, ModelError, SensorError

log = logging.getLogger(__name__)

CONTROL_TICK_S = 0.02
STATUS_INTERVAL_S = 2.0
SUMMARY_INTERVAL_S = 300.0
FADE_OUT_S = 0.015
#: Inferences run on a freshly loaded model before the audio thread gets it.
WARM_UP_STEPS = 16
#: The reverb knob's full turn: a light room, not a cathedral.
REVERB_KNOB_MAX_MIX = 0.5


@dataclass
class RunOptions:
    """What ``ddsp-device run`` was asked to do beyond the config."""

    config_file: str | None = None
    overrides: list[str] = field(default_factory=list)
    out_wav: str | None = None  # write to a WAV file (paced in real time) instead of ALSA
    emulate: bool = False  # emulated sensors playing by themselves (no I2C needed)
    seconds: float | None = None  # stop by itself after this long (tests, burn-in)
    realtime_priority: int = 70


class PacedSink:
    """Wraps a sink that never blocks (a file) so that it takes audio at the real-time rate."""

    def __init__(self, sink, sample_rate: int):
        self.sink = sink
        self.sample_rate = sample_rate
        self._t0: float | None = None
        self._frames = 0

    def write(self, block):
        if self._t0 is None:
            self._t0 = time.monotonic()
        self._frames += len(block)
        ahead = self._t0 + self._frames / self.sample_rate - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)
        return self.sink.write(block)

    def close(self) -> None:
        self.sink.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sink, name)


class Service:
    """The running daemon's state, owned by the control thread."""

    def __init__(self, options: RunOptions, *, sink_factory: Callable[..., Any] | None = None,
                 bus=None, clock=None, state_store=None):
        self.options = options
        self.sink_factory = sink_factory
        self.bus = bus
        self.clock = clock
        self.cfg = load_config(options.config_file, options.overrides)
        from .state import StateStore

        self.state = state_store or StateStore()
        self.engine = None
        self.rig = None
        self.panel = None
        self.audio = None
        self.status_server = None
        self.notifier = None
        self.model_name = ""
        self.started_at = time.monotonic()
        self.reload_requested = threading.Event()
        self.stop_requested = threading.Event()
        self.reloads = 0
        self.reloads_refused = 0
        self.last_reload_error: str | None = None
        self._muted = False
        self.on_tick: Callable[[Service], None] | None = None

    # ------------------------------------------------------------------ models
    def selected_model(self) -> str:
        """The model to play: the one chosen with ``models use`` (state), else ``[model] name``."""
        chosen = self.state.reload_selection()
        return chosen or self.cfg.model.name

    def _model_dirs(self) -> str | None:
        return self.cfg.model.directory or None

    def load_model(self, name: str):
        """Check a model in a child process (a file that crashes the TFLite library takes down
        the child, not the box), then load it here, off the audio thread.

        Raises:
            ModelError: naming the file and every problem found.
        """
        from ..library import model_defaults, resolve_model
        from ..model import load_model
        from ..models_cli import check_model_file

        path = resolve_model(name, self._model_dirs())
        defaults = model_defaults(self.cfg)
        result = check_model_file(path, runtime=self.cfg.model.runtime, defaults=defaults)
        if not result.ok:
            raise ModelError("; ".join(result.problems))
        model = load_model(path, defaults=defaults, runtime=self.cfg.model.runtime, num_threads=1)
        # First invokes are slow (the runtime sets up its kernels, XNNPACK its delegate): pay for
        # them here, not in the audio period that picks the model up (the engine resets it then).
        f0_hz = min(max(220.0, model.info.f0_min_hz), model.info.f0_max_hz)
        model.reset(f0_hz)
        for _ in range(WARM_UP_STEPS):
            model.step(f0_hz, 0.5)
        return model

    def available_models(self) -> list[str]:
        from ..library import search_path

        names: set[str] = set()
        for d in search_path(self._model_dirs()):
            if d.is_dir():
                names.update(p.stem for p in d.glob("*.tflite"))
        return sorted(names)

    # ------------------------------------------------------------------ start-up
    def open_sink(self):
        """The audio sink for the audio thread (called again to reopen a vanished device)."""
        cfg = self.cfg
        if self.sink_factory is not None:
            return self.sink_factory(cfg)
        if self.options.out_wav:
            from ..audio.sinks import WavSink

            return PacedSink(WavSink(self.options.out_wav, cfg.audio.sample_rate, max_block=cfg.audio.period_size),
                             cfg.audio.sample_rate)
        from ..audio.alsa import AlsaSink

        sink = AlsaSink(cfg.audio.device, cfg.audio.sample_rate, cfg.audio.period_size, cfg.audio.periods)
        return PacedSink(sink, sink.sample_rate) if cfg.audio.pace else sink

    def start_controls(self):
        """Sensors and mapping; a missing bus or sensor is logged, never fatal (silence instead)."""
        from ..controls.rig import build_rig

        bus, clock = self.bus, self.clock
        if self.options.emulate and bus is None:  # the emulated build plays its gesture
            from ..controls.bus import SYSTEM_CLOCK
            from ..controls.tools import EmulatedPlayer

            clock = clock or SYSTEM_CLOCK
            bus = EmulatedPlayer(self.cfg, clock, gesture=True).bus
        try:
            rig = build_rig(self.cfg, bus=bus, clock=clock)
        except SensorError as err:
            log.error("%s; playing nothing until it is fixed (then restart the service)", err)
            return None
        if not rig.calibrated:
            log.warning("no calibration saved yet; using defaults (run `ddsp-device calibrate`)")
        rig.poller.start()
        return rig

    def start_panel(self):
        if not self.cfg.panel.enabled:
            return None
        try:
            from ..controls.panel import Panel, PanelSettings
        except ImportError as err:  # gpiozero missing
            log.warning("panel disabled: %s", err)
            return None
        p = self.cfg.panel

        def pin(n: int):
            return None if n < 0 else n

        settings = PanelSettings(
            encoder_a_pin=pin(p.encoder_a_pin), encoder_b_pin=pin(p.encoder_b_pin),
            button_pin=pin(p.button_pin), led_pin=pin(p.led_pin), hold_time_s=p.hold_time_s,
            short_press=p.short_press, led_brightness=p.led_brightness,
        )
        try:
            return Panel(settings)
        except DdspDeviceError as err:
            log.warning("panel disabled: %s", err)
            return None

    def controls_reader(self) -> Callable[[], Any]:
        """What the audio thread calls each period: ``(f0_hz, loudness)`` or None.

        It reads ``self.rig`` each time, so a reload can swap the rig by one assignment.
        """

        def read():
            rig = self.rig
            if rig is None:
                return None
            state = rig.poller.latest
            return state.f0_hz, state.loudness

        return read

    def _controls_fingerprint(self, cfg) -> tuple:
        from ..controls.calibration import default_path

        try:
            mtime = default_path().stat().st_mtime_ns
        except OSError:
            mtime = None
        return tuple(sorted(cfg.as_dict()["controls"].items())), mtime

    def reload_controls(self, old_cfg) -> None:
        """Rebuild the sensors and mapping when ``[controls]`` or the calibration changed.

        The new rig takes over the pressure baseline (no re-zeroing while someone plays) and is
        swapped in by one assignment once it has read its sensors; then the old one is closed.
        """
        if self.rig is None or (self.options.emulate and self.bus is None):
            return  # --emulate's player lives in its rig: nothing to re-read
        if self._controls_fingerprint(old_cfg) == self._controls_fingerprint(self.cfg):
            return
        old = self.rig
        new = self.start_controls()
        if new is None:
            return
        old_p, new_p = old.mapper.pressure, new.mapper.pressure
        if old_p is not None and new_p is not None and old_p.baseline is not None:
            new_p.set_baseline(old_p.baseline)
        deadline = time.monotonic() + 0.1
        while new.poller.latest.raw is None and time.monotonic() < deadline:
            time.sleep(0.002)
        self.rig = new
        old.close()
        log.info("controls reloaded (config or calibration changed)")

    # ------------------------------------------------------------------ running
    def apply_knobs(self) -> None:
        """Volume and reverb knobs → engine gain and reverb mix (plain float attributes)."""
        rig, engine = self.rig, self.engine
        if rig is None or engine is None:
            return
        state = rig.poller.latest
        base_db = self.cfg.synth.master_gain_db
        volume = rig.knob(state, "volume")
        if volume is not None:
            from ..controls.mapping import knob_to_gain_db

            gain_db = base_db + knob_to_gain_db(volume, self.cfg.controls.volume_min_db, 0.0)
            engine.gain = 10.0 ** (gain_db / 20.0)
        reverb = rig.knob(state, "reverb")
        if reverb is not None:
            from ..controls.mapping import knob_to_reverb_mix

            engine.reverb_mix = knob_to_reverb_mix(reverb, REVERB_KNOB_MAX_MIX)

    def handle_panel(self) -> None:
        panel = self.panel
        if panel is None:
            return
        from ..controls.panel import PanelEvent

        for event in panel.events.drain():
            if event is PanelEvent.MUTE_TOGGLE:
                self._muted = not self._muted
                self.engine.set_muted(self._muted)
                log.info("%s", "muted" if self._muted else "unmuted")
                self.set_led()
            elif event in (PanelEvent.NEXT_MODEL, PanelEvent.PREVIOUS_MODEL):
                names = self.available_models()
                if not names:
                    continue
                step = 1 if event is PanelEvent.NEXT_MODEL else -1
                i = names.index(self.model_name) if self.model_name in names else -1
                self.switch_model(names[(i + step) % len(names)], remember=True)

    def set_led(self, mode: str | None = None) -> None:
        if self.panel is None:
            return
        from ..controls.panel import LedMode

        if mode == "error":
            self.panel.set_led(LedMode.ERROR)
        elif mode == "loading":
            self.panel.set_led(LedMode.LOADING)
        else:
            self.panel.set_led(LedMode.MUTED if self._muted else LedMode.PLAYING)

    def switch_model(self, name: str, *, remember: bool = False) -> bool:
        """Load and check ``name`` here, then let the engine crossfade to it. False if refused."""
        self.set_led("loading")
        model = None
        try:
            model = self.load_model(name)
            self.engine.request_model(model)  # refuses what it cannot crossfade to
        except DdspDeviceError as err:
            if model is not None:
                model.close()
            self.reloads_refused += 1
            self.last_reload_error = str(err)
            log.error("model %r refused, still playing %r: %s", name, self.model_name, err)
            self.set_led("error")
            return False
        log.info("switching to model %r (%s)", model.info.name, model.info.path)
        self.model_name = name
        if remember:
            self.state.selected_model = name
            self.state.save()
        self.set_led()
        return True

    def reload(self) -> None:
        """SIGHUP: config, calibration and the selected model, each checked before use."""
        self.notifier.reloading()
        try:
            self._reload()
        finally:
            self.reloads += 1  # counted when done: `models use` waits for it, then reads the model
            self.notifier.ready()

    def _reload(self) -> None:
        try:
            cfg = load_config(self.options.config_file, self.options.overrides)
        except ConfigError as err:
            self.reloads_refused += 1
            self.last_reload_error = "; ".join(err.problems)
            for problem in err.problems:
                log.error("reload refused, keeping the running config: %s", problem)
            return
        changed_audio = [k for k in ("device", "sample_rate", "period_size", "periods")
                         if getattr(cfg.audio, k) != getattr(self.cfg.audio, k)]
        if changed_audio:
            log.warning("audio.%s changed: takes effect on restart (systemctl restart ddsp-device)",
                        ", audio.".join(changed_audio))
        old_cfg, self.cfg = self.cfg, cfg
        # synth settings that are plain numbers take effect at once
        if self.rig is None or self.rig.knob(self.rig.poller.latest, "reverb") is None:
            self.engine.reverb_mix = cfg.synth.reverb_mix
        if self.rig is None or self.rig.knob(self.rig.poller.latest, "volume") is None:
            self.engine.gain = 10.0 ** (cfg.synth.master_gain_db / 20.0)
        self.reload_controls(old_cfg)
        self.switch_model(self.selected_model())

    def status(self) -> dict:
        """The document ``ddsp-device status`` shows (see :mod:`ddsp_device.daemon.status`)."""
        cfg, audio, engine = self.cfg, self.audio, self.engine
        stats = audio.stats() if audio is not None else {}
        sink = getattr(audio, "sink", None)
        sensors = []
        if self.rig is not None:
            for s in self.rig.poller.latest.sensors:
                sensors.append({"name": s.name, "address": s.address, "state": "ok" if s.present else "absent",
                                "faults": s.faults, "retries": s.retries, "reconnects": s.reconnects})
        return {
            "version": __version__,
            "pid": os.getpid(),
            "model": self.model_name,
            "uptime_s": round(time.monotonic() - self.started_at, 1),
            "cpu_load": stats.get("cpu_load"),
            "period_ms": stats.get("period_ms"),
            "budget_ms": 1000.0 * cfg.audio.period_size / cfg.audio.sample_rate,
            "xruns": stats.get("xruns"),
            "late_periods": stats.get("late_periods"),
            "sensors": sensors,
            "counters": {
                "periods": stats.get("periods"), "reopens": stats.get("reopens"),
                "crossfades": getattr(engine, "crossfades", None), "reloads": self.reloads,
                "reloads_refused": self.reloads_refused, "nonfinite_controls": getattr(engine, "nonfinite_controls", None),
            },
            "audio": {
                "device": "file:" + self.options.out_wav if self.options.out_wav else cfg.audio.device,
                "rate": getattr(sink, "sample_rate", cfg.audio.sample_rate),
                "period": getattr(sink, "period_size", cfg.audio.period_size),
                "periods": getattr(sink, "periods", cfg.audio.periods),
                "realtime": getattr(audio, "realtime", None),
                "memory_locked": getattr(audio, "memory_locked", None),
            },
            "muted": self._muted,
            "last_reload_error": self.last_reload_error,
        }

    def status_line(self) -> str:
        s = self.audio.stats()
        load = s.get("cpu_load")
        load_text = f"{100 * load:.0f}%" if isinstance(load, (int, float)) else "-"
        muted = ", muted" if self._muted else ""
        return (f"playing {self.model_name}{muted}, load {load_text}, xruns {s.get('xruns', 0)}, "
                f"late periods {s.get('late_periods', 0)}")


def install_signal_handlers(service: Service) -> None:
    def on_hup(signum, frame):
        service.reload_requested.set()

    def on_term(signum, frame):
        service.stop_requested.set()

    signal.signal(signal.SIGHUP, on_hup)
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)


def run_service(options: RunOptions, *, on_tick: Callable[[Service], None] | None = None, **kwargs) -> int:
    """Run until SIGTERM (or ``options.seconds``). Returns the exit status.

    ``on_tick(service)`` is called from the control loop every tick (the soak drives its faults
    with it); ``kwargs`` go to :class:`Service` (test doubles at the hardware edge).
    """
    from ..engine import Engine, EngineSettings
    from .audio import AudioThread
    from .notify import Notifier
    from .status import StatusServer

    service = Service(options, **kwargs)
    service.on_tick = on_tick
    cfg = service.cfg
    service.notifier = notifier = Notifier.from_env()
    install_signal_handlers(service)
    try:
        name = service.selected_model()
        try:
            model = service.load_model(name)
        except ModelError as err:
            if name == cfg.model.name:
                raise
            log.error("selected model %r cannot be used (%s); playing [model] name %r instead", name, err, cfg.model.name)
            name = cfg.model.name
            model = service.load_model(name)
        service.model_name = name
        service.engine = engine = Engine(model, EngineSettings.from_config(cfg))
        service.rig = service.start_controls()
        service.panel = service.start_panel()
        service.set_led("loading")
        service.audio = audio = AudioThread(engine, service.open_sink, service.controls_reader(),
                                            cfg.audio.period_size, realtime_priority=options.realtime_priority)
        try:
            service.status_server = StatusServer(service.status)
        except (OSError, DdspDeviceError) as err:
            log.warning("status socket unavailable (%s); `ddsp-device status` will not answer", err)
        try:
            audio.start()  # opens the sink here, so "no device" ends the command with its reason
        except AudioError as err:
            if options.out_wav or service.sink_factory is not None:
                raise  # the file or test sink's own message names the problem
            raise AudioError(f"{err}; no usable ALSA device: set audio.device (see `aplay -L`) "
                             "or write to a file with --out FILE.wav") from err
        if not audio.first_period_written.wait(5.0):
            raise AudioError("the audio thread wrote nothing within 5 s")
        sink = audio.sink
        log.info(
            "playing %r on %s: %d Hz, period %d x %d (%.1f ms buffer); realtime %s, memory locked %s",
            service.model_name, service.status()["audio"]["device"], getattr(sink, "sample_rate", cfg.audio.sample_rate),
            getattr(sink, "period_size", cfg.audio.period_size), getattr(sink, "periods", cfg.audio.periods),
            1000.0 * getattr(sink, "period_size", cfg.audio.period_size) * getattr(sink, "periods", cfg.audio.periods)
            / cfg.audio.sample_rate, audio.realtime, audio.memory_locked,
        )
        notifier.ready(service.status_line())
        service.set_led()
        _control_loop(service)
        # SIGTERM: fade, drain, close
        notifier.stopping()
        audio.fade_out_and_stop(FADE_OUT_S)
        log.info("stopped after %.0f s: %s", time.monotonic() - service.started_at, service.status_line())
        return 0
    finally:
        for closer in (service.audio, service.status_server, service.panel, service.rig):
            if closer is not None:
                try:
                    closer.close()
                except Exception:  # noqa: BLE001 - shutting down: log, continue closing the rest
                    log.exception("while closing %r", closer)
        if service.engine is not None:
            service.engine.collect_retired()
            service.engine.close()
        if service.audio is not None:
            s = service.audio.stats()
            service.state.add("xruns", int(s.get("xruns") or 0))
        service.state.add("run_seconds", int(time.monotonic() - service.started_at))
        service.state.close()
        notifier.close()


def _control_loop(service: Service) -> None:
    """The control thread's loop: until SIGTERM or ``--seconds``."""
    notifier, audio, engine = service.notifier, service.audio, service.engine
    watchdog_s = notifier.watchdog_interval_s()
    t_end = None if service.options.seconds is None else time.monotonic() + service.options.seconds
    last_progress = -1
    last_ping = last_status = last_summary = time.monotonic()
    while not service.stop_requested.is_set():
        now = time.monotonic()
        if t_end is not None and now >= t_end:
            break
        if service.on_tick is not None:
            service.on_tick(service)
        if service.reload_requested.is_set():
            service.reload_requested.clear()
            service.reload()
        service.apply_knobs()
        service.handle_panel()
        engine.collect_retired()  # close models the engine has crossfaded away from
        # WATCHDOG=1 only while the audio thread makes progress: a stall stops the pings
        progress = audio.progress
        if watchdog_s and progress != last_progress and now - last_ping >= watchdog_s / 3:
            notifier.watchdog()
            last_ping = now
            last_progress = progress
        for message in audio.drain_events():
            log.warning("%s", message)
        if not audio.is_alive() and not service.stop_requested.is_set():
            raise AudioError("the audio thread stopped unexpectedly")
        if now - last_status >= STATUS_INTERVAL_S:
            notifier.status(service.status_line())
            service.state.maybe_save()
            last_status = now
        if now - last_summary >= SUMMARY_INTERVAL_S:
            s = audio.stats()
            log.info("summary: %s; period p99 %.3f ms of %.3f ms; %s periods", service.status_line(),
                     (s.get("period_ms") or {}).get("p99", float("nan")), 1000.0 * service.cfg.audio.period_size /
                     service.cfg.audio.sample_rate, s.get("periods"))
            last_summary = now
        service.stop_requested.wait(CONTROL_TICK_S)


__all__ = ["RunOptions", "Service", "run_service", "PacedSink"]
