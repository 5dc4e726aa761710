"""Voicing: the EQ that makes one source of training audio sound like another.

Two corrections go into the Violin's recipe (models/README.md, "Voicing"), both applied by
``train prepare --eq`` as zero-phase curves:

- **soundfont → real violin.** :func:`render_like` plays, with the soundfont, the same notes as a
  folder of real single-note recordings (one file per note, named by the note: ``A3.wav``), held
  with vibrato at forte; :func:`measure_eq` compares the two folders note by note and returns the
  curve that turns the soundfont's tone colour into the real one's.
- **close microphone → listening distance.** :func:`phrase_shares_by_note` measures real
  performances recorded in rooms (:mod:`.real_phrases`, the training ones only) at the pitches of
  the close-miked real notes, and :func:`curve_from_shares` turns the notes' tone colour into
  theirs.

:func:`measure_eq`'s method, per pair of files with the same stem: the long-term average power
spectrum over the frames within 10 dB of the loudest (4096-point periodic Hann, hop 1024, 48
kHz), summed in third-octave bands, each band as a share (dB) of the energy at and above the
note's fundamental (bands below 0.9·f0 hold no partials and are left out); the curve is the
median over notes of (reference − source) per band, kept for the bands that at least half the
notes reach (fewer notes give a noisy median), then smoothed 1-2-1 across neighbouring bands; below
its first band the curve holds that band's value (``prepare --eq``). Numpy and scipy only.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from ddsp_device.errors import DdspDeviceError

log = logging.getLogger(__name__)

SAMPLE_RATE_HZ = 48000
BAND_CENTRES_HZ = tuple(float(1000.0 * 2.0 ** (k / 3.0)) for k in range(-9, 13))  # 125 Hz … 16 kHz
NOTE_PATTERN = re.compile(r"^([A-Ga-g])([#b]?)(-?\d)$")
_SEMITONE = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}


class VoicingError(DdspDeviceError, ValueError):
    """The folders cannot be compared (no notes in common, a file is unreadable): one line."""


def note_to_midi(name: str) -> Optional[int]:
    """``"A4"`` → 69, ``"C#5"`` → 73, ``"Bb3"`` → 58; ``None`` when ``name`` is not a note."""
    match = NOTE_PATTERN.match(name)
    if not match:
        return None
    letter, accidental, octave = match.groups()
    shift = {"#": 1, "b": -1}.get(accidental, 0)
    return 12 * (int(octave) + 1) + _SEMITONE[letter.upper()] + shift


def band_shares_db(audio, sample_rate: int, f0_hz: float, centres_hz: Sequence[float] = BAND_CENTRES_HZ):
    """Third-octave band shares (dB) of the loud frames' average spectrum, relative to the energy at
    and above ``0.9 · f0_hz``; ``nan`` for bands below that. ``[len(centres_hz)]``."""
    power = frame_power(audio)
    energy = power.sum(axis=1)
    return shares_of(power[energy >= energy.max() * 0.1].mean(axis=0), sample_rate, f0_hz, centres_hz)


N_FFT, HOP = 4096, 1024


def frame_power(audio) -> np.ndarray:
    """Power spectra ``[frames, N_FFT // 2 + 1]`` (periodic Hann, hop :data:`HOP`); frame ``i``
    covers samples ``i·HOP … i·HOP + N_FFT − 1``."""
    audio = np.asarray(audio, np.float64).reshape(-1)
    if audio.shape[0] < N_FFT:
        raise VoicingError(f"{audio.shape[0]} samples: need at least {N_FFT}")
    window = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(N_FFT) / N_FFT)
    power = np.empty(((audio.shape[0] - N_FFT) // HOP + 1, N_FFT // 2 + 1))
    frames = np.lib.stride_tricks.sliding_window_view(audio, N_FFT)[::HOP]
    for start in range(0, power.shape[0], 512):
        power[start : start + 512] = np.abs(np.fft.rfft(frames[start : start + 512] * window, axis=1)) ** 2
    return power


def shares_of(power, sample_rate: int, f0_hz: float, centres_hz: Sequence[float] = BAND_CENTRES_HZ) -> np.ndarray:
    """Third-octave band shares (dB) of one average power spectrum ``[N_FFT // 2 + 1]`` relative to
    the energy at and above ``0.9 · f0_hz``; ``nan`` below."""
    freqs = np.fft.rfftfreq(N_FFT, 1.0 / sample_rate)
    centres = np.asarray(centres_hz, np.float64)
    bands = np.array([power[(freqs >= c * 2 ** (-1 / 6)) & (freqs < c * 2 ** (1 / 6))].sum() for c in centres])
    valid = centres * 2 ** (1 / 6) > 0.9 * f0_hz
    total = bands[valid].sum()
    out = np.full(centres.shape, np.nan)
    if total > 0:
        out[valid] = 10.0 * np.log10(np.maximum(bands[valid], total * 1e-12) / total)
    return out


def note_hz(note: str) -> float:
    return 440.0 * 2.0 ** ((note_to_midi(note) - 69) / 12.0)


def phrase_shares_by_note(files, notes: Sequence[str], *, semitones: float = 1.0, min_confidence: float = 0.6,
                          within_db: float = 20.0, min_frames: int = 20,
                          centres_hz: Sequence[float] = BAND_CENTRES_HZ) -> dict:
    """Band shares of performance recordings, pitch-matched to ``notes``: for each note, the
    average spectrum of the frames (of all ``files``) whose tracked f0 lies within ``semitones``
    of it, with Praat confidence ≥ ``min_confidence`` and energy within ``within_db`` of their
    file's loudest frame. Notes with fewer than ``min_frames`` such frames are left out.
    Returns ``{note: shares [bands]}`` (:func:`shares_of`)."""
    from ddsp_device.train import features as feat
    from ddsp_device.train.prepare import read_audio

    sums = {note: np.zeros(N_FFT // 2 + 1) for note in notes}
    counts = dict.fromkeys(notes, 0)
    for path in files:
        audio, _ = read_audio(path, SAMPLE_RATE_HZ)
        power = frame_power(audio)
        f0_hz, confidence = feat.track_f0(audio, SAMPLE_RATE_HZ, HOP)
        centre = np.arange(power.shape[0]) + N_FFT // (2 * HOP)  # the f0 frame at each window's centre
        centre = np.minimum(centre, f0_hz.shape[0] - 1)
        f0_hz, confidence = f0_hz[centre], confidence[centre]
        energy = power.sum(axis=1)
        keep = (confidence >= min_confidence) & (energy >= energy.max() * 10.0 ** (-within_db / 10.0))
        for note in notes:
            near = keep & (np.abs(12.0 * np.log2(np.maximum(f0_hz, 1.0) / note_hz(note))) < semitones)
            sums[note] += power[near].sum(axis=0)
            counts[note] += int(near.sum())
    return {note: shares_of(sums[note] / counts[note], SAMPLE_RATE_HZ, note_hz(note), centres_hz)
            for note in notes if counts[note] >= min_frames}


def notes_shares(directory, centres_hz: Sequence[float] = BAND_CENTRES_HZ) -> dict:
    """``{note: shares}`` of the note-named single-note files in ``directory``."""
    from ddsp_device.train.prepare import find_audio_files, read_audio

    out = {}
    for path in find_audio_files(directory):
        if note_to_midi(path.stem) is not None:
            audio, _ = read_audio(path, SAMPLE_RATE_HZ)
            out[path.stem] = band_shares_db(audio, SAMPLE_RATE_HZ, note_hz(path.stem), centres_hz)
    return out


def curve_from_shares(reference: dict, source: dict, centres_hz: Sequence[float] = BAND_CENTRES_HZ) -> dict:
    """The EQ (reference − source) from two ``{note: shares}`` tables: median per band over the
    notes in common, bands reached by at least half of them, smoothed 1-2-1 (module docstring)."""
    common = sorted(set(reference) & set(source), key=note_to_midi)
    if not common:
        raise VoicingError("no notes in common between the reference and the source")
    per_note = {note: reference[note] - source[note] for note in common}
    table = np.array(list(per_note.values()))
    counts = np.sum(np.isfinite(table), axis=0)
    reliable = counts >= max(1, (len(common) + 1) // 2)
    medians = np.array([np.median(c[np.isfinite(c)]) if n else np.nan for c, n in zip(table.T, counts)])
    centres = np.asarray(centres_hz, np.float64)[reliable]
    medians = medians[reliable]
    if medians.size >= 3:  # a 1-2-1 smoothing over neighbouring bands (ends kept)
        medians = np.concatenate([medians[:1], (medians[:-2] + 2 * medians[1:-1] + medians[2:]) / 4, medians[-1:]])
    points = [[round(float(c), 1), round(float(m), 1)] for c, m in zip(centres, medians)]
    return {"points": points, "notes": common,
            "per_note_db": {k: [None if not np.isfinite(v) else round(float(v), 1) for v in row]
                            for k, row in per_note.items()}}


def measure_eq(reference_dir, source_dir, centres_hz: Sequence[float] = BAND_CENTRES_HZ) -> dict:
    """The curve (reference − source, dB per band) from note-named pairs of files.

    Returns ``{"points": [[hz, db], …], "notes": [...], "per_note_db": {note: [...]}}``; the points
    are the smoothed median per band over the notes that reach it (module docstring).
    """
    reference, source = notes_shares(reference_dir, centres_hz), notes_shares(source_dir, centres_hz)
    if not set(reference) & set(source):
        raise VoicingError(f"{reference_dir} and {source_dir}: no note-named files (e.g. A4.wav) in common")
    return curve_from_shares(reference, source, centres_hz)


def shape_curve(points, *, zero_at_hz: float = 1000.0, hold_above_hz: Optional[float] = None) -> list:
    """Shift a curve so that it reads 0 dB at ``zero_at_hz`` (an EQ's overall gain only moves
    the level, which ``prepare`` measures again), and optionally hold its value at
    ``hold_above_hz`` for every band above (where recordings' quiet top octaves show their noise
    floor and lossy coding more than the instrument)."""
    from ddsp_device.train.prepare import eq_gain_db

    pts = [(float(hz), float(db)) for hz, db in points]
    offset = float(eq_gain_db([zero_at_hz], pts)[0])
    held = float(eq_gain_db([hold_above_hz], pts)[0]) if hold_above_hz else None
    out = []
    for hz, db in pts:
        if held is not None and hz > hold_above_hz:
            db = held
        out.append([hz, round(db - offset, 1)])
    if held is not None and not any(hz == hold_above_hz for hz, _ in out):
        out.append([float(hold_above_hz), round(held - offset, 1)])
        out.sort()
    return out


def format_points(points) -> str:
    """``[[hz, db], …]`` → ``"HZ:DB,…"`` (what ``prepare --eq`` takes)."""
    return ",".join(f"{hz:g}:{db:g}" for hz, db in points)


def render_like(real_dir, out_dir, *, seconds: float = 6.0, velocity: int = 110, soundfont=None) -> list[str]:
    """Render, with the soundfont's violin, one held note (vibrato ±20 cents at 5.5 Hz, forte) for
    each note-named file in ``real_dir``, as ``out_dir/<NOTE>.wav``; returns the notes."""
    from ddsp_device.train import violin_data as vd

    notes = sorted({p.stem for p in Path(real_dir).glob("*.wav") if note_to_midi(p.stem) is not None},
                   key=note_to_midi)
    if not notes:
        raise VoicingError(f"{real_dir}: no note-named WAV files (e.g. A4.wav)")
    exe = vd.find_fluidsynth()
    if not exe:
        raise vd.RenderError("fluidsynth not found: install Debian's fluidsynth (apt-get install fluidsynth)")
    sf2 = vd.find_soundfont(soundfont)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    times_s = np.arange(int((seconds + 1.0) / vd.BEND_STEP_S) + 1) * vd.BEND_STEP_S
    bend = 0.2 * np.sin(2.0 * np.pi * 5.5 * times_s) * np.clip((times_s - 0.3) / 0.5, 0.0, 1.0)
    expression = np.full(int((seconds + 1.0) / vd.EXPRESSION_STEP_S) + 1, 120.0)
    for note in notes:
        phrase = vd.Phrase("long", [vd.Note(0.0, seconds, note_to_midi(note), velocity)], bend, expression)
        vd.render_phrase(phrase, out / f"{note}.wav", sf2, fluidsynth=exe)
    return notes
