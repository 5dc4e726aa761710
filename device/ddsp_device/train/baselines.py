"""Baselines for ``train evaluate``: simpler instruments driven by the clip's own f0 and loudness.

A clip's controls are ``f0_hz`` [F] and normalised ``loudness`` [F] on its frame grid (frame
``n`` at sample ``n · hop``, :mod:`ddsp_device.train.data`); its target level in dB is
``loudness_db = 80 · (loudness − 1)`` (:func:`ddsp_device.train.features.normalise_loudness`
inverted, so 0 is −80 dB). Both baselines return ``[F · hop]`` float32 audio at the clip's rate.

- :func:`sawtooth`: the band-limited sawtooth ``Σ_{k : k·f0 < sr/2} sin(k·φ) / k`` with
  ``φ(s) = 2π Σ_{j ≤ s} f0(j) / sr`` and ``f0`` per sample interpolated linearly from the frame
  grid (phase-continuous, harmonics masked per sample at Nyquist), then a **per-frame gain** so
  that its A-weighted loudness curve (:func:`ddsp_device.train.features.loudness_db`) equals the
  clip's (:func:`match_loudness`, two passes: the second corrects what the 1024-sample loudness
  window smears of the first).
- :class:`SoundfontBaseline`: a General-MIDI instrument (FluidR3 GM's Violin by default) played
  by FluidSynth from MIDI made of the controls (:func:`soundfont_phrase`): one note per voiced
  stretch, pitch bend for the f0 deviations (range ±12 semitones set by RPN 0, a new note when
  f0 strays further), CC11 following the loudness, velocity from the loudness; reverb and chorus
  off, at the clip's rate. Its level is then matched to the clip's loudness by a **slowly
  varying gain** (the per-frame dB difference over the sounding frames, a 0.25 s moving average
  of it), so the soundfont's own attacks and note shapes stay. The MIDI writing and rendering
  are :mod:`ddsp_device.train.violin_data`'s.

Numpy only; the soundfont baseline also runs the ``fluidsynth`` command and reads its WAV with
``soundfile``.
"""

from __future__ import annotations

import logging
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from .features import LOUDNESS_FLOOR_DB, loudness_db
from .violin_data import (BEND_RANGE_SEMITONES, BEND_STEP_S, EXPRESSION_STEP_S, GM_VIOLIN_PROGRAM, Note, Phrase,
                          RenderError, find_fluidsynth, find_soundfont, probe_keys, render_phrase)

log = logging.getLogger(__name__)

BASELINES = ("sawtooth", "soundfont")
MAX_HARMONICS = 1200  # the sawtooth's limit: every harmonic below Nyquist down to f0 = 20 Hz at 48 kHz
MAX_GAIN_DB = 60.0  # level matching never boosts more (silent stretches stay silent)
SAWTOOTH_BLOCK = 8192  # samples per block of the harmonic sum (keeps the work arrays in cache)
PROBE_KEYS = (21, 108)  # the piano's range: keys probed once for holes in the soundfont's key map


def target_db(loudness) -> np.ndarray:
    """Normalised loudness [F] (0..1) → A-weighted loudness in dB [F]: ``80 · (loudness − 1)``."""
    return (np.asarray(loudness, np.float64) - 1.0) * -LOUDNESS_FLOOR_DB


def frames_to_samples(values, hop: int, n_samples: int) -> np.ndarray:
    """Frame values [F] (frame ``n`` at sample ``n · hop``) linearly interpolated per sample: [n_samples]."""
    values = np.asarray(values, np.float64)
    return np.interp(np.arange(n_samples) / hop, np.arange(values.shape[0]), values)


# ----------------------------------------------------------------------------- level matching
def _moving_average(values: np.ndarray, width: int) -> np.ndarray:
    if width <= 1 or values.shape[0] < 2:
        return values
    half = width // 2
    padded = np.pad(values, half, mode="edge")
    cumulative = np.concatenate([[0.0], np.cumsum(padded)])
    return (cumulative[2 * half + 1 :] - cumulative[: -2 * half - 1]) / (2 * half + 1)


def match_loudness(audio, target_loudness_db, sample_rate: int, hop: int, *, valid=None,
                   smoothing_frames: int = 1, passes: int = 2) -> np.ndarray:
    """``audio`` [S] times a gain that makes its loudness curve follow ``target_loudness_db`` [F].

    Each pass measures ``loudness_db(audio · gain)`` and adds ``target − measured`` (dB) to the
    gain of every frame in ``valid`` [F] bool (default: all); other frames take the gain of their
    neighbours (linear interpolation, held at the ends). The gain curve is then averaged over
    ``smoothing_frames`` frames (1 = per frame), capped at ``MAX_GAIN_DB``, and interpolated per
    sample in dB.

    Returns:
        [S] float32.
    """
    audio = np.asarray(audio, np.float64).reshape(-1)
    target = np.asarray(target_loudness_db, np.float64).reshape(-1)
    n_frames = target.shape[0]
    frames = np.arange(n_frames)
    valid = np.ones(n_frames, bool) if valid is None else np.asarray(valid, bool)
    gain_db = np.zeros(n_frames)
    out = audio
    for _ in range(passes):
        measured = loudness_db(out, sample_rate, hop).astype(np.float64)[:n_frames]
        use = valid[: measured.shape[0]] & (measured > -100.0)
        if not np.any(use):
            break
        step = np.interp(frames, frames[: measured.shape[0]][use], (target[: measured.shape[0]] - measured)[use])
        gain_db = np.minimum(gain_db + _moving_average(step, smoothing_frames), MAX_GAIN_DB)
        out = audio * 10.0 ** (frames_to_samples(gain_db, hop, audio.shape[0]) / 20.0)
    return out.astype(np.float32)


# ----------------------------------------------------------------------------- sawtooth
def sawtooth_wave(f0_hz, sample_rate: int) -> np.ndarray:
    """Band-limited sawtooth ``Σ_k sin(k·φ) / k`` over the harmonics with ``k · f0(s) < sr/2``.

    Args:
        f0_hz: [S] per-sample fundamental, Hz; samples with ``f0 ≤ 0`` are silent.
        sample_rate: Hz.

    Returns:
        [S] float64; ``φ(s) = 2π Σ_{j ≤ s} f0(j) / sr`` (phase-continuous, starting at 0). The sum is
        a recurrence ``z_k = z_{k−1} · e^{iφ}`` (no per-harmonic ``sin``), at most ``MAX_HARMONICS`` terms.
    """
    f0_hz = np.asarray(f0_hz, np.float64).reshape(-1)
    nyquist_hz = 0.5 * sample_rate
    cycles = np.cumsum(np.maximum(f0_hz, 0.0) / sample_rate)
    theta = 2.0 * np.pi * (cycles - np.floor(cycles))
    out = np.zeros(f0_hz.shape[0])
    for start in range(0, f0_hz.shape[0], SAWTOOTH_BLOCK):
        f0 = f0_hz[start : start + SAWTOOTH_BLOCK]
        sounding = f0 > 0.0
        if not np.any(sounding):
            continue
        k_all = min(MAX_HARMONICS, math.ceil(nyquist_hz / float(f0.max())) - 1)  # below Nyquist everywhere
        k_any = min(MAX_HARMONICS, math.ceil(nyquist_hz / float(f0[sounding].min())) - 1)  # somewhere
        z = np.exp(1j * theta[start : start + SAWTOOTH_BLOCK])
        zk = z.copy()
        acc = np.zeros(f0.shape[0])
        term = np.empty(f0.shape[0])
        for k in range(1, k_any + 1):
            np.multiply(zk.imag, 1.0 / k, out=term)
            if k > k_all:
                term[k * f0 >= nyquist_hz] = 0.0
            acc += term
            zk *= z
        out[start : start + SAWTOOTH_BLOCK] = np.where(sounding, acc, 0.0)
    return out


def sawtooth(f0_hz, loudness, sample_rate: int, hop: int) -> np.ndarray:
    """The sawtooth baseline (module docstring) for ``f0_hz`` [F] and ``loudness`` [F] (0..1): [F · hop] float32."""
    f0_hz = np.asarray(f0_hz, np.float64).reshape(-1)
    n_samples = f0_hz.shape[0] * hop
    wave = sawtooth_wave(frames_to_samples(f0_hz, hop, n_samples), sample_rate)
    return match_loudness(wave, target_db(loudness), sample_rate, hop)


# ----------------------------------------------------------------------------- soundfont
@dataclass
class SoundfontSettings:
    """How the controls become MIDI (:func:`soundfont_phrase`) and how the render is levelled."""

    program: int = GM_VIOLIN_PROGRAM  # 0-based: 40 = General MIDI 41, Violin
    bend_range_semitones: int = BEND_RANGE_SEMITONES  # RPN 0; a new note when f0 strays further
    voicing_db: float = 45.0  # voiced: loudness within this of the clip's loudest frame …
    voicing_floor_db: float = -70.0  # … and above this
    min_note_s: float = 0.05  # shorter voiced stretches are dropped
    min_gap_s: float = 0.05  # shorter unvoiced gaps inside a stretch are bridged
    key_window_s: float = 0.3  # a note's key: the median pitch of its first 0.3 s, rounded
    velocity_window_s: float = 0.1  # velocity: 127 · the highest normalised loudness of the first 0.1 s
    gain_smoothing_s: float = 0.25  # the level-matching gain's moving average


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """``[(start, stop)]`` of the True runs of a [F] bool array."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist()))


def voiced_stretches(loudness, frame_rate_hz: float, settings: SoundfontSettings) -> list[tuple[int, int]]:
    """Frame ranges ``[(start, stop)]`` to play: loud enough (``settings``), short gaps bridged, short stretches dropped."""
    level_db = target_db(loudness)
    if level_db.size == 0:
        return []
    threshold = max(float(level_db.max()) - settings.voicing_db, settings.voicing_floor_db)
    active = level_db > threshold
    min_gap, min_note = (max(1, round(s * frame_rate_hz)) for s in (settings.min_gap_s, settings.min_note_s))
    for start, stop in _runs(~active):
        if start > 0 and stop < active.shape[0] and stop - start < min_gap:
            active[start:stop] = True
    return [(start, stop) for start, stop in _runs(active) if stop - start >= min_note]


def _nearest_key(pitch: float, silent: frozenset) -> int:
    key = int(np.clip(round(pitch), 0, 127))
    options = [k for k in range(key - 3, key + 4) if 0 <= k <= 127 and k not in silent]
    return min(options, key=lambda k: (abs(k - pitch), k)) if options else key


def soundfont_phrase(f0_hz, loudness, sample_rate: int, hop: int, settings: Optional[SoundfontSettings] = None,
                     silent_keys=()) -> Optional[Phrase]:
    """MIDI for the controls ``f0_hz`` [F], ``loudness`` [F] (0..1) as a :class:`violin_data.Phrase`.

    - Notes: each voiced stretch (:func:`voiced_stretches`) is one note, keyed to the median pitch
      of its first ``key_window_s`` (rounded; a key in ``silent_keys`` moves to the nearest
      sounding one); a new note starts (same tick) where the pitch strays more than
      ``bend_range − 0.5`` semitones from the key for at least ``min_note_s`` (briefer strays,
      such as a tracker's octave blips, are bent as far as the range allows).
    - Pitch bend (every ``BEND_STEP_S``): the pitch ``69 + 12·log2(f0/440)`` minus the key, held
      after a note ends.
    - CC11 (every ``EXPRESSION_STEP_S``): ``127 · 10^((L − L_note)/40)``, ``L`` the target dB and
      ``L_note`` the loudest frame of the note sounding (or last sounded); 40·log10 is the
      General-MIDI (and FluidSynth) attenuation law of CC11, so the swell within a note follows
      the loudness in dB.
    - Velocity: ``127 ·`` the highest normalised loudness in the note's first ``velocity_window_s``.
    - Volume (CC7) 127; the phrase lasts the clip's length.

    Returns:
        The phrase, or ``None`` when nothing is voiced.
    """
    settings = settings or SoundfontSettings()
    f0_hz = np.asarray(f0_hz, np.float64).reshape(-1)
    loudness = np.asarray(loudness, np.float64).reshape(-1)
    frame_rate_hz = sample_rate / hop
    pitch = 69.0 + 12.0 * np.log2(np.maximum(f0_hz, 1e-3) / 440.0)
    silent = frozenset(int(k) for k in silent_keys)
    limit = settings.bend_range_semitones - 0.5
    key_window = max(1, round(settings.key_window_s * frame_rate_hz))
    velocity_window = max(1, round(settings.velocity_window_s * frame_rate_hz))
    min_note = max(1, round(settings.min_note_s * frame_rate_hz))
    spans = []  # (start frame, stop frame, key, velocity)
    for start, stop in voiced_stretches(np.where(f0_hz > 0, loudness, 0.0), frame_rate_hz, settings):
        i = start
        while i < stop:
            key = _nearest_key(float(np.median(pitch[i : min(stop, i + key_window)])), silent)
            if abs(pitch[i] - key) > limit:  # an octave leap inside the key window
                key = _nearest_key(float(pitch[i]), silent)
            strays = np.abs(pitch[i:stop] - key) > limit
            lasting = [a for a, b in _runs(strays) if b - a >= min_note]
            j = max(i + 1, i + lasting[0]) if lasting else stop
            velocity = int(np.clip(round(127.0 * float(loudness[i : i + velocity_window].max())), 1, 127))
            spans.append((i, j, key, velocity))
            i = j
    if not spans:
        return None
    duration_s = f0_hz.shape[0] / frame_rate_hz
    notes = [Note(a / frame_rate_hz, (b - a) / frame_rate_hz, key, velocity) for a, b, key, velocity in spans]
    frame_times_s = np.arange(f0_hz.shape[0]) / frame_rate_hz
    level_db = target_db(loudness)

    bend_times_s = np.arange(int(math.ceil(duration_s / BEND_STEP_S)) + 1) * BEND_STEP_S
    bend_pitch = np.interp(bend_times_s, frame_times_s, pitch)
    bend = np.zeros(bend_times_s.shape[0])
    expr_times_s = np.arange(int(math.ceil(duration_s / EXPRESSION_STEP_S)) + 1) * EXPRESSION_STEP_S
    reference_db = np.full(expr_times_s.shape[0], np.nan)
    for n, (note, (a, b, key, _)) in enumerate(zip(notes, spans)):
        i0, i1 = round(note.start_s / BEND_STEP_S), round(note.end_s / BEND_STEP_S)
        bend[i0:i1] = bend_pitch[i0:i1] - key
        following = round(notes[n + 1].start_s / BEND_STEP_S) if n + 1 < len(notes) else bend.shape[0]
        bend[i1:following] = bend[i1 - 1]
        reference_db[expr_times_s >= note.start_s] = float(level_db[a:b].max())
    reference_db[np.isnan(reference_db)] = float(level_db[spans[0][0] : spans[0][1]].max())
    expr_db = np.interp(expr_times_s, frame_times_s, level_db) - reference_db
    expression = np.clip(127.0 * 10.0 ** (expr_db / 40.0), 1.0, 127.0)
    bend = np.clip(bend, -settings.bend_range_semitones, settings.bend_range_semitones)
    tail_s = max(0.0, duration_s - max(note.end_s for note in notes))
    return Phrase("evaluate", notes, bend, expression, volume=127, tail_s=tail_s)


class SoundfontBaseline:
    """Renders the soundfont baseline (module docstring); find the tools first, then :meth:`render` clips.

    Args:
        soundfont: the ``.sf2`` (default: FluidR3_GM where Debian installs it).
        settings: :class:`SoundfontSettings` (the program among them).
        fluidsynth: the ``fluidsynth`` executable (default: on ``PATH``).

    Raises:
        RenderError: no fluidsynth, no soundfont, or no ``soundfile`` to read its output.
    """

    def __init__(self, soundfont=None, settings: Optional[SoundfontSettings] = None, *,
                 fluidsynth: Optional[str] = None):
        self.settings = settings or SoundfontSettings()
        self.fluidsynth = fluidsynth or find_fluidsynth()
        if not self.fluidsynth:
            raise RenderError("fluidsynth not found: install Debian's fluidsynth (apt-get install fluidsynth)")
        self.soundfont = find_soundfont(soundfont)
        try:
            import soundfile  # noqa: F401 - reads FluidSynth's float WAV
        except ImportError as err:
            raise RenderError(f"soundfile is needed to read FluidSynth's output: pip install soundfile ({err})") from err
        self._silent_keys: Optional[list] = None

    def silent_keys(self) -> list:
        """Keys of ``PROBE_KEYS`` the program leaves silent (probed on the first call, :func:`violin_data.probe_keys`).

        Raises:
            RenderError: FluidSynth cannot render the probe.
        """
        if self._silent_keys is None:
            _, self._silent_keys = probe_keys(self.soundfont, low=PROBE_KEYS[0], high=PROBE_KEYS[1],
                                              program=self.settings.program, fluidsynth=self.fluidsynth)
            if self._silent_keys:
                log.debug("%s program %d: keys %s silent", self.soundfont.name, self.settings.program + 1,
                          self._silent_keys)
        return self._silent_keys

    def describe(self) -> dict:
        return {"soundfont": str(self.soundfont), "program": self.settings.program + 1, "fluidsynth": self.fluidsynth,
                "silent_keys": self._silent_keys, **{k: v for k, v in vars(self.settings).items() if k != "program"}}

    def render(self, f0_hz, loudness, sample_rate: int, hop: int) -> np.ndarray:
        """The soundfont baseline for ``f0_hz`` [F], ``loudness`` [F] (0..1): [F · hop] float32, level-matched."""
        import soundfile as sf

        n_frames = int(np.asarray(f0_hz).shape[0])
        n_samples = n_frames * hop
        phrase = soundfont_phrase(f0_hz, loudness, sample_rate, hop, self.settings, self.silent_keys())
        if phrase is None:
            return np.zeros(n_samples, np.float32)
        with tempfile.TemporaryDirectory(prefix="ddsp-eval-") as tmp:
            wav = Path(tmp) / "clip.wav"
            render_phrase(phrase, wav, self.soundfont, program=self.settings.program, sample_rate=sample_rate,
                          gain=1.0, fluidsynth=self.fluidsynth)
            audio, rendered_rate = sf.read(str(wav), dtype="float32", always_2d=True)
        if rendered_rate != sample_rate:
            raise RenderError(f"fluidsynth rendered at {rendered_rate} Hz, not {sample_rate} Hz")
        audio = audio.mean(axis=1)[:n_samples]
        audio = np.pad(audio, (0, n_samples - audio.shape[0]))
        frame_rate_hz = sample_rate / hop
        sounding = np.zeros(n_frames, bool)
        for note in phrase.notes:
            sounding[round(note.start_s * frame_rate_hz) : round(note.end_s * frame_rate_hz)] = True
        smoothing = max(1, round(self.settings.gain_smoothing_s * frame_rate_hz))
        return match_loudness(audio, target_db(loudness), sample_rate, hop, valid=sounding,
                              smoothing_frames=smoothing)


__all__ = ["BASELINES", "SoundfontBaseline", "SoundfontSettings", "RenderError", "match_loudness", "sawtooth",
           "sawtooth_wave", "soundfont_phrase", "target_db", "voiced_stretches"]
