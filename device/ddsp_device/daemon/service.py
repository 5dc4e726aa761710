"""``ddsp-device run``: the box, from power-on to power-off.

One function, :func:`run_service`, starts the subsystems in order and stops them in reverse in
``finally`` (mopidy's shape). Three kinds of thread:

- the **audio thread** (:class:`~ddsp_device.daemon.audio.AudioThread`): engine → sink, period
  by period; no locks, no logging, no allocation;
- the **sensor thread** (:class:`~ddsp_device.controls.poller.SensorPoller`): publishes the
  newest controls by one attribute assignment;
- the **control thread** (the main thread, here): everything slow — signals, reloads, model
  loading and checking, panel events, knobs, systemd notifications, the status socket, logging.

SIGHUP (``systemctl reload``, or a ``reload`` request on the status socket) re-reads the config,
the calibration and the selected model. A reload is all or nothing: the new config, calibration,
rig and model are built and checked first (the model in a child process, then loaded here);
then the engine is handed the model (it crossfades) and the rest is switched by assignments. If
anything fails, everything built is closed, the old state keeps playing, and one line with the
reason is logged and counted (``reloads_refused`` in ``status``); no exception from a reload
leaves the control loop. Settings that need a restart (``RESTART_KEYS``: the audio device and
buffer, the panel ...) keep their running values and are reported as "restart needed for …".
SIGTERM fades out within 20 ms, drains, closes the PCM and exits 0.
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
    realtime_priority: int | None = 70  # None: leave the audio thread's scheduling alone (tests)


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


#: Settings that take effect only when the service restarts: the sink, the engine's fixed parts
#: and the panel's pins are built once. A reload that changes one keeps the running value and
#: says "restart needed for …" (log and status).
RESTART_KEYS: tuple[str, ...] = (
    "audio.device", "audio.sample_rate", "audio.period_size", "audio.periods", "audio.pace",
    "synth.reverb_decay_s", "synth.noise_seed",
    "panel.enabled", "panel.encoder_a_pin", "panel.encoder_b_pin", "panel.button_pin", "panel.led_pin",
    "panel.hold_time_s", "panel.short_press", "panel.led_brightness",
)


class ReloadRefused(DdspDeviceError):
    """A reload that cannot be applied as a whole; the message is the one-line reason."""


@dataclass
class _ReloadPlan:
    """Everything a reload switches to, built before anything is switched."""

    cfg: Any
    rig: Any = None  # a new, started rig; None: keep the running one
    calibration: Any = None  # the saved calibration the new rig uses (None: defaults)
    calibration_key: Any = None
    model: Any = None  # a new, loaded and checked model; None: keep the playing one
    model_name: str = ""
    model_path: str = ""
    model_key: Any = None
    restart_needed: list[str] = field(default_factory=list)

    def discard(self) -> None:
        """Close what was built for a reload that is refused (nothing of it was handed over)."""
        for thing in (self.rig, self.model):
            if thing is not None:
                try:
                    thing.close()
                except Exception:  # noqa: BLE001 - a refused reload must not fail on its way out
                    log.debug("while discarding %r", thing, exc_info=True)
        self.rig = self.model = None


class Service:
    """The running daemon's state, owned by the control thread."""

    def __init__(self, options: RunOptions, *, sink_factory: Callable[..., Any] | None = None,
                 bus=None, clock=None, state_store=None):
        self.options = options
        self.sink_factory = sink_factory
        self.bus = bus
        self.clock = clock
        self.cfg = load_config(options.config_file, options.overrides)
        #: The config the service started with: what RESTART_KEYS still run at.
        self.start_cfg = self.cfg
        from .state import StateStore

        self.state = state_store or StateStore()
        self.engine = None
        self.rig = None
        self.panel = None
        self.audio = None
        self.status_server = None
        self.notifier = None
        self.model_name = ""
        self.model_path = ""
        self._model_key: Any = None
        self._calibration: Any = None  # the saved calibration the rig uses; None: the defaults
        self._calibration_key: Any = self._calibration_file_key()
        self.restart_needed: list[str] = []
        self.started_at = time.monotonic()
        self.reload_requested = threading.Event()
        self.stop_requested = threading.Event()
        self.reloads = 0
        self.reloads_refused = 0
        self.last_reload_error: str | None = None
        self._muted = False
        self.on_tick: Callable[[Service], None] | None = None

    # ------------------------------------------------------------------ models
    def selected_model(self) -> str | None:
        """The model chosen with ``models use`` (``state.json``), None when none.

        Raises:
            ModelError: ``state.json`` names something that is not a model name.
        """
        return self.state.reload_selection()

    def _model_dirs(self, cfg=None) -> str | None:
        return (cfg or self.cfg).model.directory or None

    def resolve(self, name: str, *, chosen: bool, cfg=None):
        """The file for model ``name``. A name ``chosen`` with ``models use`` or on the panel is a
        plain name looked up only in the models directories; ``[model] name`` may be a path.

        Raises:
            ModelError: not a model name, or not found.
        """
        from ..library import resolve_model, resolve_model_name

        directory = self._model_dirs(cfg)
        return resolve_model_name(name, directory) if chosen else resolve_model(name, directory)

    def _model_key_for(self, path, cfg) -> tuple:
        """What makes a loaded model the same as the file: the file itself and the [model]
        settings it was loaded with (runtime, fallbacks; the name and directory only found it)."""
        try:
            st = os.stat(path)
            identity = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        except OSError:
            identity = None
        loading = {k: v for k, v in cfg.as_dict()["model"].items() if k not in ("name", "directory")}
        return os.fspath(path), identity, tuple(sorted(loading.items()))

    def load_model(self, name: str, *, chosen: bool = False, cfg=None):
        """Check a model in a child process (a file that crashes the TFLite library takes down
        the child, not the box), then load it here, off the audio thread.

        Raises:
            ModelError: naming the file and every problem found.
        """
        return self.load_model_file(self.resolve(name, chosen=chosen, cfg=cfg), cfg)

    def load_model_file(self, path, cfg=None):
        """:meth:`load_model` for a file already resolved."""
        from ..library import model_defaults
        from ..model import load_model
        from ..model.check import check_model_file

        cfg = cfg or self.cfg
        defaults = model_defaults(cfg)
        result = check_model_file(path, runtime=cfg.model.runtime, defaults=defaults)
        if not result.ok:
            raise ModelError("; ".join(result.problems))
        model = load_model(path, defaults=defaults, runtime=cfg.model.runtime, num_threads=1)
        try:
            # First invokes are slow (the runtime sets up its kernels, XNNPACK its delegate): pay
            # for them here, not in the audio period that picks the model up (the engine resets it).
            f0_hz = min(max(220.0, model.info.f0_min_hz), model.info.f0_max_hz)
            model.reset(f0_hz)
            for _ in range(WARM_UP_STEPS):
                model.step(f0_hz, 0.5)
        except BaseException:
            model.close()
            raise
        return model

    def available_models(self) -> list[str]:
        """The model names the panel steps through (plain names only, as ``models use`` takes)."""
        from ..library import installed_models, validate_model_name

        names = []
        for entry in installed_models(self._model_dirs()):
            try:
                names.append(validate_model_name(entry["name"]))
            except ModelError:
                continue
        return sorted(names)

    def _set_playing(self, name: str, path, cfg) -> None:
        self.model_name = name
        self.model_path = os.fspath(path)
        self._model_key = self._model_key_for(path, cfg)

    # ------------------------------------------------------------------ start-up
    def open_sink(self):
        """The audio sink for the audio thread (called again to reopen a vanished device).

        Always at the settings the service started with: ``[audio]`` changes need a restart.
        """
        cfg = self.start_cfg
        if self.sink_factory is not None:
            return self.sink_factory(cfg)
        if self.options.out_wav:
            from ..audio.sinks import WavSink

            return PacedSink(WavSink(self.options.out_wav, cfg.audio.sample_rate, max_block=cfg.audio.period_size),
                             cfg.audio.sample_rate)
        from ..audio.alsa import AlsaSink

        sink = AlsaSink(cfg.audio.device, cfg.audio.sample_rate, cfg.audio.period_size, cfg.audio.periods)
        return PacedSink(sink, sink.sample_rate) if cfg.audio.pace else sink

    def build_controls(self, cfg, calibration=None):
        """Sensors and mapping for ``cfg``, the poller started. ``calibration`` None loads the
        saved one (or the defaults).

        Raises:
            SensorError: the bus cannot be opened; DdspDeviceError: the rig cannot be built.
        """
        from ..controls.rig import build_rig

        bus, clock = self.bus, self.clock
        if self.options.emulate and bus is None:  # the emulated build plays its gesture
            from ..controls.bus import SYSTEM_CLOCK
            from ..controls.tools import EmulatedPlayer

            clock = clock or SYSTEM_CLOCK
            bus = EmulatedPlayer(cfg, clock, gesture=True).bus
        rig = build_rig(cfg, bus=bus, clock=clock, calibration=calibration)
        rig.poller.start()
        return rig

    def start_controls(self):
        """Sensors and mapping at start-up; a missing bus or sensor is logged, never fatal."""
        from ..controls.rig import load_calibration

        calibration, saved = load_calibration(self.cfg)
        try:
            rig = self.build_controls(self.cfg, calibration)
        except DdspDeviceError as err:
            log.error("%s; playing nothing until it is fixed (then reload or restart the service)", err)
            return None
        self._calibration = calibration if saved else None
        if not saved:
            log.warning("no calibration saved yet; using defaults (run `ddsp-device calibrate`)")
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

    def _calibration_file_key(self):
        """What identifies the calibration file's content (None: no file); it is small, so its
        bytes are hashed rather than trusting a timestamp's granularity."""
        import hashlib

        from ..controls.calibration import default_path

        try:
            return hashlib.sha256(default_path().read_bytes()).hexdigest()
        except FileNotFoundError:
            return None
        except OSError as err:
            return f"unreadable: {err}"  # differs from any content: the reload reads it and says why

    # ------------------------------------------------------------------ running
    def apply_knobs(self) -> None:
        """Volume, reverb and tone knobs → engine gain, reverb mix and tone (plain float attributes)."""
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
        tone = rig.knob(state, "tone")
        if tone is not None:
            from ..controls.mapping import knob_to_tone

            engine.tone = knob_to_tone(tone)

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
        """The panel's choice: load and check ``name`` (a plain name in the models directories)
        here, then let the engine crossfade to it. False if refused (logged and counted)."""
        self.set_led("loading")
        model = path = None
        try:
            path = self.resolve(name, chosen=True)
            model = self.load_model_file(path)
            self.engine.request_model(model)  # refuses what it cannot crossfade to
        except Exception as err:  # noqa: BLE001 - nothing from a model may end the control loop
            if model is not None:
                model.close()
            reason = _one_line(err)
            self.reloads_refused += 1
            self.last_reload_error = reason
            log.error("model %r refused, still playing %r: %s", name, self.model_name, reason)
            self.set_led("error")
            return False
        log.info("switching to model %r (%s)", name, path)
        self._set_playing(name, path, self.cfg)
        if remember:
            self.state.selected_model = name
            self.state.save()
        self.set_led()
        return True

    # ------------------------------------------------------------------ reloading
    def request_reload(self) -> dict:
        """A reload asked for over the status socket (the server thread): raise the flag only."""
        self.reload_requested.set()
        return {"reloads": self.reloads}

    def reload(self) -> None:
        """SIGHUP: config, calibration, controls and the selected model, all or nothing."""
        self.notifier.reloading()
        try:
            self._reload()
        finally:
            self.reloads += 1  # counted when done: `models use` waits for it, then reads the model
            self.notifier.ready()

    def _reload(self) -> None:
        """Build everything new first; then switch to all of it at once, or keep all of the old.

        Nothing raised here reaches the control loop: a refusal (or any error) is one log line,
        counted in ``reloads_refused``, and the running config, calibration, controls and model
        stay exactly as they were.
        """
        plan = None
        try:
            plan = self._prepare_reload()
            if plan.model is not None:
                self.engine.request_model(plan.model)  # the switch: from here the engine owns it
        except Exception as err:  # noqa: BLE001 - nothing from a reload may end the control loop
            if plan is not None:
                plan.discard()
            self._refuse(err)
            return
        try:
            self._commit(plan)
        except Exception as err:  # noqa: BLE001 - switched already; only tidying up can fail here
            log.error("reloaded, but tidying up after the switch failed: %s", _one_line(err))

    def _refuse(self, err: BaseException) -> None:
        reason = _one_line(err)
        if not isinstance(err, DdspDeviceError):
            log.debug("reload failed unexpectedly", exc_info=err)
        self.reloads_refused += 1
        self.last_reload_error = reason
        log.error("reload refused, still running the previous config, calibration, controls and model: %s", reason)
        self.set_led("error")

    def _prepare_reload(self) -> _ReloadPlan:
        """The new config, calibration, rig and model, built and checked; nothing switched yet.

        Raises:
            ReloadRefused, DdspDeviceError (or anything else): the reason; what was built is closed.
        """
        from ..controls.calibration import load as load_saved_calibration
        from ..controls.rig import default_calibration

        try:
            cfg = load_config(self.options.config_file, self.options.overrides)
        except ConfigError as err:
            raise ReloadRefused("config: " + "; ".join(err.problems)) from None
        plan = _ReloadPlan(cfg=cfg, restart_needed=self._restart_needed(cfg))
        # the cheap checks first, the model check (a child process) last but one
        selected = self.selected_model()  # ModelError for a selection that is not a name
        name = selected or cfg.model.name
        path = self.resolve(name, chosen=bool(selected), cfg=cfg)
        plan.model_name, plan.model_path = name, os.fspath(path)
        plan.model_key = self._model_key_for(path, cfg)

        plan.calibration_key = calibration_key = self._calibration_file_key()
        plan.calibration = self._calibration
        if calibration_key != self._calibration_key:
            try:
                plan.calibration = load_saved_calibration()  # None: no file (uncalibrated)
            except DdspDeviceError as err:
                raise ReloadRefused(f"calibration: {err}") from None
        try:
            if plan.model_key != self._model_key:
                plan.model = self.load_model_file(path, cfg)
            controls_changed = cfg.as_dict()["controls"] != self.cfg.as_dict()["controls"]
            if self.rig is None or controls_changed or calibration_key != self._calibration_key:
                plan.rig = self._prepare_rig(cfg, plan.calibration or default_calibration(cfg))
        except BaseException:
            plan.discard()
            raise
        return plan

    def _prepare_rig(self, cfg, calibration):
        """A new rig for ``cfg``, started and read once; it takes over the pressure baseline (no
        re-zeroing while someone plays). None when there is no running rig to keep and this one
        cannot be built either (the sensors are still missing: nothing is lost by going on)."""
        try:
            new = self.build_controls(cfg, calibration)
        except DdspDeviceError as err:
            if self.rig is None:
                log.error("%s; still playing nothing from the sensors", err)
                return None
            raise ReloadRefused(f"controls: {err}") from None
        old = self.rig
        if old is not None:
            old_p, new_p = old.mapper.pressure, new.mapper.pressure
            if old_p is not None and new_p is not None and old_p.baseline is not None:
                new_p.set_baseline(old_p.baseline)
        deadline = time.monotonic() + 0.1
        while new.poller.latest.raw is None and time.monotonic() < deadline:
            time.sleep(0.002)
        return new

    def _restart_needed(self, cfg) -> list[str]:
        new, running = cfg.as_dict(), self.start_cfg.as_dict()
        changed = []
        for dotted in RESTART_KEYS:
            section, key = dotted.split(".")
            if new[section][key] != running[section][key]:
                changed.append(dotted)
        return changed

    def _commit(self, plan: _ReloadPlan) -> None:
        """Switch to everything in ``plan``: plain assignments, nothing that can fail half-way."""
        cfg = plan.cfg
        self.cfg = cfg
        if plan.rig is not None:
            old, self.rig = self.rig, plan.rig  # the audio thread reads self.rig: one assignment
            self._calibration = plan.calibration
            self._calibration_key = plan.calibration_key
            if old is not None:
                try:
                    old.close()
                except Exception as err:  # noqa: BLE001 - the new rig plays; the old one is done with
                    log.warning("closing the previous controls failed: %s", _one_line(err))
        elif plan.calibration_key != self._calibration_key and self.rig is None:
            self._calibration, self._calibration_key = plan.calibration, plan.calibration_key
        # synth settings that are plain numbers take effect at once (unless a knob sets them)
        if self.rig is None or self.rig.knob(self.rig.poller.latest, "reverb") is None:
            self.engine.reverb_mix = cfg.synth.reverb_mix
        if self.rig is None or self.rig.knob(self.rig.poller.latest, "tone") is None:
            self.engine.tone = cfg.synth.tone  # ramps there, no click
        if self.rig is None or self.rig.knob(self.rig.poller.latest, "volume") is None:
            self.engine.gain = 10.0 ** (cfg.synth.master_gain_db / 20.0)
        if plan.model is not None:
            log.info("switching to model %r (%s)", plan.model_name, plan.model_path)
        self.model_name, self.model_path, self._model_key = plan.model_name, plan.model_path, plan.model_key
        if plan.restart_needed and plan.restart_needed != self.restart_needed:
            log.warning("restart needed for %s: running at the values the service started with "
                        "(systemctl restart ddsp-device)", ", ".join(plan.restart_needed))
        self.restart_needed = plan.restart_needed
        self.last_reload_error = None
        log.info("reloaded: %s%s", "controls rebuilt, " if plan.rig is not None else "",
                 f"playing {self.model_name!r}")
        self.set_led()

    def status(self) -> dict:
        """The document ``ddsp-device status`` shows (see :mod:`ddsp_device.daemon.status`).

        The audio settings are those in effect (the sink's, else the ones the service started
        with), never a reloaded config's that waits for a restart (``restart_needed``).
        """
        audio_cfg, audio, engine = self.start_cfg.audio, self.audio, self.engine
        stats = audio.stats() if audio is not None else {}
        sink = getattr(audio, "sink", None)
        sensors = []
        rig = self.rig
        if rig is not None:
            for s in rig.poller.latest.sensors:
                sensors.append({"name": s.name, "address": s.address, "state": "ok" if s.present else "absent",
                                "faults": s.faults, "retries": s.retries, "reconnects": s.reconnects})
        budget_ms = stats.get("budget_ms")
        if budget_ms is None:
            budget_ms = 1000.0 * audio_cfg.period_size / audio_cfg.sample_rate
        return {
            "version": __version__,
            "pid": os.getpid(),
            "model": self.model_name,
            "model_path": self.model_path,
            "uptime_s": round(time.monotonic() - self.started_at, 1),
            "cpu_load": stats.get("cpu_load"),
            "period_ms": stats.get("period_ms"),
            "budget_ms": budget_ms,
            "xruns": stats.get("xruns"),
            "late_periods": stats.get("late_periods"),
            "sensors": sensors,
            "counters": {
                "periods": stats.get("periods"), "reopens": stats.get("reopens"),
                "crossfades": getattr(engine, "crossfades", None), "reloads": self.reloads,
                "reloads_refused": self.reloads_refused, "nonfinite_controls": getattr(engine, "nonfinite_controls", None),
            },
            "audio": {
                "device": "file:" + self.options.out_wav if self.options.out_wav else audio_cfg.device,
                "rate": getattr(sink, "sample_rate", audio_cfg.sample_rate),
                "period": getattr(sink, "period_size", audio_cfg.period_size),
                "periods": getattr(sink, "periods", audio_cfg.periods),
                "realtime": getattr(audio, "realtime", None),
                "memory_locked": getattr(audio, "memory_locked", None),
            },
            "tone": {
                "value": getattr(engine, "tone", None),
                "from": "knob" if self.rig is not None and "tone" in self.rig.knob_roles else "config",
            },
            "restart_needed": list(self.restart_needed),
            "muted": self._muted,
            "last_reload_error": self.last_reload_error,
        }

    def status_line(self) -> str:
        s = self.audio.stats()
        load = s.get("cpu_load")
        load_text = f"{100 * load:.0f}%" if isinstance(load, (int, float)) else "-"
        muted = ", muted" if self._muted else ""
        restart = f", restart needed for {', '.join(self.restart_needed)}" if self.restart_needed else ""
        return (f"playing {self.model_name}{muted}, load {load_text}, xruns {s.get('xruns', 0)}, "
                f"late periods {s.get('late_periods', 0)}{restart}")


def _one_line(err: BaseException) -> str:
    """An error as one line of text: its message, or its type and message when unexpected."""
    text = " ".join(str(err).split())
    if isinstance(err, DdspDeviceError):
        return text or type(err).__name__
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


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
        from ..library import model_to_play

        selected = service.state.selected_model  # a name that is not a model name was refused on reading
        loaded: dict[str, Any] = {}

        def plays(name: str) -> bool:
            try:
                path = service.resolve(name, chosen=True)
                loaded[name] = (service.load_model_file(path), path)
            except ModelError as err:
                log.error("selected model %r cannot be used (%s); playing [model] name %r instead",
                          name, _one_line(err), cfg.model.name)
                return False
            return True

        name, why = model_to_play(selected, cfg.model.name, plays)
        if name in loaded and name == selected:
            model, path = loaded.pop(name)
        else:
            path = service.resolve(name, chosen=False)
            model = service.load_model_file(path)
        service._set_playing(name, path, cfg)
        log.debug("model %r: %s", name, why)
        service.engine = engine = Engine(model, EngineSettings.from_config(cfg))
        service.rig = service.start_controls()
        service.panel = service.start_panel()
        service.set_led("loading")
        service.audio = audio = AudioThread(engine, service.open_sink, service.controls_reader(),
                                            cfg.audio.period_size, realtime_priority=options.realtime_priority)
        try:
            service.status_server = StatusServer(service.status, on_reload=service.request_reload)
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
                     (s.get("period_ms") or {}).get("p99", float("nan")), s.get("budget_ms", float("nan")),
                     s.get("periods"))
            last_summary = now
        service.stop_requested.wait(CONTROL_TICK_S)


__all__ = ["RunOptions", "Service", "run_service", "PacedSink"]
