"""``ddsp-device bench``: how fast the engine runs on this machine, single-threaded.

A measurement, not a test (these machines are noisy): render ``seconds`` of the demo phrase
period by period, timing each ``Engine.render`` call, then time the model's inference alone.
"""

from __future__ import annotations

import gc
import platform
import time

import numpy as np

from .engine import Engine
from .latency import latency_budget
from .performance import demo_phrase


def _cpu_name() -> str:
    """The CPU model ("model name" on x86, "Model" on a Raspberry Pi), for the report."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                key, sep, value = line.partition(":")
                if sep:
                    fields.setdefault(key.strip().lower(), value.strip())
    except OSError:
        pass
    for key in ("model name", "model", "hardware"):
        if fields.get(key) and not fields[key].isdigit():
            return fields[key]
    return platform.processor() or platform.machine()


def run_bench(
    engine: Engine,
    *,
    period_size: int,
    seconds: float,
    periods: int,
    sensor_rate_hz: float,
    model_calls: int = 2000,
) -> dict:
    """Measure ``engine`` and return the report (see ``ddsp-device bench --help``)."""
    sr = engine.sample_rate
    f0_hz, loudness = demo_phrase().frames(engine.hop, sr, tail_s=0.5).arrays()  # whole, for the timed loop
    n_frames = f0_hz.shape[0]

    def controls(frame: int) -> tuple[float, float]:  # the phrase, looped
        i = frame % n_frames
        return float(f0_hz[i]), float(loudness[i])

    out = np.empty(period_size, np.float32)
    n_periods = max(1, int(round(seconds * sr / period_size)))
    times_ns = np.empty(n_periods, np.int64)
    engine.reset()
    for _ in range(max(1, int(0.25 * sr / period_size))):  # warm-up: caches, first-call paths
        engine.render(out, controls)
    gc.collect()
    gc.freeze()
    gc_was_enabled = gc.isenabled()
    gc.disable()
    clock = time.perf_counter_ns
    try:
        for i in range(n_periods):
            t0 = clock()
            engine.render(out, controls)
            times_ns[i] = clock() - t0
        # the model alone, on the same kind of input
        model = engine.model
        step_ns = np.empty(model_calls, np.int64)
        for i in range(model_calls):
            f0, loud = controls(i)
            t0 = clock()
            model.step(f0, loud)
            step_ns[i] = clock() - t0
    finally:
        if gc_was_enabled:
            gc.enable()
        gc.unfreeze()

    period_ms = times_ns / 1e6
    budget_ms = 1000.0 * period_size / sr
    audio_s = n_periods * period_size / sr
    latency = latency_budget(
        sample_rate=sr, period_size=period_size, periods=periods, hop=engine.hop,
        sensor_rate_hz=sensor_rate_hz,
    )
    info = engine.model.info
    return {
        "model": info.name,
        "runtime": info.runtime_name,
        "sample_rate": sr,
        "period_size": period_size,
        "periods": periods,
        "hop": engine.hop,
        "frame_rate_hz": round(engine.frame_rate_hz, 3),
        "seconds": round(audio_s, 3),
        "rtf": round(float(times_ns.sum()) / 1e9 / audio_s, 5),
        "budget_ms": round(budget_ms, 4),
        "period_ms": {
            "p50": round(float(np.percentile(period_ms, 50)), 4),
            "p99": round(float(np.percentile(period_ms, 99)), 4),
            "p999": round(float(np.percentile(period_ms, 99.9)), 4),
            "max": round(float(period_ms.max()), 4),
        },
        "model_ms": round(float(np.median(step_ns)) / 1e6, 4),
        "model_ms_p99": round(float(np.percentile(step_ns, 99)) / 1e6, 4),
        "latency_ms": latency["latency_ms"],
        "latency_parts_ms": latency["parts"],
        "machine": {"cpu": _cpu_name(), "python": platform.python_version(), "numpy": np.__version__},
    }


def format_report(r: dict) -> str:
    """Human-readable bench report."""
    p = r["period_ms"]
    lines = [
        f"model        {r['model']} ({r['runtime']}), {r['frame_rate_hz']:g} Hz frames, hop {r['hop']}",
        f"audio        {r['sample_rate']} Hz, period {r['period_size']} x {r['periods']}, {r['seconds']:g} s rendered",
        f"machine      {r['machine']['cpu']}, Python {r['machine']['python']}, numpy {r['machine']['numpy']}",
        f"rtf          {r['rtf']:.4f}  (compute time / audio time; {1 / max(r['rtf'], 1e-9):.0f}x real time)",
        f"budget_ms    {r['budget_ms']:.3f}  (one period)",
        f"period_ms    p50 {p['p50']:.4f}  p99 {p['p99']:.4f}  p999 {p['p999']:.4f}  max {p['max']:.4f}"
        f"  (p999 = {100 * p['p999'] / r['budget_ms']:.1f}% of budget)",
        f"model_ms     {r['model_ms']:.4f}  (one inference, median; p99 {r['model_ms_p99']:.4f})",
        f"latency_ms   {r['latency_ms']:.2f}  worst case, sensor to sound:",
    ]
    for k, v in r["latency_parts_ms"].items():
        lines.append(f"               {k:<24} {v:.3f}")
    return "\n".join(lines)
