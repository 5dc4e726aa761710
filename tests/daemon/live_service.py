"""A running daemon for tests: :func:`run_service` itself, on emulated sensors, on audio time.

The sink takes audio as fast as it comes and the sensors run on the audio clock (as in
``ddsp-device soak``, whose pieces it uses), so what happens depends on audio frames and on
counts, not on how fast the machine is. A *script* — a generator — drives the service from the
control loop's hook: each ``yield`` hands back a condition, and the script goes on once it holds::

    def script(live):
        yield live.audio_passes(0.2)
        yield live.reload()                # request it (as SIGHUP does), wait until it is done
        assert live.service.reloads_refused == 0

    live.run(script)

Models, the config, ``state.json`` and ``calibration.json`` live in ``tmp_path``; the models
directory holds ``Good`` (the test fixture), ``Other`` (a bare float model) and ``Broken``
(truncated), and ``[model] name`` is ``Good``.
"""

from __future__ import annotations

import logging
import shutil
import signal
import time
from pathlib import Path
from typing import Callable, Generator

from ddsp_device.audio.sinks import NullSink
from ddsp_device.config import load_config
from ddsp_device.controls.tools import EmulatedPlayer
from ddsp_device.daemon.service import RunOptions, run_service
from ddsp_device.daemon.soak import AudioClock, SoakSink
from ddsp_device.daemon.state import StateStore

ROOT = Path(__file__).resolve().parents[2]
GOOD = ROOT / "models" / "TestFixture.tflite"
OTHER = ROOT / "tests" / "fixtures" / "models" / "float_window.tflite"
#: Wall-clock guard against a hang (a failing test, never a passing one's timing).
HANG_GUARD_S = 240.0

Condition = Callable[[], bool]
Script = Callable[["LiveService"], Generator[Condition, None, None]]


class LiveService:
    def __init__(self, tmp_path: Path, monkeypatch, *, config_text: str = "", seed: int = 1,
                 inject_bus: bool = True):
        self.tmp = tmp_path
        self.state_dir = tmp_path / "state"
        self.run_dir = tmp_path / "run"
        self.models = tmp_path / "models"
        for d in (self.state_dir, self.run_dir, self.models):
            d.mkdir(exist_ok=True)
        monkeypatch.setenv("DDSP_DEVICE_SYSTEM_CONFIG", str(tmp_path / "absent.toml"))
        monkeypatch.setenv("STATE_DIRECTORY", str(self.state_dir))
        monkeypatch.setenv("RUNTIME_DIRECTORY", str(self.run_dir))
        shutil.copyfile(GOOD, self.models / "Good.tflite")
        shutil.copyfile(OTHER, self.models / "Other.tflite")
        (self.models / "Broken.tflite").write_bytes(GOOD.read_bytes()[:3000])
        self.config = tmp_path / "config.toml"
        self.base_config = (
            f'[model]\nname = "Good"\ndirectory = "{self.models}"\n'
            "[panel]\nenabled = false\n"
        )
        self.write_config(config_text)
        # the emulated build starts at rest with the default calibration's rest level: no auto-zero
        self.options = RunOptions(config_file=str(self.config), overrides=["controls.pressure_auto_zero=false"],
                                  emulate=True, realtime_priority=None)
        self.seed = seed
        #: False: ``run --emulate`` exactly, the service makes its own emulated build (on audio time)
        self.inject_bus = inject_bus
        self.service = None
        self.sink: SoakSink | None = None
        self.clock: AudioClock | None = None
        self.player = None
        self.rc: int | None = None
        self.error: BaseException | None = None
        self._script = None
        self._condition: Condition | None = None

    # -- files the daemon reads -------------------------------------------------------------------
    def write_config(self, extra: str = "") -> None:
        """The config file: the base (models, no panel) and ``extra`` TOML, merged by section."""
        self.config.write_text(_merge_toml(self.base_config, extra))

    def write_state(self, selected: str | None) -> None:
        import json

        (self.state_dir / "state.json").write_text(json.dumps({"version": 1, "selected_model": selected}))

    @property
    def calibration_path(self) -> Path:
        return self.state_dir / "calibration.json"

    # -- conditions --------------------------------------------------------------------------------
    def frames(self) -> int:
        return self.sink.frames if self.sink is not None else 0

    def audio_s(self) -> float:
        return self.frames() / self.sink.sample_rate if self.sink is not None else 0.0

    def audio_passes(self, seconds: float) -> Condition:
        until = self.audio_s() + seconds
        return lambda: self.audio_s() >= until

    def reload(self, *, signal_it: bool = False) -> Condition:
        """Ask for a reload (SIGHUP to this process, or the flag SIGHUP raises); the condition
        holds once it is done and the engine has crossfaded to any new model."""
        service = self.service
        before = service.reloads
        if signal_it:
            signal.raise_signal(signal.SIGHUP)
        else:
            service.reload_requested.set()
        return self.reload_done(before)

    def reload_done(self, before: int) -> Condition:
        """Holds once ``service.reloads`` has passed ``before`` and any new model is playing."""
        service = self.service
        engine = service.engine
        return lambda: service.reloads > before and not engine.swap_pending and not engine.crossfading

    # -- running -----------------------------------------------------------------------------------
    def _sink_factory(self, cfg):
        if self.sink is None:
            self.sink = SoakSink(NullSink(cfg.audio.sample_rate), self.clock, cfg.audio.period_size, 0.0,
                                 seed=self.seed)
        return self.sink

    def _on_tick(self, service) -> None:
        self.service = service
        sink = self.sink
        if sink is not None and sink.sensor_time is None and service.rig is not None:
            # whichever rig plays now: reloads swap it
            sink.sensor_time = lambda: service.rig.poller.latest.t if service.rig is not None else self.clock.now()
        if time.monotonic() > self._hang_guard:
            self.error = AssertionError(f"the script did not finish within {HANG_GUARD_S} s")
            service.stop_requested.set()
            return
        if service.audio is None or sink is None or sink.frames == 0:
            return
        try:
            if self._condition is None or self._condition():
                self._condition = next(self._script)
        except StopIteration:
            service.stop_requested.set()
        except BaseException as err:  # an assertion in the script: stop, and raise it from run()
            self.error = err
            service.stop_requested.set()

    def run(self, script: Script) -> int:
        """Run the daemon until ``script`` ends; returns run_service's exit status (raises what
        the script raised)."""
        cfg = load_config(self.options.config_file, self.options.overrides)
        self.clock = AudioClock(cfg.audio.sample_rate)
        self.player = EmulatedPlayer(cfg, self.clock, gesture=True)
        self._script = script(self)
        self._hang_guard = time.monotonic() + HANG_GUARD_S
        saved = {s: signal.getsignal(s) for s in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT)}
        try:
            self.rc = run_service(self.options, on_tick=self._on_tick, sink_factory=self._sink_factory,
                                  bus=self.player.bus if self.inject_bus else None, clock=self.clock,
                                  # counters are not saved during a test: a save rewrites state.json's
                                  # selection, which the tests write themselves
                                  state_store=StateStore(self.state_dir, save_interval_s=1e9))
        finally:
            self.clock.stopped = True
            for sig, handler in saved.items():
                signal.signal(sig, handler)
        if self.error is not None:
            raise self.error
        return self.rc


def refusals(caplog) -> list[str]:
    """The log lines that say a reload was refused."""
    return [r.getMessage() for r in caplog.records
            if r.levelno >= logging.ERROR and r.getMessage().startswith("reload refused")]


def _merge_toml(base: str, extra: str) -> str:
    """``base`` and ``extra`` as one TOML document: one header per section, ``extra``'s keys win.

    Lines that are not ``key = value`` (junk on purpose, to make the file invalid) are kept.
    """
    sections: dict[str, dict[str, str]] = {}
    for text in (base, extra):
        current = ""
        for n, line in enumerate(text.splitlines()):
            stripped = line.strip()
            if stripped.startswith("[") and stripped.endswith("]"):
                current = stripped
                sections.setdefault(current, {})
                continue
            if stripped:
                key = stripped.partition("=")[0].strip() if "=" in stripped else f"#junk{len(sections)}-{n}"
                sections.setdefault(current, {})[key] = line
    out = []
    for name, lines in sections.items():
        if name:
            out.append(name)
        out.extend(lines.values())
    return "\n".join(out) + "\n"
