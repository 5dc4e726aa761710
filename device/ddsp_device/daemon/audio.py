"""The audio thread: latest controls → engine → sink, one period at a time, for days.

One dedicated thread runs :class:`AudioThread`'s loop. Per period it reads the controls the
sensor thread published (a plain call that returns an attribute; ``None`` keeps the last),
renders one period with the :class:`~ddsp_device.engine.Engine` and writes it to the sink, which
blocks while the device's buffer is full: the sound card paces the loop.

Real-time rules, inside the loop: no logging, no locks, no arrays allocated (the period buffer
and the timing rings are made in ``__init__``); before the loop ``gc.collect(); gc.freeze()``.
At start the thread asks for ``SCHED_FIFO`` (this thread only) and ``mlockall`` (the process);
where the limits forbid it, :meth:`AudioThread.start` logs one warning naming them and the
thread carries on at normal priority.

Talking to the control thread, without locks: plain counters (``periods``, ``progress``,
``xruns``, ``late_periods``, ``reopens``, ``device_losses``, ``max_compute_ns``) that only this
thread writes, and
:meth:`AudioThread.drain_events` for what should be logged (the audio thread appends to a
deque, the control thread pops and logs). :meth:`AudioThread.stats` computes percentiles and
load on demand, on the calling thread.

Faults:

* underrun: the sink recovers (re-prepare, prefill) and says so; counted in ``xruns``.
* late period: rendering a period took longer than the period lasts (``period_size /
  sample_rate``); counted in ``late_periods``. On a sound card this is what turns into an
  underrun; a sink that never runs dry (a WAV file, paced or not) has no underruns to report,
  so this counter is the only place a slow period shows there.
* device lost (:class:`~ddsp_device.audio.sinks.AudioDeviceLost`): the sink is closed and
  reopened with exponential back-off (``backoff_s``, 0.1 s doubling to 5 s) while the rest of
  the daemon runs. The engine is *not* advanced while there is no device: the note resumes where
  it stopped, faded in over one period. ``progress`` keeps counting while the thread waits, so a
  missing device does not trip the systemd watchdog; a stalled thread does. Opening the sink may
  log (``AlsaSink`` logs what ALSA accepted): that happens only on this no-audio path.
* anything else raised in the loop ends the thread; the exception is kept in ``error`` and
  ``progress`` stops, so the watchdog notices.
"""

from __future__ import annotations

import collections
import ctypes
import gc
import logging
import os
import resource
import sys
import threading
import time
from typing import Callable, Optional

import numpy as np

from ..audio.sinks import AudioDeviceLost, Sink

log = logging.getLogger(__name__)

DEFAULT_PRIORITY = 70
#: Periods whose compute time is kept for :meth:`AudioThread.stats` (~22 s at 128 / 48 kHz).
STATS_PERIODS = 8192
MCL_CURRENT = 1
MCL_FUTURE = 2

#: ``controls() -> (f0_hz, loudness)`` or None (keep the last); called once per period.
Controls = Callable[[], "Optional[tuple[float, float]]"]


# ------------------------------------------------------------------------- process set-up
def raise_priority(priority: int) -> "tuple[bool, Optional[str]]":
    """Put the *calling thread* in ``SCHED_FIFO`` at ``priority``. Returns ``(done, why_not)``.

    On Linux ``sched_setscheduler(0, …)`` applies to the calling thread only.
    """
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(int(priority)))
    except AttributeError:
        return False, "SCHED_FIFO is not available on this platform"
    except OSError as err:
        return False, (
            f"SCHED_FIFO priority {priority} refused ({err.strerror or err}): raise RLIMIT_RTPRIO "
            f"(LimitRTPRIO={priority} in the systemd unit, and no RestrictRealtime=yes; "
            "'rtprio' in /etc/security/limits.d for a login shell)"
        )
    return True, None


def lock_memory() -> "tuple[bool, Optional[str]]":
    """``mlockall(MCL_CURRENT | MCL_FUTURE)`` for the process. Returns ``(done, why_not)``.

    Only tried when ``RLIMIT_MEMLOCK`` is unlimited or we run as root: with a finite limit,
    ``MCL_FUTURE`` would make later allocations fail once the limit is reached.
    """
    soft, _hard = resource.getrlimit(resource.RLIMIT_MEMLOCK)
    if soft != resource.RLIM_INFINITY and os.geteuid() != 0:
        return False, (
            f"memory not locked: RLIMIT_MEMLOCK is {soft // 1024} KiB; set LimitMEMLOCK=infinity "
            "in the systemd unit ('memlock' in /etc/security/limits.d for a login shell)"
        )
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        rc = libc.mlockall(MCL_CURRENT | MCL_FUTURE)
    except (OSError, AttributeError) as err:
        return False, f"memory not locked: mlockall is not available ({err})"
    if rc != 0:
        errno = ctypes.get_errno()
        return False, (
            f"memory not locked: mlockall refused ({os.strerror(errno)}): raise RLIMIT_MEMLOCK "
            "(LimitMEMLOCK=infinity in the systemd unit) or grant CAP_IPC_LOCK"
        )
    return True, None


# ------------------------------------------------------------------------- the thread
class AudioThread:
    """Runs ``engine`` into a sink from a dedicated thread.

    Args:
        engine: the :class:`~ddsp_device.engine.Engine` (this thread is its only renderer).
        open_sink: makes a new, open sink; called at :meth:`start` (errors go to the caller)
            and again, from the audio thread, after the device was lost.
        controls: ``() -> (f0_hz, loudness) | None``, called once per period; it must not block
            (read an attribute the sensor thread publishes).
        period_size: frames per period (the sink's accepted period size).
        realtime_priority: ``SCHED_FIFO`` priority for this thread, or None to leave it alone.
        lock_memory: try ``mlockall``.
        stats_periods: how many periods of compute time :meth:`stats` looks at.
        backoff_s: ``(first, longest)`` wait between reopen attempts, s; doubles each time.
        switch_interval_s: lower the interpreter's thread switch interval to this while running
            (the GIL is handed to the audio thread within it; Python's default is 5 ms, longer
            than a period). None leaves it.
        name: the thread's name.

    Attributes (written by the audio thread, read anywhere): ``periods``, ``progress``,
    ``xruns``, ``late_periods`` (compute time over the period's duration), ``reopens``, ``device_losses``, ``open_failures``, ``max_compute_ns``,
    ``device_ok``, ``realtime``, ``memory_locked``, ``error``; ``first_period_written`` is a
    :class:`threading.Event`.
    """

    def __init__(
        self,
        engine,
        open_sink: Callable[[], Sink],
        controls: Controls,
        period_size: int,
        *,
        realtime_priority: Optional[int] = DEFAULT_PRIORITY,
        lock_memory: bool = True,
        stats_periods: int = STATS_PERIODS,
        backoff_s: "tuple[float, float]" = (0.1, 5.0),
        switch_interval_s: Optional[float] = 0.001,
        name: str = "ddsp-audio",
    ):
        max_period = int(engine.settings.max_period)
        if not 1 <= int(period_size) <= max_period:
            raise ValueError(f"period_size must be in 1..{max_period} frames, got {period_size!r}")
        if not 0.0 < backoff_s[0] <= backoff_s[1]:
            raise ValueError(
                f"backoff_s must be (first, longest) with 0 < first <= longest, got {backoff_s!r}"
            )
        self.engine = engine
        self.period_size = int(period_size)
        self.sample_rate = int(engine.sample_rate)
        self.realtime_priority = realtime_priority
        self.name = name
        self._open_sink = open_sink
        self._controls = controls
        self._want_lock = bool(lock_memory)
        self._backoff_s = (float(backoff_s[0]), float(backoff_s[1]))
        self._switch_interval_s = switch_interval_s
        self._old_switch_interval: Optional[float] = None

        # what the set-up achieved
        self.realtime = False
        self.memory_locked = False
        self.setup_warning: Optional[str] = None

        # counters: written by the audio thread only
        self.periods = 0
        self.progress = 0
        self.xruns = 0
        self.late_periods = 0
        #: a period's duration, ns: compute time above it makes the period late
        self.budget_ns = 1_000_000_000 * self.period_size // self.sample_rate
        self.reopens = 0
        self.device_losses = 0
        self.open_failures = 0
        self.max_compute_ns = 0
        self.device_ok = False
        self.error: Optional[BaseException] = None
        self.first_period_written = threading.Event()

        # preallocated: the period, the fade-in after a reopen, the timing rings
        self._out = np.zeros(self.period_size, np.float32)
        self._fade_in = np.arange(1, self.period_size + 1, dtype=np.float32) / np.float32(self.period_size)
        n = max(2, int(stats_periods))
        self._compute_ns = np.zeros(n, np.int64)
        self._start_ns = np.zeros(n, np.int64)
        self._ring_pos = 0
        self._timed = 0
        self._events: collections.deque[str] = collections.deque(maxlen=64)

        self._sink: Optional[Sink] = None
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._closed = False

    # ------------------------------------------------------------------ control thread side
    def start(self) -> "AudioThread":
        """Open the sink (here: errors reach the caller), start the thread, wait for its set-up.

        Logs one warning when real-time priority or memory locking was refused.

        Raises:
            AudioError: the sink cannot be opened.
            RuntimeError: started twice.
        """
        if self._thread is not None or self._closed:
            raise RuntimeError("AudioThread: start() once per object")
        sink = self._open_sink()
        try:
            prefill = getattr(sink, "prefill", None)
            if prefill is not None:
                prefill()
        except Exception:
            sink.close()
            raise
        self._sink = sink
        self.device_ok = True
        if self._switch_interval_s is not None:
            self._old_switch_interval = sys.getswitchinterval()
            sys.setswitchinterval(min(self._old_switch_interval, float(self._switch_interval_s)))
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()
        self._ready.wait(timeout=10.0)
        if self.setup_warning:
            log.warning("audio thread: %s; audio may click under load", self.setup_warning)
        return self

    def stop(self, timeout_s: float = 2.0) -> None:
        """End the loop, drain and close the sink, join. Twice is harmless.

        For a click-free stop, fade first (see :meth:`fade_out_and_stop`).
        """
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout_s)
            if thread.is_alive():
                log.warning("audio thread did not stop within %.1f s (blocked in the sink?)", timeout_s)
        elif thread is None:
            self._close_sink(drain=False)
        if self._old_switch_interval is not None:
            sys.setswitchinterval(self._old_switch_interval)
            self._old_switch_interval = None
        self._closed = True

    def fade_out_and_stop(self, fade_s: float = 0.015, timeout_s: float = 2.0) -> bool:
        """``engine.fade_out(fade_s)``, wait until it is silent (or the thread ended), stop.

        Returns whether the fade completed.
        """
        self.engine.fade_out(fade_s)
        deadline = time.monotonic() + timeout_s
        while not self.engine.faded_out and self.is_alive() and time.monotonic() < deadline:
            time.sleep(0.001)
        faded = self.engine.faded_out
        self.stop(timeout_s=max(0.1, deadline - time.monotonic()))
        return faded

    close = stop

    def __enter__(self) -> "AudioThread":
        if self._thread is None:
            self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def is_alive(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive()

    @property
    def sink(self) -> Optional[Sink]:
        """The sink in use (None while the device is away or after stop)."""
        return self._sink

    def drain_events(self) -> list[str]:
        """Messages the audio thread left for the log (device lost, reopened …), oldest first."""
        events = self._events
        taken = []
        while events:
            taken.append(events.popleft())
        return taken

    def stats(self) -> dict:
        """Counters and, over the last ``stats_periods`` periods, the compute time per period
        (``period_ms``: p50, p99, max; ``max_ever`` since start) and ``cpu_load`` (compute time /
        wall time, 0..1). Allocates; for the control thread."""
        filled = min(self._timed, self._compute_ns.shape[0])
        compute = self._compute_ns[:filled].copy()
        starts = self._start_ns[:filled].copy()
        result = {
            "periods": self.periods,
            "progress": self.progress,
            "xruns": self.xruns,
            "late_periods": self.late_periods,
            "reopens": self.reopens,
            "device_losses": self.device_losses,
            "open_failures": self.open_failures,
            "device_ok": self.device_ok,
            "realtime": self.realtime,
            "memory_locked": self.memory_locked,
            "period_size": self.period_size,
            "sample_rate": self.sample_rate,
            "budget_ms": 1000.0 * self.period_size / self.sample_rate,
            "window_periods": int(filled),
            "period_ms": None,
            "cpu_load": None,
        }
        if filled:
            ms = compute / 1e6
            result["period_ms"] = {
                "p50": float(np.percentile(ms, 50)),
                "p99": float(np.percentile(ms, 99)),
                "max": float(ms.max()),
                "max_ever": self.max_compute_ns / 1e6,
            }
        if filled >= 2:
            # the newest period's wall time is not known yet: leave it out of both sums
            newest = int(np.argmax(starts))
            wall_ns = int(starts[newest] - starts.min())
            if wall_ns > 0:
                result["cpu_load"] = float((compute.sum() - compute[newest]) / wall_ns)
        return result

    # ------------------------------------------------------------------ audio thread side
    def _run(self) -> None:
        try:
            self._setup()
            self._ready.set()
            self._loop()
        except BaseException as err:  # noqa: BLE001 - kept for the control thread, which logs it
            self.error = err
            self._events.append(f"audio thread stopped: {type(err).__name__}: {err}")
        finally:
            self._ready.set()
            self._close_sink(drain=self.error is None and self.device_ok)
            self.device_ok = False

    def _setup(self) -> None:
        problems = []
        if self.realtime_priority is not None:
            self.realtime, why = raise_priority(self.realtime_priority)
            if why:
                problems.append(why)
        if self._want_lock:
            self.memory_locked, why = lock_memory()
            if why:
                problems.append(why)
        self.setup_warning = "; ".join(problems) or None
        gc.collect()
        gc.freeze()

    def _loop(self) -> None:
        engine = self.engine
        controls = self._controls
        out = self._out
        fade_in = self._fade_in
        compute_ring = self._compute_ns
        start_ring = self._start_ns
        ring_size = compute_ring.shape[0]
        clock = time.perf_counter_ns
        stop = self._stop
        budget_ns = self.budget_ns
        sink = self._sink
        first = self.first_period_written
        f0_hz, loudness = 440.0, 0.0
        pos = 0
        fading_in = False
        while not stop.is_set():
            t0 = clock()
            latest = controls()
            if latest is not None:
                f0_hz, loudness = latest
            engine.set_f0_hz(f0_hz)
            engine.set_loudness(loudness)
            engine.render(out)
            if fading_in:
                np.multiply(out, fade_in, out=out)
                fading_in = False
            dt = clock() - t0
            compute_ring[pos] = dt
            start_ring[pos] = t0
            pos += 1
            if pos == ring_size:
                pos = 0
            self._ring_pos = pos
            self._timed += 1
            if dt > self.max_compute_ns:
                self.max_compute_ns = dt
            if dt > budget_ns:
                self.late_periods += 1
            try:
                if sink.write(out):
                    self.xruns += 1
            except AudioDeviceLost as err:
                sink = self._reopen(err)
                if sink is None:
                    return
                fading_in = True
                continue
            self.periods += 1
            self.progress += 1
            if not first.is_set():
                first.set()

    def _reopen(self, err: AudioDeviceLost) -> Optional[Sink]:
        """The device is gone: close, then reopen with back-off. None when asked to stop."""
        self.device_losses += 1
        self.device_ok = False
        self._events.append(f"audio device lost: {err}; reopening")
        self._close_sink(drain=False)
        delay, longest = self._backoff_s
        attempts = 0
        while not self._stop.is_set():
            attempts += 1
            try:
                sink = self._open_sink()
                prefill = getattr(sink, "prefill", None)
                if prefill is not None:
                    try:
                        prefill()
                    except Exception:
                        sink.close()
                        raise
            except Exception as open_err:  # noqa: BLE001 - any failure here means: try again later
                self.open_failures += 1
                if attempts == 1 or delay >= longest:
                    self._events.append(
                        f"audio device: cannot reopen yet ({open_err}); retrying every <= {longest:g} s"
                    )
                self._wait(delay)
                delay = min(2.0 * delay, longest)
                continue
            self._sink = sink
            self.reopens += 1
            self.device_ok = True
            self._events.append(f"audio device reopened after {attempts} attempt(s)")
            return sink
        return None

    def _wait(self, seconds: float) -> None:
        """Sleep in short slices, counting progress (the thread is alive, just has no device)."""
        deadline = time.monotonic() + seconds
        while not self._stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0.0:
                return
            self._stop.wait(min(0.05, left))
            self.progress += 1

    def _close_sink(self, drain: bool) -> None:
        sink, self._sink = self._sink, None
        if sink is None:
            return
        try:
            if drain:
                sink.close()
            else:
                try:
                    sink.close(drain=False)
                except TypeError:  # sinks without the option
                    sink.close()
        except Exception as err:  # noqa: BLE001 - a vanished device may fail to close
            self._events.append(f"audio device: error while closing: {err}")
