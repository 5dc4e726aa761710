"""Voicing: the EQ that makes one source of training audio sound like another.

Two corrections go into the Violin's recipe (models/README.md, "Voicing"), both applied by
``train prepare --eq`` as zero-phase curves:

- **soundfont → real violin.** :func:`render_like` plays, with the soundfont, the same notes as a
  folder of real single-note recordings (one file per note, named by the note: ``A3.wav``), held
  with vibrato at forte; :func:`measure_eq` compares the two folders note by note and returns the
  curve that turns the soundfont's tone colour into the real one's.
- **close microphone → listening distance**: a fixed curve, decided from measurements of real
  recordings (the numbers and their sources are in models/README.md).

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
    audio = np.asarray(audio, np.float64).reshape(-1)
    n_fft, hop = 4096, 1024
    if audio.shape[0] < n_fft:
        raise VoicingError(f"{audio.shape[0]} samples: need at least {n_fft}")
    window = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n_fft) / n_fft)
    frames = np.lib.stride_tricks.sliding_window_view(audio, n_fft)[::hop] * window
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    energy = power.sum(axis=1)
    power = power[energy >= energy.max() * 0.1].mean(axis=0)
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    centres = np.asarray(centres_hz, np.float64)
    bands = np.array([power[(freqs >= c * 2 ** (-1 / 6)) & (freqs < c * 2 ** (1 / 6))].sum() for c in centres])
    valid = centres * 2 ** (1 / 6) > 0.9 * f0_hz
    total = bands[valid].sum()
    out = np.full(centres.shape, np.nan)
    if total > 0:
        out[valid] = 10.0 * np.log10(np.maximum(bands[valid], total * 1e-12) / total)
    return out


def measure_eq(reference_dir, source_dir, centres_hz: Sequence[float] = BAND_CENTRES_HZ) -> dict:
    """The curve (reference − source, dB per band) from note-named pairs of files.

    Returns ``{"points": [[hz, db], …], "notes": [...], "per_note_db": {note: [...]}}``; the points
    are the smoothed median per band over the notes that reach it (module docstring).
    """
    from ddsp_device.train.prepare import find_audio_files, read_audio

    reference = {p.stem: p for p in find_audio_files(reference_dir) if note_to_midi(p.stem) is not None}
    source = {p.stem: p for p in find_audio_files(source_dir)}
    common = sorted(set(reference) & set(source), key=note_to_midi)
    if not common:
        raise VoicingError(f"{reference_dir} and {source_dir}: no note-named files (e.g. A4.wav) in common")
    per_note = {}
    for note in common:
        f0_hz = 440.0 * 2.0 ** ((note_to_midi(note) - 69) / 12.0)
        shares = []
        for path in (reference[note], source[note]):
            audio, _ = read_audio(path, SAMPLE_RATE_HZ)
            shares.append(band_shares_db(audio, SAMPLE_RATE_HZ, f0_hz, centres_hz))
        per_note[note] = shares[0] - shares[1]
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
