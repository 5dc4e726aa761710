"""The audio thread with in-memory and faulty sinks (no sound card, no real-time rights needed).

Every thread here runs with ``realtime_priority=None, lock_memory=False`` unless the test is about those:
the test process must not become SCHED_FIFO or lock its memory.
"""

import logging
import threading
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from ddsp_device.audio.sinks import UNDERRUN, WRITTEN, AudioDeviceLost, FaultySink, MemorySink, NullSink
from ddsp_device.daemon import audio as audio_mod
from ddsp_device.daemon.audio import AudioThread
from ddsp_device.engine import Engine, EngineSettings
from ddsp_device.errors import AudioError
from ddsp_device.model import ModelDefaults, load_model

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "models" / "TestFixture.tflite"
FLOAT_WINDOW = ROOT / "tests" / "fixtures" / "models" / "float_window.tflite"
SR = 48000
PERIOD = 128

pytestmark = pytest.mark.runtime


class Sensor:
    """What the sensor thread publishes: one attribute, replaced as a whole."""

    def __init__(self, f0_hz=440.0, loudness=0.8):
        self.latest = (f0_hz, loudness)

    def read(self):
        return self.latest


class PacedSink(MemorySink):
    """A MemorySink that takes a little time per write, as a sound card does (keeps tests light)."""

    def __init__(self, pace_s=0.0005):
        super().__init__(SR)
        self.pace_s = pace_s
        self.closed = 0

    def write(self, block):
        time.sleep(self.pace_s)
        return super().write(block)

    def close(self):
        self.closed += 1


def engine():
    return Engine(load_model(FIXTURE), EngineSettings(reverb_mix=0.0))


def quiet_thread(e, open_sink, controls, **kw):
    kw.setdefault("realtime_priority", None)
    kw.setdefault("lock_memory", False)
    return AudioThread(e, open_sink, controls, PERIOD, **kw)


def wait_for(condition, timeout_s=60.0):  # a bound on a hang only: returns when the condition holds
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.002)


def peak_hz(x):
    win = np.hanning(len(x))
    spec = np.abs(np.fft.rfft(x * win, n=8 * len(x)))
    i = int(np.argmax(spec[1:-1])) + 1
    return i * SR / (8 * len(x))


def test_periods_flow_and_controls_are_applied():
    sensor = Sensor(440.0, 0.8)
    sink = PacedSink()
    with engine() as e, quiet_thread(e, lambda: sink, sensor.read) as t:
        assert t.first_period_written.wait(60.0)
        wait_for(lambda: t.periods >= 400)
        sensor.latest = (660.0, 0.8)
        mark = t.periods
        wait_for(lambda: t.periods >= mark + 400)
        t.stop()
        assert t.error is None and not t.is_alive()
    audio = sink.audio()
    assert len(audio) == t.periods * PERIOD
    first, last = audio[100 * PERIOD : 400 * PERIOD], audio[-300 * PERIOD :]
    assert abs(peak_hz(first) - 440.0) < 3.0
    assert abs(peak_hz(last) - 660.0) < 3.0
    assert sink.closed == 1 and t.progress == t.periods


def test_none_from_the_sensor_keeps_the_last_controls():
    calls = []

    def controls():
        calls.append(1)
        return (330.0, 0.7) if len(calls) == 1 else None

    sink = PacedSink()
    with engine() as e, quiet_thread(e, lambda: sink, controls) as t:
        wait_for(lambda: t.periods >= 300)
    audio = sink.audio()[-200 * PERIOD :]
    assert np.abs(audio).max() > 0.05
    assert abs(peak_hz(audio) - 330.0) < 3.0


def test_underruns_are_counted_and_survived():
    inner = PacedSink()
    sink = FaultySink(inner, underrun_at={10, 20, 30}, prefill_frames=2 * PERIOD)
    with engine() as e, quiet_thread(e, lambda: sink, Sensor().read) as t:
        wait_for(lambda: t.periods >= 100)
    assert t.xruns == 3 == sink.underruns
    assert t.error is None and t.device_losses == 0
    assert len(inner.audio()) == (t.periods + 3 * 2) * PERIOD  # three gaps of prefill silence


def test_vanished_device_is_reopened_with_back_off_and_audio_resumes():
    shared = PacedSink()
    attempts = []

    def open_sink():
        attempts.append(time.monotonic())
        if len(attempts) == 1:
            return FaultySink(shared, lost_at=50)  # unplugged after 50 periods
        if len(attempts) <= 4:
            raise AudioError("ALSA device 'hw:CARD=usb,DEV=0': cannot open: No such device")
        return FaultySink(shared)  # plugged back in

    sensor = Sensor(440.0, 0.8)
    with engine() as e:
        t = quiet_thread(e, open_sink, sensor.read, backoff_s=(0.02, 0.08))
        with t:
            wait_for(lambda: t.reopens == 1)
            assert t.progress > 50, "progress must go on while the device is away"
            wait_for(lambda: t.periods >= 150)
            events = t.drain_events()
        assert t.error is None
    assert t.device_losses == 1 and t.open_failures == 3 and t.reopens == 1
    gaps = np.diff(attempts[1:])  # between reopen attempts: 0.02, 0.04, 0.08 (capped)
    assert gaps[0] >= 0.018 and gaps[1] >= 0.038 and gaps[2] >= 0.075
    assert any("lost" in m for m in events) and any("reopened" in m for m in events)
    assert t.drain_events() == []
    # the note resumes faded in over one period, then at full level
    audio = shared.audio()
    resumed = audio[50 * PERIOD :]
    assert abs(resumed[0]) < 0.02
    assert np.abs(resumed[PERIOD : 20 * PERIOD]).max() > 0.05


def test_stop_during_back_off_is_prompt():
    def open_sink():
        if not hasattr(open_sink, "done"):
            open_sink.done = True
            return FaultySink(PacedSink(), lost_at=5)
        raise AudioError("No such device")

    with engine() as e:
        t = quiet_thread(e, open_sink, Sensor().read, backoff_s=(5.0, 5.0)).start()
        wait_for(lambda: t.open_failures >= 1)
        started = time.monotonic()
        t.stop()
        assert time.monotonic() - started < 2.5  # woken: not waiting out the 5 s back-off
        assert not t.is_alive() and t.error is None


def test_first_period_written_and_stop_are_prompt_and_close_twice_is_harmless():
    sink = PacedSink()
    with engine() as e:
        t = quiet_thread(e, lambda: sink, Sensor().read)
        assert not t.first_period_written.is_set()
        t.start()
        assert t.first_period_written.wait(60.0)
        started = time.monotonic()
        t.stop()
        assert time.monotonic() - started < 1.5  # joined, not given up after stop()'s 2 s
        assert not t.is_alive() and sink.closed == 1
        t.stop()
        t.close()
        assert sink.closed == 1
        with pytest.raises(RuntimeError):
            t.start()


def test_fade_out_and_stop_ends_in_silence():
    sink = PacedSink()
    with engine() as e:
        with quiet_thread(e, lambda: sink, Sensor(440.0, 0.9).read) as t:
            wait_for(lambda: t.periods >= 50)
            assert t.fade_out_and_stop(0.015)
        assert e.faded_out
    audio = sink.audio()
    assert sink.blocks[-1][-1] == 0.0  # the block in which the ramp reached 0 is the last
    last_sound = np.flatnonzero(audio)[-1]
    assert len(audio) - last_sound - 1 < 4 * PERIOD  # stopped right after the fade
    peak = np.abs(audio[: last_sound - int(0.02 * SR)]).max()
    assert peak > 0.1
    # ramped, not cut: the last 1 ms before silence is below 15% of the note (a 15 ms ramp: ~7%)
    assert np.abs(audio[last_sound - 48 : last_sound + 1]).max() < 0.15 * peak


def test_no_device_at_start_is_an_audio_error():
    def open_sink():
        raise AudioError("ALSA device 'hw:CARD=x,DEV=0': cannot open: No such device")

    with engine() as e:
        t = quiet_thread(e, open_sink, Sensor().read)
        with pytest.raises(AudioError, match="No such device"):
            t.start()
        assert not t.is_alive()
        t.stop()  # harmless


def test_a_crash_in_the_loop_is_kept_for_the_control_thread():
    calls = []

    def controls():
        calls.append(1)
        if len(calls) > 20:
            raise ZeroDivisionError("sensor bug")
        return (440.0, 0.5)

    sink = PacedSink()
    with engine() as e, quiet_thread(e, lambda: sink, controls) as t:
        wait_for(lambda: not t.is_alive())
        progress = t.progress
        time.sleep(0.05)
        assert t.progress == progress == 20  # the watchdog pings stop
        assert isinstance(t.error, ZeroDivisionError)
        assert any("sensor bug" in m for m in t.drain_events())
    assert sink.closed == 1


def test_late_periods_are_counted_where_no_underrun_can_show():
    """A file never runs dry, so it reports no underrun: a period that took longer to compute
    than it lasts is counted as late (every 4th one here sleeps twice the period's duration)."""
    e = engine()
    render = e.render
    calls = [0]

    def slow_every_4th(out, controls=None):
        calls[0] += 1
        if calls[0] % 4 == 0:
            time.sleep(2 * PERIOD / SR)
        return render(out, controls)

    e.render = slow_every_4th
    sink = MemorySink(SR)
    t = quiet_thread(e, lambda: sink, Sensor().read)
    with t:
        wait_for(lambda: t.periods >= 40, timeout_s=120)
    s = t.stats()
    e.close()
    assert s["xruns"] == 0
    assert calls[0] // 4 <= s["late_periods"] <= calls[0]
    assert s["budget_ms"] == pytest.approx(1000 * PERIOD / SR)


def test_stats_on_demand():
    sink = PacedSink()
    with engine() as e, quiet_thread(e, lambda: sink, Sensor().read, stats_periods=256) as t:
        wait_for(lambda: t.periods >= 300)
        s = t.stats()
    assert s["window_periods"] == 256
    p = s["period_ms"]
    assert 0 < p["p50"] <= p["p99"] <= p["max"] <= p["max_ever"]
    assert 0.0 < s["cpu_load"] < 1.0  # the paced sink sleeps 0.5 ms per period
    assert s["budget_ms"] == pytest.approx(1000 * PERIOD / SR)
    assert s["xruns"] == 0 and s["device_ok"] is True and s["periods"] >= 300
    assert s["realtime"] is False and s["memory_locked"] is False


def test_hot_swap_while_playing():
    sink = PacedSink()
    old = load_model(FIXTURE)
    with Engine(old, EngineSettings(reverb_mix=0.0)) as e, quiet_thread(e, lambda: sink, Sensor().read) as t:
        wait_for(lambda: t.periods >= 100)
        e.request_model(load_model(FLOAT_WINDOW, defaults=ModelDefaults(frame_rate_hz=375.0)))
        wait_for(lambda: e.crossfades == 1)
        assert not old.closed  # handed back, not closed on the audio thread
        assert e.collect_retired() == 1 and old.closed
        mark = t.periods
        wait_for(lambda: t.periods >= mark + 50)
    audio = sink.audio()
    d = np.abs(np.diff(audio[50 * PERIOD :]))
    assert d.max() < 0.3 and t.xruns == 0


def test_refused_realtime_and_memlock_give_one_warning(monkeypatch, caplog):
    def refuse(pid, policy, param):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(audio_mod.os, "sched_setscheduler", refuse)
    monkeypatch.setattr(audio_mod.os, "geteuid", lambda: 1000)
    monkeypatch.setattr(audio_mod.resource, "getrlimit", lambda which: (8 << 20, 8 << 20))
    sink = PacedSink()
    caplog.set_level(logging.WARNING, logger="ddsp_device.daemon.audio")
    with engine() as e, AudioThread(e, lambda: sink, Sensor().read, PERIOD, realtime_priority=70) as t:
        wait_for(lambda: t.periods >= 20)
        assert t.realtime is False and t.memory_locked is False
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    text = warnings[0].getMessage()
    assert "LimitRTPRIO=70" in text and "RLIMIT_RTPRIO" in text
    assert "LimitMEMLOCK=infinity" in text and "RLIMIT_MEMLOCK" in text


def test_realtime_granted_is_reported(monkeypatch, caplog):
    seen = []

    def grant(pid, policy, param):
        seen.append((pid, policy, param.sched_priority, threading.current_thread().name))

    monkeypatch.setattr(audio_mod.os, "sched_setscheduler", grant)
    monkeypatch.setattr(audio_mod, "lock_memory", lambda: (True, None))
    caplog.set_level(logging.WARNING, logger="ddsp_device.daemon.audio")
    e = engine()
    thread = AudioThread(e, PacedSink, Sensor().read, PERIOD, realtime_priority=55, name="ddsp-audio-test")
    with e, thread as t:
        assert t.realtime and t.memory_locked
    assert seen == [(0, audio_mod.os.SCHED_FIFO, 55, "ddsp-audio-test")]  # this thread only
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_loop_allocates_nothing_per_period():
    """Over ~2000 periods the process's traced memory does not grow (controls, render, write)."""
    sink = NullSink()
    sensor = Sensor()
    with engine() as e, quiet_thread(e, lambda: sink, sensor.read) as t:
        wait_for(lambda: t.periods >= 200)
        tracemalloc.start()
        try:
            before, _ = tracemalloc.get_traced_memory()
            mark = t.periods
            wait_for(lambda: t.periods >= mark + 2000)
            after, _ = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert after - before < 4096, f"grew by {after - before} bytes"


def test_faulty_sink_alone():
    inner = MemorySink()
    sink = FaultySink(inner, underrun_at=[1], lost_at=3, prefill_frames=4)
    x = np.ones(8, np.float32)
    assert sink.write(x) == WRITTEN
    assert sink.write(x) == UNDERRUN
    assert sink.write(x) == WRITTEN
    with pytest.raises(AudioDeviceLost):
        sink.write(x)
    with pytest.raises(AudioDeviceLost):  # stays gone
        sink.write(x)
    assert isinstance(AudioDeviceLost("x"), (AudioError, OSError))
    assert len(inner.audio()) == 8 + 4 + 8 + 8
    sink.close()
    sink.close()
    with pytest.raises(AudioError):
        sink.write(x)
