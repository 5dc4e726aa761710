"""``ddsp-device soak``: the whole daemon for N seconds of audio, with faults, and a verdict.

By default it runs the real service (audio thread, sensor thread, control thread, engine,
status socket) against an emulated build playing its gesture and a sink that takes audio as fast
as it comes, so an hour of audio takes minutes. The sensor thread runs on *audio time* (a clock
driven by the frames written), so faults, fades and gestures happen where they would on a box.

Faults (``--faults i2c=R,xrun=R,model=R`` or ``none``):

- ``i2c=R``: each I2C transaction fails with probability R (errno 121, 5 or 110, as the kernel
  reports them), and every 20 audio-seconds the ADC drops off the bus for 0.3 s;
- ``xrun=R``: R underruns per audio-second on average;
- ``model=R``: R reloads per audio-second; every other one offers a broken model (empty,
  truncated, random bytes, wrong tensors, Flex ops, in turn), the others a valid one.

Every fault is scheduled in audio time before the run (from ``seed``) and every scheduled fault
is delivered, in order, even when the control thread falls behind the audio (a reload checks its
model in a child process, seconds of wall time on a busy machine, while the audio runs on at
several times real time): a late fault is delivered late, never skipped, and the run goes on
until each has played out. So the faults a soak injects depend on its seed and length, not on
the speed of the machine.

``--hardware`` instead runs on the configured sensors and ALSA device in real time: a builder's
burn-in of a new box (``--faults none``).

Pass: no crash, memory growth < 5 MB, no NaN, peak ≤ −0.3 dBFS, it played, every broken model
refused. Memory growth is measured from a baseline taken once the first reload of each kind
(each valid model, a broken one) has played out, so one-time costs (a model's first load, the
first child process) are not mistaken for a leak.
"""

from __future__ import annotations

import errno
import logging
import math
import os
import random
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..audio.sinks import UNDERRUN, WRITTEN, NullSink, WavSink
from ..errors import DdspDeviceError
from .service import RunOptions, run_service

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[3]
CEILING_DBFS = -0.3
MEMORY_GROWTH_LIMIT_MB = 5.0
WARM_UP_AUDIO_S = 5.0
DROPOUT_EVERY_S = 20.0
DROPOUT_S = 0.3
#: No new faults in the last seconds, so that every fault injected has played out in the report.
QUIET_END_S = 2.0
DRAIN_LIMIT_S = 5.0  # audio seconds after the last fault to let a pending crossfade finish


@dataclass(frozen=True)
class Faults:
    """Fault rates (see the module docstring)."""

    i2c: float = 0.0
    xrun: float = 0.0
    model: float = 0.0

    @classmethod
    def parse(cls, text: str) -> "Faults":
        """``"i2c=0.01,xrun=0.1,model=0.05"`` or ``"none"``; ValueError names the bad part."""
        text = text.strip()
        if text in ("", "none"):
            return cls()
        values: dict[str, float] = {}
        for part in text.split(","):
            name, sep, value = part.partition("=")
            name = name.strip()
            if not sep or name not in ("i2c", "xrun", "model"):
                raise ValueError(f"--faults: {part.strip()!r}: expected i2c=RATE, xrun=RATE or model=RATE")
            try:
                rate = float(value)
            except ValueError:
                raise ValueError(f"--faults: {name}: {value.strip()!r} is not a number") from None
            if not (math.isfinite(rate) and rate >= 0):
                raise ValueError(f"--faults: {name}: must be a rate >= 0, got {value.strip()}")
            if name == "i2c" and rate > 0.5:
                raise ValueError(f"--faults: i2c: a probability per transaction, at most 0.5, got {rate:g}")
            values[name] = rate
        return cls(**values)


class AudioClock:
    """Time as the audio sees it: frames written / sample rate. The sensor thread sleeps on it.

    When the audio stops advancing (start-up, shutdown, a stalled thread) for more than
    ``STALL_S`` of wall time, the clock goes on at the wall clock's pace, so that the sensor
    thread's timeouts still expire and it can always be stopped.
    """

    STALL_S = 0.05

    def __init__(self, sample_rate: int):
        self.sample_rate = sample_rate
        self._frames = 0
        self._wall_at_write = time.monotonic()
        self.stopped = False

    @property
    def frames(self) -> int:
        return self._frames

    @frames.setter
    def frames(self, value: int) -> None:  # the audio thread, once per period
        self._frames = value
        self._wall_at_write = time.monotonic()

    def now(self) -> float:
        stalled = time.monotonic() - self._wall_at_write - self.STALL_S
        return self._frames / self.sample_rate + (stalled if stalled > 0.0 else 0.0)

    def sleep(self, seconds: float) -> None:
        until = self.now() + max(0.0, seconds)
        while self.now() < until and not self.stopped:
            time.sleep(0.0002)


class SoakSink:
    """Takes audio as fast as it comes, measures it, and injects underruns.

    Runs on the audio thread; its measuring allocates two small temporaries per period, which
    the real sinks do not.
    """

    #: The audio may run ahead of the sensor thread's last reading by at most this, audio-seconds:
    #: the soak runs as fast as the sensors can keep up (they are read at >= 100 Hz audio time).
    MAX_SENSOR_LAG_S = 0.01

    def __init__(self, inner, clock: AudioClock | None, period_size: int, xrun_rate: float, seed: int = 1):
        self.inner = inner
        self.sensor_time = None  # () -> audio time of the newest sensor reading, set by the soak
        self.sample_rate = inner.sample_rate
        self.period_size = period_size
        self.periods = 2
        self.clock = clock
        self.p_underrun = xrun_rate * period_size / self.sample_rate
        self.rng = random.Random(seed)
        self.frames = 0
        self.peak = 0.0
        self.nonfinite = 0
        self.underruns_injected = 0

    def write(self, block: np.ndarray) -> int:
        n = block.shape[0]
        finite = np.isfinite(block)
        if not finite.all():
            self.nonfinite += int(n - np.count_nonzero(finite))
        else:
            peak = float(np.max(np.abs(block)))
            if peak > self.peak:
                self.peak = peak
        self.inner.write(block)
        self.frames += n
        if self.clock is not None:
            self.clock.frames = self.frames
            sensor_time = self.sensor_time
            if sensor_time is not None:
                give_up = time.monotonic() + 0.05
                while self.clock.now() - sensor_time() > self.MAX_SENSOR_LAG_S and time.monotonic() < give_up:
                    time.sleep(0.0001)
        if self.p_underrun and self.rng.random() < self.p_underrun:
            self.underruns_injected += 1
            return UNDERRUN
        return WRITTEN

    def close(self) -> None:
        self.inner.close()


def rss_mb() -> float:
    """Resident memory of this process, MB (from /proc)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return float("nan")


def broken_models(directory: Path) -> list[Path]:
    """Files that must be refused, written into ``directory`` (a models directory: the daemon
    takes selections by name only): empty, truncated, random bytes, wrong tensors, Flex ops."""
    good = (ROOT / "models" / "TestFixture.tflite").read_bytes()
    made = {
        "empty.tflite": b"",
        "truncated.tflite": good[: len(good) // 3],
        "random.tflite": random.Random(7).randbytes(20000),
    }
    paths = []
    for name, data in made.items():
        path = directory / name
        path.write_bytes(data)
        paths.append(path)
    for name in ("wrong_names.tflite", "flex.tflite", "dynamic_shape.tflite"):
        fixture = ROOT / "tests" / "fixtures" / "models" / name
        if fixture.is_file():
            path = directory / name
            path.write_bytes(fixture.read_bytes())
            paths.append(path)
    return paths


def valid_models(directory: Path) -> list[Path]:
    """Models that play, copied into ``directory`` (a models directory)."""
    candidates = [ROOT / "models" / "TestFixture.tflite", ROOT / "tests" / "fixtures" / "models" / "float_window.tflite"]
    paths = []
    for source in candidates:
        if source.is_file():
            path = directory / source.name
            path.write_bytes(source.read_bytes())
            paths.append(path)
    return paths


class Soak:
    """Drives one soak run through the service's control-loop hook."""

    def __init__(self, seconds: float, faults: Faults, *, config_file=None, overrides=(), out_wav=None,
                 hardware: bool = False, seed: int = 1):
        self.seconds = seconds
        self.faults = faults
        self.hardware = hardware
        self.rng = random.Random(seed)
        # The emulated build starts at rest with the default calibration's rest level, and at
        # audio time the sensor thread may read too few times in that rest to auto-zero.
        self.tmp = tempfile.TemporaryDirectory(prefix="ddsp-soak-")
        models = Path(self.tmp.name) / "models"  # the models offered, selected by name
        models.mkdir()
        extra = ["panel.enabled=false", f"model.directory={models}"]
        extra += [] if hardware else ["controls.pressure_auto_zero=false"]
        self.options = RunOptions(config_file=config_file, overrides=list(overrides) + extra, emulate=not hardware)
        self.out_wav = out_wav
        self.broken = broken_models(models)
        self.valid = valid_models(models)
        self.sink: SoakSink | None = None
        self.clock: AudioClock | None = None
        self.bus = None
        self.player = None
        self.service = None
        # the schedules, in audio seconds, fixed before the run
        self.model_times = self._schedule(faults.model, seconds - QUIET_END_S)
        self.dropout_times: list[float] = []
        if faults.i2c > 0:
            t = min(DROPOUT_EVERY_S, 0.4 * seconds)  # the first early enough that a short soak sees one
            while t < seconds - QUIET_END_S:
                self.dropout_times.append(t)
                t += DROPOUT_EVERY_S
        self.dropout_until = None
        self.reloads_valid = 0
        self.reloads_broken = 0
        self.dropouts = 0
        self.last_fault_s = 0.0
        # the memory baseline waits for the first reload of each kind (see the module docstring)
        planned_valid = sum(1 for i in range(len(self.model_times)) if i % 2 == 0)
        self.baseline_after = (min(len(self.valid), planned_valid), min(1, len(self.model_times) - planned_valid))
        self.rss_start = None
        self.rss_end = None
        self.wall_start = None
        self.error: str | None = None
        self._adc_address = None

    def _schedule(self, rate: float, until_s: float) -> list[float]:
        """Poisson arrival times (audio seconds) at ``rate`` per second, before ``until_s``."""
        times: list[float] = []
        if rate <= 0:
            return times
        t = self.rng.expovariate(rate)
        while t < until_s:
            times.append(t)
            t += self.rng.expovariate(rate)
        return times

    def audio_s(self) -> float:
        if self.sink is not None:
            return self.sink.frames / self.sink.sample_rate
        audio = getattr(self.service, "audio", None)
        if audio is not None:
            return audio.periods * audio.period_size / audio.sample_rate
        return 0.0

    # ------------------------------------------------------------------ hooks for the service
    def sink_factory(self, cfg):
        inner = WavSink(self.out_wav, cfg.audio.sample_rate, max_block=cfg.audio.period_size) if self.out_wav \
            else NullSink(cfg.audio.sample_rate)
        if self.sink is None:
            self.sink = SoakSink(inner, self.clock, cfg.audio.period_size, self.faults.xrun)
        else:  # reopened after a (simulated) loss: keep counting
            self.sink.inner = inner
        return self.sink

    def on_tick(self, service) -> None:
        self.service = service
        if self.sink is not None and self.sink.sensor_time is None and service.rig is not None:
            poller = service.rig.poller
            self.sink.sensor_time = lambda: poller.latest.t
        t = self.audio_s()
        if self.wall_start is None:
            self.wall_start = time.monotonic()
        engine = service.engine
        # a model still waiting for the audio thread, or crossfading: the last reload is not over
        busy = engine is not None and (engine.swap_pending or engine.crossfading)
        if (self.rss_start is None and not busy and t >= min(WARM_UP_AUDIO_S, 0.25 * self.seconds)
                and self.reloads_valid >= self.baseline_after[0] and self.reloads_broken >= self.baseline_after[1]):
            self.rss_start = rss_mb()
        if self.bus is not None:
            if self.dropout_until is not None and t >= self.dropout_until:
                self.bus.reconnect(self._adc_address)
                self.dropout_until = None
            elif self.dropout_until is None and self.dropout_times and t >= self.dropout_times[0]:
                self.dropout_times.pop(0)
                self.bus.disconnect(self._adc_address)
                self.dropouts += 1
                self.dropout_until = t + DROPOUT_S
                self.last_fault_s = t
        # One reload per tick at most, and only once the previous one has played out: the
        # service runs the reload in this same loop, so by the next tick it has been refused or
        # handed to the engine, which picks it up within a period.
        if self.model_times and t >= self.model_times[0] and not busy:
            self.model_times.pop(0)
            offer_broken = (self.reloads_valid + self.reloads_broken) % 2 == 1
            if offer_broken:
                path = self.broken[self.reloads_broken % len(self.broken)]
                self.reloads_broken += 1
            else:
                path = self.valid[self.reloads_valid % len(self.valid)]
                self.reloads_valid += 1
            service.state.selected_model = path.stem
            service.reload_requested.set()
            self.last_fault_s = t
            return
        if t >= self.seconds and not self.model_times and not self.dropout_times and self.dropout_until is None:
            # Drain: the last reload's crossfade plays out first (an audio-thread matter: bounded
            # in audio time after the last fault, in case something never lets it finish).
            if not busy or t >= max(self.seconds, self.last_fault_s) + DRAIN_LIMIT_S:
                service.stop_requested.set()

    # ------------------------------------------------------------------ running
    def run(self) -> dict:
        from ..config import load_config
        from ..controls.tools import EmulatedPlayer
        from .state import StateStore

        cfg = load_config(self.options.config_file, self.options.overrides)
        kwargs = {"state_store": StateStore(Path(self.tmp.name) / "state")}
        if not self.hardware:
            self.clock = AudioClock(cfg.audio.sample_rate)
            self.player = EmulatedPlayer(cfg, self.clock, gesture=True)
            self.bus = self.player.bus
            self.bus.fault_rate = self.faults.i2c
            self.bus.fault_errnos = (errno.EREMOTEIO, errno.EIO, errno.ETIMEDOUT)
            self._adc_address = cfg.controls.adc_address
            kwargs.update(sink_factory=self.sink_factory, bus=self.bus, clock=self.clock)
        os.environ.setdefault("RUNTIME_DIRECTORY", str(Path(self.tmp.name) / "run"))
        Path(os.environ["RUNTIME_DIRECTORY"]).mkdir(parents=True, exist_ok=True)
        rc = None
        try:
            rc = run_service(self.options, on_tick=self.on_tick, **kwargs)
        except DdspDeviceError as err:
            self.error = str(err)
        except Exception as err:  # noqa: BLE001 - a crash is the finding: report it
            log.exception("soak: the daemon crashed")
            self.error = f"{type(err).__name__}: {err}"
        finally:
            if self.clock is not None:
                self.clock.stopped = True
        self.rss_end = rss_mb()
        return self.report(rc)

    def report(self, rc) -> dict:
        service = self.service
        audio = getattr(service, "audio", None)
        engine = getattr(service, "engine", None)
        stats = audio.stats() if audio is not None else {}
        sink = self.sink
        peak_dbfs = 20 * math.log10(sink.peak) if sink is not None and sink.peak > 0 else None
        rss_start = self.rss_start if self.rss_start is not None else self.rss_end
        growth = (self.rss_end - rss_start) if rss_start is not None else None
        sensors = []
        if service is not None and service.rig is not None:
            sensors = [{"name": s.name, "address": s.address, "faults": s.faults, "retries": s.retries,
                        "reconnects": s.reconnects, "present": s.present} for s in service.rig.poller.latest.sensors]
        wall = time.monotonic() - self.wall_start if self.wall_start else None
        r = {
            "audio_s": round(self.audio_s(), 2),
            "wall_s": round(wall, 2) if wall else None,
            "speed": round(self.audio_s() / wall, 2) if wall else None,
            "periods": stats.get("periods"),
            "faults_injected": {
                "i2c_errors": getattr(self.bus, "faults_injected", 0),
                "sensor_dropouts": self.dropouts,
                "xruns": sink.underruns_injected if sink is not None else 0,
                "broken_models": self.reloads_broken,
                "valid_reloads": self.reloads_valid,
            },
            "survived": {
                "crashes": 0 if self.error is None and rc == 0 else 1,
                "xruns_counted": stats.get("xruns"),
                "crossfades": getattr(engine, "crossfades", None),
                "reloads_refused": getattr(service, "reloads_refused", None),
                "sensors": sensors,
            },
            "period_ms": stats.get("period_ms"),
            "max_period_ms": round(getattr(audio, "max_compute_ns", 0) / 1e6, 3) if audio is not None else None,
            "late_periods": stats.get("late_periods"),
            "memory_mb": {"start": round(rss_start, 1) if rss_start else None,
                          "end": round(self.rss_end, 1) if self.rss_end else None,
                          "growth": round(growth, 2) if growth is not None else None},
            "nan_samples": sink.nonfinite if sink is not None else None,
            "peak_dbfs": round(peak_dbfs, 2) if peak_dbfs is not None else None,
            "error": self.error,
        }
        checks = {
            "no crash": r["survived"]["crashes"] == 0,
            "memory growth < 5 MB": growth is not None and growth < MEMORY_GROWTH_LIMIT_MB,
            "no NaN": (r["nan_samples"] or 0) == 0,
            "peak <= -0.3 dBFS": peak_dbfs is None or peak_dbfs <= CEILING_DBFS + 1e-3,
            "it played (peak > -60 dBFS)": peak_dbfs is not None and peak_dbfs > -60.0,
            "every broken model refused": r["survived"]["reloads_refused"] == self.reloads_broken,
        }
        if self.hardware:
            checks.pop("no NaN")
            checks.pop("peak <= -0.3 dBFS")
            checks.pop("it played (peak > -60 dBFS)")
        r["checks"] = checks
        r["pass"] = all(checks.values())
        return r

    def close(self) -> None:
        self.tmp.cleanup()


def format_report(r: dict) -> str:
    f, s, m = r["faults_injected"], r["survived"], r["memory_mb"]
    p = r.get("period_ms") or {}
    lines = [
        f"soak: {r['audio_s']} s of audio in {r['wall_s']} s ({r['speed']}x real time), {r['periods']} periods",
        f"faults injected: {f['i2c_errors']} I2C errors, {f['sensor_dropouts']} sensor dropouts, {f['xruns']} xruns, "
        f"{f['broken_models']} broken models, {f['valid_reloads']} valid reloads",
        f"survived: crashes {s['crashes']}, xruns counted {s['xruns_counted']}, crossfades {s['crossfades']}, "
        f"reloads refused {s['reloads_refused']}",
        f"period compute: p50 {p.get('p50', '-')} ms, p99 {p.get('p99', '-')} ms, max {r['max_period_ms']} ms, "
        f"late periods {r['late_periods']}",
        f"memory: {m['start']} MB at start, {m['end']} MB at end (growth {m['growth']} MB)",
        f"output: peak {r['peak_dbfs']} dBFS, NaN samples {r['nan_samples']}",
    ]
    for sensor in s["sensors"]:
        lines.append(f"sensor {sensor['name']}@0x{sensor['address']:02x}: faults {sensor['faults']}, "
                     f"retries {sensor['retries']}, reconnects {sensor['reconnects']}, "
                     f"{'present' if sensor['present'] else 'ABSENT'}")
    if r.get("error"):
        lines.append(f"error: {r['error']}")
    lines.append("checks: " + ", ".join(f"{k} {'ok' if v else 'FAILED'}" for k, v in r["checks"].items()))
    lines.append("PASS" if r["pass"] else "FAIL")
    return "\n".join(lines)

