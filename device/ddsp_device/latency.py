"""The sensor-to-sound latency budget, as a sum of named parts.

Worst case, from a sensor changing to the sound reaching the new value:

- ``sensor_interval_ms``: the sensor is sampled every ``1 / sensor_rate_hz``; a change waits up
  to one interval to be read.
- ``alsa_buffer_ms``: ``periods × period_size / sample_rate``. The audio thread wakes once per
  period and reads the latest controls (a change waits up to one period); what it renders then
  plays after the ``periods − 1`` periods already queued.
- ``control_hop_ms``: frames are computed on the hop grid. When ``period_size`` is a multiple of
  the hop, every period starts on a frame boundary and this is 0; otherwise a frame can have been
  computed up to one hop before the period that plays it.
- ``synthesis_lookahead_ms``: the synthesiser interpolates from the previous frame to the new one
  across one hop, so the new value is reached one hop after the frame starts.
"""

from __future__ import annotations


def latency_budget(
    *, sample_rate: int, period_size: int, periods: int, hop: int, sensor_rate_hz: float
) -> dict[str, float]:
    """Parts of the worst-case sensor-to-sound latency and their sum ``latency_ms``, in ms."""
    ms_per_sample = 1000.0 / sample_rate
    parts = {
        "sensor_interval_ms": 1000.0 / sensor_rate_hz,
        "alsa_buffer_ms": periods * period_size * ms_per_sample,
        "control_hop_ms": 0.0 if period_size % hop == 0 else hop * ms_per_sample,
        "synthesis_lookahead_ms": hop * ms_per_sample,
    }
    parts = {k: round(v, 3) for k, v in parts.items()}
    return {"latency_ms": round(sum(parts.values()), 3), "parts": parts}
