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

Live model swap (:meth:`Engine.request_model`), lock-free: a control thread loads and checks the
new model, builds everything the swap needs (allocation is fine there) and hands it over with one
attribute assignment. The audio thread picks it up at the next hop boundary and crossfades over
``crossfade_s``: for those hops both models run and their synth controls are mixed,
``A = (1−g)·A_old + g·A_new`` and ``N = (1−g)·N_old + g·N_new`` with ``g`` rising linearly to 1.
The harmonic bank and the noise filter are linear in ``A`` and ``N`` and share one phase, one
noise generator and one output stage, so this *is* an audio crossfade of two synthesisers in
phase: no click, no gap, no dip. When the new model's frame rate gives another hop, the control
thread also builds a synthesiser pipeline for the new hop; at the hop boundary the audio thread
moves the running state into it (phase, last amplitudes, noise generator and filter tail, tone
filters, reverb delay lines, DC blocker, limiter gain, the FIFO's pending samples) and the
crossfade runs on the new grid, the old model stepped at the new frame rate for those few hops.
The old model is never closed on the audio thread: it goes to :attr:`Engine.retired_models`,
which the control thread empties with :meth:`Engine.collect_retired`.

Fade-out and mute (:meth:`Engine.fade_out`, :meth:`Engine.set_muted`): a per-sample linear gain
ramp applied to each period after the limiter.

Embedding it in your own code::

    from ddsp_device import Engine
    with Engine.load("Violin") as engine:
        engine.set_f0_hz(440.0)
        engine.set_loudness(0.8)
        block = engine.render_new(128)    # or engine.render(out) into your own float32 array
"""

from __future__ import annotations

import collections
import math
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from .dsp.controls import harmonic_amplitudes, noise_magnitudes
from .errors import DdspDeviceError, ModelError
from .dsp.harmonic import HarmonicScratch, harmonic_block
from .dsp.noise import NoiseState, noise_basis, noise_block
from .dsp.output import (
    dc_block,
    limit_block,
    make_dc_blocker,
    make_limiter,
    make_reverb,
    make_tone,
    reverb_block,
    tone_block,
)

#: ``controls(frame_index) -> (f0_hz, loudness)``; pulled once per hop when given to render().
ControlSource = Callable[[int], "tuple[float, float]"]

MAX_PERIOD = 4096


class SwapPendingError(DdspDeviceError, RuntimeError):
    """A model swap is already waiting for the audio thread; try again after it has started."""


class _HopPipeline:
    """The synthesiser parts whose sizes depend on the hop, built off the audio thread.

    Used for a swap to a model with another frame rate. After the swap it holds the *old* parts,
    so that they are released on the control thread (:meth:`Engine.collect_retired`).
    """

    def __init__(
        self, hop: int, n_harmonics: int, sample_rate: int, settings: "EngineSettings", basis: np.ndarray,
        reverb_like=None,
    ):
        self.hop = hop
        self.harmonic = HarmonicScratch(n_harmonics, hop)
        self.noise = NoiseState(hop, int(settings.noise_seed), basis)
        self.tone = make_tone(sample_rate, max_block=hop)
        # like the playing reverb: no matrix product here, beside the audio thread's (see make_reverb)
        self.reverb = make_reverb(sample_rate, settings.reverb_decay_s, max_block=hop, like=reverb_like)
        self.dc = make_dc_blocker(sample_rate, max_block=hop)
        self.limiter = make_limiter(sample_rate, max_block=hop)
        self.harm_out = np.zeros(hop, np.float32)
        self.noise_out = np.zeros(hop, np.float32)
        self.fifo = np.zeros(settings.max_period + hop, np.float32)


class _Swap:
    """One model hot-swap: made by :meth:`Engine.request_model`, run by the audio thread.

    Everything the audio thread needs is prepared here, on the control thread. When the
    crossfade ends the swap goes to :attr:`Engine.retired_models`; :meth:`close` closes the *old*
    model.
    """

    def __init__(
        self, model, hop: int, crossfade_hops: int, basis: np.ndarray, pipeline: Optional[_HopPipeline]
    ):
        info = model.info
        self.model = model
        self.hop = hop
        self.crossfade_hops = crossfade_hops
        self.basis = basis  # [ir_size, n_bands]: the new model's noise basis
        n_bands = basis.shape[1]
        # [ir_size, 2·n_bands]: [old basis | new basis]; the old half is filled at the hand-over
        self.stacked_basis = np.zeros((basis.shape[0], 2 * n_bands), np.float32)
        self.stacked_basis[:, n_bands:] = basis
        self.pipeline = pipeline
        self.f0_min_hz = float(info.f0_min_hz)
        self.f0_max_hz = float(info.f0_max_hz)
        self.loudness_min = float(info.loudness_min)
        self.loudness_max = float(info.loudness_max)
        # filled in by the audio thread at the hand-over: the outgoing model and its ranges
        self.old_model = None
        self.old_f0_min_hz = self.old_f0_max_hz = 0.0
        self.old_loudness_min = self.old_loudness_max = 0.0

    def close(self) -> None:
        """Close the outgoing model and drop the old buffers (control thread). Twice is harmless."""
        old, self.old_model = self.old_model, None
        if old is not None:
            old.close()
        self.pipeline = None
        self.stacked_basis = None


@dataclass(frozen=True)
class EngineSettings:
    """Everything the engine needs besides the model. Units in the names."""

    sample_rate: int = 48000
    master_gain_db: float = 0.0
    #: −1 (dark, distant) .. 0 (the model's own voicing) .. +1 (bright, close)
    tone: float = 0.0
    reverb_mix: float = 0.15
    reverb_decay_s: float = 1.5
    noise_seed: int = 0
    max_period: int = MAX_PERIOD
    #: length of a model hot-swap crossfade (rounded to whole hops, at least one)
    crossfade_s: float = 0.05

    @classmethod
    def from_config(cls, cfg, **overrides) -> "EngineSettings":
        """Settings from a loaded :class:`ddsp_device.config.Config`."""
        values = dict(
            sample_rate=cfg.audio.sample_rate,
            master_gain_db=cfg.synth.master_gain_db,
            tone=cfg.synth.tone,
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
        #: −1..1, read once per hop (set from any thread; a change ramps in over ~50 ms)
        self.tone = float(settings.tone)
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

        # hot-swap: the control thread writes _incoming (one assignment); the audio thread never
        # writes it, and marks what it took by setting _taken to the same object, last
        n_bands = int(info.n_noise_bands)
        self._incoming: Optional[_Swap] = None
        self._taken: Optional[_Swap] = None
        self._swap: Optional[_Swap] = None  # the crossfade in progress (audio thread)
        self._xf_hop = 0
        self._xf_amps = np.zeros(self.n_harmonics, np.float32)
        self._xf_mags = np.zeros(2 * n_bands, np.float32)  # [(1−g)·N_old, g·N_new]
        self._xf_mags_old = self._xf_mags[:n_bands]
        self._xf_mags_new = self._xf_mags[n_bands:]
        self.crossfades = 0
        #: finished swaps, each holding its outgoing model (and the old hop's buffers): the audio
        #: thread appends, the control thread pops and calls ``close()`` on each, or calls
        #: :meth:`collect_retired`
        self.retired_models: collections.deque[_Swap] = collections.deque()

        # output gain after the limiter (fade-out, mute): (target 0..1, change per sample),
        # replaced as a whole by the control thread
        self._gain_request = (1.0, 0.0)
        self._out_gain = 1.0
        self._ramp_index = np.arange(1, settings.max_period + 1, dtype=np.float32)
        self._ramp = np.zeros(settings.max_period, np.float32)
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
        """Close the model, any model still crossfading or waiting, and the retired ones.

        Stop the audio thread first. Twice is harmless.
        """
        self.model.close()
        swap = self._swap
        if swap is not None:
            swap.close()
        incoming = self._incoming
        if incoming is not None and incoming is not self._taken:
            self._taken = incoming
            incoming.model.close()
        self.collect_retired()

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

    # ----------------------------------------------------------------- hot swap (control thread)
    def request_model(self, model, crossfade_s: Optional[float] = None) -> None:
        """Crossfade to ``model`` (loaded and checked) at the audio thread's next hop boundary.

        Call from one control thread. Everything the swap needs is allocated here; the hand-over
        is one attribute assignment. The engine owns ``model`` once this returns; the outgoing
        model lands in :attr:`retired_models` once the crossfade is over: close it with
        :meth:`collect_retired`, on this side. When this raises, the caller still owns ``model``.

        Args:
            model: a loaded :class:`ddsp_device.model.Model` (not the one playing).
            crossfade_s: crossfade length, s (default ``settings.crossfade_s``); rounded to whole
                hops of the new model, at least one.

        Raises:
            SwapPendingError: the previous request has not been picked up yet (the audio thread
                is not running, or is still crossfading); ``model`` is not taken.
            ModelError: the model's shapes do not fit this engine.
        """
        incoming = self._incoming
        if incoming is not None and incoming is not self._taken:
            raise SwapPendingError(
                f"model {incoming.model.info.name!r} is still waiting for the audio thread; "
                "try again when it has started"
            )
        if model is self.model:
            raise ValueError("request_model: this model is already playing")
        info = model.info
        if int(info.n_harmonics) != self.n_harmonics or int(info.n_noise_bands) != self._noise_mags.shape[0]:
            raise ModelError(
                f"{info.path}: {info.n_harmonics} harmonics / {info.n_noise_bands} noise bands; "
                f"the engine plays {self.n_harmonics} / {self._noise_mags.shape[0]}"
            )
        hop = max(1, int(round(self.sample_rate / info.frame_rate_hz)))
        fade_s = self.settings.crossfade_s if crossfade_s is None else float(crossfade_s)
        if not fade_s >= 0.0:
            raise ValueError(f"crossfade_s must be >= 0, got {crossfade_s!r}")
        crossfade_hops = max(1, int(round(fade_s * self.sample_rate / hop)))
        basis = noise_basis(self.sample_rate, int(info.sample_rate_hz), int(info.n_noise_bands))
        # Once the last request was taken, self.hop is final until this one is taken.
        pipeline = None
        if hop != self.hop:
            pipeline = _HopPipeline(hop, self.n_harmonics, self.sample_rate, self.settings, basis,
                                    reverb_like=self._reverb)
        self._incoming = _Swap(model, hop, crossfade_hops, basis, pipeline)

    def collect_retired(self) -> int:
        """Close the models whose crossfade has finished (control thread). Returns how many."""
        closed = 0
        retired = self.retired_models
        while retired:
            retired.popleft().close()  # atomic; the audio thread only appends
            closed += 1
        return closed

    @property
    def swap_pending(self) -> bool:
        """A requested model has not been picked up by the audio thread yet."""
        incoming = self._incoming
        return incoming is not None and incoming is not self._taken

    @property
    def crossfading(self) -> bool:
        return self._swap is not None

    # ----------------------------------------------------------------- fade-out and mute
    def fade_out(self, duration_s: float = 0.015) -> None:
        """Ramp the output to silence over ``duration_s`` (from full level; less from lower).

        Applied after the limiter from the next period on; :attr:`faded_out` tells when it is
        silent. :meth:`set_muted` (False) brings the sound back.
        """
        self._gain_request = (0.0, self._ramp_step(duration_s))

    def set_muted(self, muted: bool, ramp_s: float = 0.01) -> None:
        """Mute or unmute with a linear ramp of ``ramp_s`` (no click); the engine keeps running."""
        self._gain_request = (0.0 if muted else 1.0, self._ramp_step(ramp_s))

    def _ramp_step(self, duration_s: float) -> float:
        if not duration_s >= 0.0:
            raise ValueError(f"ramp duration must be >= 0 s, got {duration_s!r}")
        return 1.0 / max(1.0, float(duration_s) * self.sample_rate)

    @property
    def muted(self) -> bool:
        """Muted or fading out (the target gain is 0)."""
        return self._gain_request[0] == 0.0

    @property
    def faded_out(self) -> bool:
        """The output is silent: a fade-out or mute ramp has reached 0."""
        return self._out_gain == 0.0 and self._gain_request[0] == 0.0

    @property
    def output_gain(self) -> float:
        """The fade/mute gain at the end of the last period (1 = full level)."""
        return self._out_gain

    # ----------------------------------------------------------------- state
    def reset(self) -> None:
        """Back to the start: silence, phase 0, fresh noise generator, empty FIFO and filters.

        The model's window/state is re-primed on the next hop. Allocates: not for the audio thread.
        """
        if self._swap is not None:  # finish a crossfade at once
            self._xf_hop = self._swap.crossfade_hops
            self._finish_swap()
        hop, settings = self.hop, self.settings
        self._noise = NoiseState(hop, int(settings.noise_seed), self._noise_basis)
        self._tone = make_tone(self.sample_rate, _clamp_tone(self.tone), max_block=hop)
        self._reverb = make_reverb(self.sample_rate, settings.reverb_decay_s, max_block=hop)
        self._dc = make_dc_blocker(self.sample_rate, max_block=hop)
        self._limiter = make_limiter(self.sample_rate, max_block=hop)
        self.frame = 0
        self.phase_rad = 0.0
        self._f0_prev_hz = -1.0  # "no previous frame"
        self._amps_from.fill(0.0)
        self._fifo_len = 0
        self.nonfinite_controls = 0
        self._out_gain = self._gain_request[0]

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
        while self._fifo_len < period:
            if self._incoming is not self._taken and self._swap is None:
                self._start_swap(self._incoming)  # may change the hop and the FIFO
            start = self._fifo_len
            hop = self.hop
            if controls is None:
                f0_hz, loudness = self._f0_hz, self._loudness
            else:
                f0_hz, loudness = controls(self.frame)
            self._render_hop(f0_hz, loudness, self._fifo[start : start + hop])
            self._fifo_len = start + hop
        fifo = self._fifo
        out[:] = fifo[:period]
        left = self._fifo_len - period
        if left:
            fifo[:left] = fifo[period : self._fifo_len]
        self._fifo_len = left
        if self._out_gain != 1.0 or self._gain_request[0] != 1.0:
            self._apply_output_gain(out)
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
        swap = self._swap
        if self._f0_prev_hz < 0.0:  # first frame: prime the window and the interpolation
            model.reset(model_f0_hz, 0.0)
            self._f0_prev_hz = synth_f0_hz
        elif swap is not None and self._xf_hop == 0:
            # a model arriving mid-note: prime it as if it had been playing this frame
            model.reset(model_f0_hz, model_loudness)
        model.step(model_f0_hz, model_loudness)

        harmonic_amplitudes(
            model.harmonic_amps, model.harmonic_dist, synth_f0_hz, loudness,
            self.sample_rate, self._amps_to, self._amps_scratch,
        )
        if swap is None:
            noise_magnitudes(model.noise_mags, loudness, self._noise_mags)
            noise_mags = self._noise_mags
        else:
            noise_mags = self._crossfade_controls(swap, f0_hz, loudness, synth_f0_hz)
        self.phase_rad = harmonic_block(
            self._f0_prev_hz, synth_f0_hz, self._amps_from, self._amps_to,
            self.phase_rad, self.sample_rate, self._harm_out, self._harmonic,
        )
        noise_block(noise_mags, self._noise, self._noise_out)
        np.add(self._harm_out, self._noise_out, out=out)

        tone = self.tone
        if not -1.0 <= tone <= 1.0:
            if tone != tone:
                self.nonfinite_controls += 1
            tone = _clamp_tone(tone)
        tone_block(out, tone, self._tone, out)
        reverb_block(out, self.reverb_mix, self._reverb, out)
        dc_block(out, self._dc, out)
        if self.gain != 1.0:
            np.multiply(out, self.gain, out=out)
        limit_block(out, self._limiter, out)

        self._amps_from, self._amps_to = self._amps_to, self._amps_from
        self._f0_prev_hz = synth_f0_hz
        self.frame += 1
        if swap is not None and self._xf_hop >= swap.crossfade_hops:
            self._finish_swap()

    # ----------------------------------------------------------------- hot swap (audio thread)
    def _start_swap(self, swap: _Swap) -> None:
        """Take ``swap`` at a hop boundary. Allocates nothing; ``_taken`` is set last."""
        if swap.pipeline is not None:
            self._adopt_pipeline(swap.pipeline)
        n_bands = self._xf_mags_old.shape[0]
        swap.stacked_basis[:, :n_bands] = self._noise.basis
        self._noise.basis = swap.stacked_basis
        self._noise_basis = swap.basis
        swap.old_model = self.model
        swap.old_f0_min_hz, swap.old_f0_max_hz = self.f0_min_hz, self.f0_max_hz
        swap.old_loudness_min, swap.old_loudness_max = self.loudness_min, self.loudness_max
        self.model = swap.model
        self.f0_min_hz, self.f0_max_hz = swap.f0_min_hz, swap.f0_max_hz
        self.loudness_min, self.loudness_max = swap.loudness_min, swap.loudness_max
        self._xf_hop = 0
        self._swap = swap
        self._taken = swap

    def _crossfade_controls(
        self, swap: _Swap, f0_hz: float, loudness: float, synth_f0_hz: float
    ) -> np.ndarray:
        """Step the old model too and mix: ``A = (1−g)·A_old + g·A_new``, same for ``N``.

        ``self._amps_to`` holds the new model's ``A`` on entry and the mix on return. Returns
        ``[(1−g)·N_old, g·N_new]`` for the stacked noise basis ``[basis_old | basis_new]``.
        """
        self._xf_hop += 1
        g = self._xf_hop / swap.crossfade_hops
        old = swap.old_model
        old.step(
            min(max(f0_hz, swap.old_f0_min_hz), swap.old_f0_max_hz),
            min(max(loudness, swap.old_loudness_min), swap.old_loudness_max),
        )
        xf = self._xf_amps
        harmonic_amplitudes(
            old.harmonic_amps, old.harmonic_dist, synth_f0_hz, loudness,
            self.sample_rate, xf, self._amps_scratch,
        )
        np.subtract(xf, self._amps_to, out=xf)
        np.multiply(xf, 1.0 - g, out=xf)
        np.add(self._amps_to, xf, out=self._amps_to)
        noise_magnitudes(old.noise_mags, loudness, self._xf_mags_old)
        np.multiply(self._xf_mags_old, 1.0 - g, out=self._xf_mags_old)
        noise_magnitudes(self.model.noise_mags, loudness, self._xf_mags_new)
        np.multiply(self._xf_mags_new, g, out=self._xf_mags_new)
        return self._xf_mags

    def _finish_swap(self) -> None:
        swap = self._swap
        self._noise.basis = swap.basis
        self._swap = None
        self.crossfades += 1
        self.retired_models.append(swap)  # the old model is closed by the control thread

    def _adopt_pipeline(self, new: _HopPipeline) -> None:
        """Move the running synthesiser state into ``new`` (another hop) and swap it in.

        Continuity: phase, f0 and the last harmonic amplitudes are hop-independent and stay;
        the noise generator moves over, with the filter's overlap tail; the tone filters, the
        reverb's delay lines, the DC blocker and the limiter carry their state; the FIFO's
        pending samples are copied. ``new`` receives the old parts in exchange (released by the
        control thread).
        """
        pending = self._fifo_len
        new.fifo[:pending] = self._fifo[:pending]
        old_noise, new_noise = self._noise, new.noise
        keep = old_noise.ir_size - 1
        new_noise.tail[:keep] = old_noise.tail[:keep]
        new_noise.rng, old_noise.rng = old_noise.rng, new_noise.rng
        new_noise.basis = old_noise.basis
        _carry_tone(self._tone, new.tone)
        _carry_reverb(self._reverb, new.reverb)
        _carry_dc(self._dc, new.dc)
        _carry_limiter(self._limiter, new.limiter)
        self.hop, new.hop = new.hop, self.hop
        self._harmonic, new.harmonic = new.harmonic, self._harmonic
        self._noise, new.noise = new.noise, self._noise
        self._tone, new.tone = new.tone, self._tone
        self._reverb, new.reverb = new.reverb, self._reverb
        self._dc, new.dc = new.dc, self._dc
        self._limiter, new.limiter = new.limiter, self._limiter
        self._harm_out, new.harm_out = new.harm_out, self._harm_out
        self._noise_out, new.noise_out = new.noise_out, self._noise_out
        self._fifo, new.fifo = new.fifo, self._fifo

    # ----------------------------------------------------------------- output gain
    def _apply_output_gain(self, out: np.ndarray) -> None:
        """Fade/mute gain on one period: per-sample linear ramp towards the target."""
        target, step = self._gain_request
        g = self._out_gain
        if g == target:
            if g == 0.0:
                out.fill(0.0)
            elif g != 1.0:
                np.multiply(out, g, out=out)
            return
        n = out.shape[0]
        ramp = self._ramp[:n]
        if target > g:
            np.multiply(self._ramp_index[:n], step, out=ramp)
            np.add(ramp, g, out=ramp)
            np.minimum(ramp, target, out=ramp)
            g = g + step * n
            g = target if g > target else g
        else:
            np.multiply(self._ramp_index[:n], -step, out=ramp)
            np.add(ramp, g, out=ramp)
            np.maximum(ramp, target, out=ramp)
            g = g - step * n
            g = target if g < target else g
        np.multiply(out, ramp, out=out)
        self._out_gain = g

    # ----------------------------------------------------------------- reporting
    @property
    def limiter_gain(self) -> float:
        return float(self._limiter.gain)

    @property
    def tone_applied(self) -> float:
        """The tone at the end of the last hop (it ramps towards :attr:`tone`)."""
        return float(self._tone.tone)


def _clamp_tone(tone: float) -> float:
    """``tone`` within −1..1; NaN → 0 (flat)."""
    return 0.0 if tone != tone else min(max(float(tone), -1.0), 1.0)


# ------------------------------------------------------------------------ state carried over
# Used when a swap changes the hop: the new pipeline's output stage continues where the old one
# stopped. These reach into the dsp.output state objects, which the engine owns.


def _carry_tone(src, dst) -> None:
    dst.tone = src.tone
    dst._target = src._target
    dst._x_prev = src._x_prev
    dst._y1_prev[:] = src._y1_prev
    dst._y2_prev[:] = src._y2_prev
    dst.nonfinite_blocks = src.nonfinite_blocks


def _carry_reverb(src, dst) -> None:
    keep = src._keep
    dst._buf[:keep] = src._buf[src._pos - keep : src._pos]
    dst._pos = keep
    dst.nonfinite_blocks = src.nonfinite_blocks


def _carry_dc(src, dst) -> None:
    dst.x_prev = src.x_prev
    dst.y_prev = src.y_prev
    dst.nonfinite_blocks = src.nonfinite_blocks


def _carry_limiter(src, dst) -> None:
    dst._atten = src._atten
    dst.gain = src.gain
    dst.clipped_samples = src.clipped_samples
    dst.nonfinite_blocks = src.nonfinite_blocks
