"""The streaming instrument: controls → model → synthesiser → output stage, one hop at a time.

The engine is what the daemon runs in its audio thread and what ``render`` and ``bench`` run
offline, so what you render is what the box plays. Work happens on the model's frame grid: each
hop (``H = round(sample_rate / frame_rate_hz)`` samples) takes one control frame, runs the model
once, synthesises ``H`` samples and runs the output stage over them. :meth:`Engine.render` serves
periods of any size from those hops through a small FIFO, so the audio does not depend on the
period size.

Real-time rules: every buffer is allocated in ``__init__``; a hop calls numpy with ``out=``
arguments only, and nothing here logs, locks or raises on bad control values (they are clamped
and counted).

Embedding it in your own code::

    from ddsp_device import Engine
    with Engine.load("TestFixture") as engine:
        engine.set_f0_hz(440.0)
        engine.set_loudness(0.8)
        block = engine.render_new(128)    # or engine.render(out) into your own float32 array
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from .dsp.controls import harmonic_amplitudes, noise_magnitudes
from .dsp.harmonic import HarmonicScratch, harmonic_block
from .dsp.noise import NoiseState, noise_basis, noise_block
from .dsp.output import (
    dc_block,
    limit_block,
    make_dc_blocker,
    make_limiter,
    make_reverb,
    reverb_block,
)

#: ``controls(frame_index) -> (f0_hz, loudness)``; pulled once per hop when given to render().
ControlSource = Callable[[int], "tuple[float, float]"]

MAX_PERIOD = 4096


@dataclass(frozen=True)
class EngineSettings:
    """Everything the engine needs besides the model. Units in the names."""

    sample_rate: int = 48000
    master_gain_db: float = 0.0
    reverb_mix: float = 0.15
    reverb_decay_s: float = 1.5
    noise_seed: int = 0
    max_period: int = MAX_PERIOD

    @classmethod
    def from_config(cls, cfg, **overrides) -> "EngineSettings":
        """Settings from a loaded :class:`ddsp_device.config.Config`."""
        values = dict(
            sample_rate=cfg.audio.sample_rate,
            master_gain_db=cfg.synth.master_gain_db,
            reverb_mix=cfg.synth.reverb_mix,
            reverb_decay_s=cfg.synth.reverb_decay_s,
            noise_seed=cfg.synth.noise_seed,
        )
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


class Engine:
    """One model playing through the synthesiser.

    Args:
        model: a loaded :class:`ddsp_device.model.Model`; the engine owns it from now on and
            closes it in :meth:`close`.
        settings: sample rate and output-stage settings.
    """

    def __init__(self, model, settings: EngineSettings = EngineSettings()):
        info = model.info
        self.model = model
        self.settings = settings
        self.sample_rate = int(settings.sample_rate)
        self.hop = max(1, int(round(self.sample_rate / info.frame_rate_hz)))
        self.nyquist_hz = 0.5 * self.sample_rate
        self.n_harmonics = int(info.n_harmonics)
        self.f0_min_hz = float(info.f0_min_hz)
        self.f0_max_hz = float(info.f0_max_hz)
        self.loudness_min = float(info.loudness_min)
        self.loudness_max = float(info.loudness_max)
        self.gain = float(10.0 ** (settings.master_gain_db / 20.0))
        self.reverb_mix = float(settings.reverb_mix)

        hop = self.hop
        self._harmonic = HarmonicScratch(self.n_harmonics, hop)
        self._noise_basis = noise_basis(self.sample_rate, int(info.sample_rate_hz), int(info.n_noise_bands))
        self._amps_from = np.zeros(self.n_harmonics, np.float32)
        self._amps_to = np.zeros(self.n_harmonics, np.float32)
        self._amps_scratch = np.zeros(self.n_harmonics, np.float32)
        self._noise_mags = np.zeros(int(info.n_noise_bands), np.float32)
        self._harm_out = np.zeros(hop, np.float32)
        self._noise_out = np.zeros(hop, np.float32)
        self._fifo = np.zeros(settings.max_period + hop, np.float32)
        self._fifo_len = 0

        # live controls, set from any thread (float assignment is atomic under the GIL)
        self._f0_hz = 440.0
        self._loudness = 0.0
        self.reset()

    # ----------------------------------------------------------------- construction helpers
    @classmethod
    def load(
        cls,
        model: str,
        settings: EngineSettings = EngineSettings(),
        *,
        directory: Optional[str] = None,
        runtime: str = "auto",
        defaults=None,
    ) -> "Engine":
        """Load a model by name or path (see :mod:`ddsp_device.library`) and wrap it."""
        from .library import resolve_model
        from .model import ModelDefaults, load_model

        path = resolve_model(model, directory)
        loaded = load_model(path, defaults=defaults or ModelDefaults(), runtime=runtime, num_threads=1)
        return cls(loaded, settings)

    def close(self) -> None:
        self.model.close()

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ----------------------------------------------------------------- controls
    def set_f0_hz(self, f0_hz: float) -> None:
        """Set the pitch the next hop plays (Hz, full precision; the model sees it clamped)."""
        self._f0_hz = float(f0_hz)

    def set_loudness(self, loudness: float) -> None:
        """Set the loudness the next hop plays (0..1, = dB/80 + 1; 0 is silence)."""
        self._loudness = float(loudness)

    # ----------------------------------------------------------------- state
    def reset(self) -> None:
        """Back to the start: silence, phase 0, fresh noise generator, empty FIFO and filters.

        The model's window/state is re-primed on the next hop. Allocates: not for the audio thread.
        """
        hop, settings = self.hop, self.settings
        self._noise = NoiseState(hop, int(settings.noise_seed), self._noise_basis)
        self._reverb = make_reverb(self.sample_rate, settings.reverb_decay_s, max_block=hop)
        self._dc = make_dc_blocker(self.sample_rate, max_block=hop)
        self._limiter = make_limiter(self.sample_rate, max_block=hop)
        self.frame = 0
        self.phase_rad = 0.0
        self._f0_prev_hz = -1.0  # "no previous frame"
        self._amps_from.fill(0.0)
        self._fifo_len = 0
        self.nonfinite_controls = 0

    @property
    def frame_rate_hz(self) -> float:
        return self.sample_rate / self.hop

    # ----------------------------------------------------------------- rendering
    def render(self, out: np.ndarray, controls: Optional[ControlSource] = None) -> np.ndarray:
        """Fill ``out`` (``[period]`` float32, period ≤ ``max_period``) with the next samples.

        Args:
            out: the period to fill.
            controls: when given, pulled once per hop with the frame index; otherwise the values
                from :meth:`set_f0_hz` / :meth:`set_loudness` are used.
        """
        period = out.shape[0]
        fifo = self._fifo
        hop = self.hop
        while self._fifo_len < period:
            start = self._fifo_len
            if controls is None:
                f0_hz, loudness = self._f0_hz, self._loudness
            else:
                f0_hz, loudness = controls(self.frame)
            self._render_hop(f0_hz, loudness, fifo[start : start + hop])
            self._fifo_len = start + hop
        out[:] = fifo[:period]
        left = self._fifo_len - period
        if left:
            fifo[:left] = fifo[period : self._fifo_len]
        self._fifo_len = left
        return out

    def render_new(self, n_samples: int, controls: Optional[ControlSource] = None) -> np.ndarray:
        """Convenience for scripts: render ``n_samples`` into a new array (allocates)."""
        out = np.empty(n_samples, np.float32)
        step = self.settings.max_period
        for i in range(0, n_samples, step):
            self.render(out[i : i + step], controls)
        return out

    def _render_hop(self, f0_hz: float, loudness: float, out: np.ndarray) -> None:
        """One frame of controls → ``hop`` samples of finished audio in ``out``."""
        # Sanitise controls: never let a bad sensor value reach the oscillators.
        if not (f0_hz > 0.0 and f0_hz < math.inf):
            self.nonfinite_controls += 1
            f0_hz = self._f0_prev_hz if self._f0_prev_hz > 0.0 else self.f0_min_hz
        if not (loudness >= 0.0):  # NaN or negative
            if loudness != loudness:
                self.nonfinite_controls += 1
            loudness = 0.0
        elif loudness > 1.0:
            loudness = 1.0
        synth_f0_hz = f0_hz if f0_hz < self.nyquist_hz else self.nyquist_hz
        model_f0_hz = min(max(f0_hz, self.f0_min_hz), self.f0_max_hz)
        model_loudness = min(max(loudness, self.loudness_min), self.loudness_max)

        model = self.model
        if self._f0_prev_hz < 0.0:  # first frame: prime the window and the interpolation
            model.reset(model_f0_hz, 0.0)
            self._f0_prev_hz = synth_f0_hz
        model.step(model_f0_hz, model_loudness)

        harmonic_amplitudes(
            model.harmonic_amps, model.harmonic_dist, synth_f0_hz, loudness,
            self.sample_rate, self._amps_to, self._amps_scratch,
        )
        noise_magnitudes(model.noise_mags, loudness, self._noise_mags)
        self.phase_rad = harmonic_block(
            self._f0_prev_hz, synth_f0_hz, self._amps_from, self._amps_to,
            self.phase_rad, self.sample_rate, self._harm_out, self._harmonic,
        )
        noise_block(self._noise_mags, self._noise, self._noise_out)
        np.add(self._harm_out, self._noise_out, out=out)

        reverb_block(out, self.reverb_mix, self._reverb, out)
        dc_block(out, self._dc, out)
        if self.gain != 1.0:
            np.multiply(out, self.gain, out=out)
        limit_block(out, self._limiter, out)

        self._amps_from, self._amps_to = self._amps_to, self._amps_from
        self._f0_prev_hz = synth_f0_hz
        self.frame += 1

    # ----------------------------------------------------------------- reporting
    @property
    def limiter_gain(self) -> float:
        return float(self._limiter.gain)
