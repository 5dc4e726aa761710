"""Performances: control curves over time (``time_s, f0_hz, loudness``).

A performance is what a player does, written down: the CSV that ``ddsp-device render`` reads,
the built-in demo phrase, and the per-frame controls the engine pulls while rendering offline.
Pure numpy and the standard library.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import ControlsError

CSV_HEADER = ("time_s", "f0_hz", "loudness")


@dataclass(frozen=True)
class Performance:
    """Control curves sampled at arbitrary, strictly increasing times.

    Attributes:
        time_s: ``[n]`` seconds, strictly increasing, starting at ≥ 0.
        f0_hz: ``[n]`` fundamental in Hz, > 0.
        loudness: ``[n]`` normalised loudness 0..1.
    """

    time_s: np.ndarray
    f0_hz: np.ndarray
    loudness: np.ndarray

    @property
    def duration_s(self) -> float:
        return float(self.time_s[-1])

    def frames(self, hop: int, sample_rate: int, tail_s: float = 0.0) -> "FrameControls":
        """Per-frame controls for a hop of ``hop`` samples at ``sample_rate``.

        Frame ``n`` takes the performance at ``t = n · hop / sample_rate``: loudness linearly,
        f0 linearly in log-frequency (a glide between two rows is uniform in pitch). Before the
        first row the first row holds; after the last row the last f0 holds and, for ``tail_s``
        seconds, loudness is 0 so the reverb and filters ring out.

        The frames are computed a block at a time as the engine pulls them, so memory does not
        grow with the length rendered.
        """
        total_s = self.duration_s + tail_s
        n_frames = int(math.ceil(total_s * sample_rate / hop)) + 1
        n_samples = int(round(total_s * sample_rate))
        return FrameControls(self, hop, sample_rate, n_frames, n_samples)

    def out_of_range(self, f0_min_hz: float, f0_max_hz: float) -> "tuple[int, float] | None":
        """The first row (1-based) whose f0 lies outside ``f0_min_hz..f0_max_hz``, with its f0;
        None when every row is inside."""
        bad = np.flatnonzero((self.f0_hz < f0_min_hz) | (self.f0_hz > f0_max_hz))
        if not bad.size:
            return None
        return int(bad[0]) + 1, float(self.f0_hz[bad[0]])


_EMPTY = np.zeros(0)


class FrameControls:
    """Controls at the engine's frame rate, pulled frame by frame while rendering.

    Calling it with a frame index returns ``(f0_hz, loudness)``; past the end, the last frame.
    Frames are computed ``block_frames`` at a time (the engine pulls them in order), so a render
    of any length holds one block: ``[block_frames]`` f0 and loudness.

    Attributes:
        n_frames: frames the performance (with its tail) covers.
        n_samples: samples to render.
    """

    BLOCK_FRAMES = 4096

    def __init__(self, performance: Performance, hop: int, sample_rate: int, n_frames: int, n_samples: int,
                 block_frames: int = BLOCK_FRAMES):
        self.performance = performance
        self.hop = int(hop)
        self.sample_rate = int(sample_rate)
        self.n_frames = int(n_frames)
        self.n_samples = int(n_samples)
        self._block_frames = int(block_frames)
        self._log2_f0 = np.log2(performance.f0_hz)
        self._start = 0
        self._f0_hz = self._loudness = _EMPTY

    def _compute(self, start: int, stop: int) -> "tuple[np.ndarray, np.ndarray]":
        """``[stop - start]`` f0 (Hz) and loudness for frames ``start..stop-1``."""
        p = self.performance
        t = np.arange(start, stop) * (self.hop / self.sample_rate)
        f0 = np.exp2(np.interp(t, p.time_s, self._log2_f0))
        loud = np.interp(t, p.time_s, p.loudness)
        loud[t > p.duration_s] = 0.0
        return f0, loud

    def arrays(self) -> "tuple[np.ndarray, np.ndarray]":
        """Every frame at once, ``([n_frames] f0_hz, [n_frames] loudness)`` (allocates them all)."""
        return self._compute(0, self.n_frames)

    def __call__(self, frame: int) -> tuple[float, float]:
        i = frame if frame < self.n_frames else self.n_frames - 1
        j = i - self._start
        if not 0 <= j < self._f0_hz.shape[0]:
            self._start = i
            self._f0_hz = self._loudness = _EMPTY  # the old block goes before the new one comes
            self._f0_hz, self._loudness = self._compute(i, min(i + self._block_frames, self.n_frames))
            j = 0
        return float(self._f0_hz[j]), float(self._loudness[j])


def validate(time_s, f0_hz, loudness, *, where: str = "performance") -> Performance:
    """Check arrays and build a :class:`Performance`; raise ControlsError naming the row."""
    time_s = np.asarray(time_s, dtype=np.float64)
    f0_hz = np.asarray(f0_hz, dtype=np.float64)
    loudness = np.asarray(loudness, dtype=np.float64)
    if not (time_s.shape == f0_hz.shape == loudness.shape) or time_s.ndim != 1:
        raise ControlsError(f"{where}: time_s, f0_hz and loudness must be 1-D and the same length")
    if len(time_s) == 0:
        raise ControlsError(f"{where}: no control rows")
    for name, values in (("time_s", time_s), ("f0_hz", f0_hz), ("loudness", loudness)):
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            raise ControlsError(f"{where}: row {bad[0] + 1}: {name} is not a finite number")
    if time_s[0] < 0:
        raise ControlsError(f"{where}: row 1: time_s must be >= 0, got {time_s[0]:g}")
    steps = np.flatnonzero(np.diff(time_s) <= 0)
    if steps.size:
        i = steps[0] + 1
        raise ControlsError(
            f"{where}: row {i + 1}: time_s must increase, got {time_s[i]:g} after {time_s[i - 1]:g}"
        )
    bad = np.flatnonzero(f0_hz <= 0)
    if bad.size:
        raise ControlsError(f"{where}: row {bad[0] + 1}: f0_hz must be > 0, got {f0_hz[bad[0]]:g}")
    bad = np.flatnonzero((loudness < 0) | (loudness > 1))
    if bad.size:
        raise ControlsError(
            f"{where}: row {bad[0] + 1}: loudness must be in 0..1, got {loudness[bad[0]]:g}"
        )
    return Performance(time_s, f0_hz, loudness)


def read_csv(path: str | Path) -> Performance:
    """Read a performance CSV with the header ``time_s,f0_hz,loudness``.

    Raises:
        ControlsError: one line naming the file, the row (as numbered in the file) and the problem.
    """
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:  # a UTF-8 BOM (Excel's CSV) is fine
            rows = list(csv.reader(fh))
    except OSError as err:
        raise ControlsError(f"{path}: cannot read: {err.strerror or err}") from err
    except UnicodeDecodeError as err:
        raise ControlsError(f"{path}: not a text CSV file ({err.reason})") from err
    rows = [r for r in rows if r and any(c.strip() for c in r)]
    if not rows:
        raise ControlsError(f"{path}: empty file; expected the header {','.join(CSV_HEADER)}")
    header = tuple(c.strip() for c in rows[0])
    if header != CSV_HEADER:
        raise ControlsError(
            f"{path}: line 1: header must be {','.join(CSV_HEADER)}, got {','.join(header)}"
        )
    values = []
    for line_no, row in enumerate(rows[1:], start=2):
        if len(row) != 3:
            raise ControlsError(f"{path}: line {line_no}: expected 3 columns, got {len(row)}")
        try:
            values.append([float(c) for c in row])
        except ValueError as err:
            raise ControlsError(f"{path}: line {line_no}: {err}") from err
    if not values:
        raise ControlsError(f"{path}: no control rows after the header")
    arr = np.array(values)
    try:
        return validate(arr[:, 0], arr[:, 1], arr[:, 2], where=str(path))
    except ControlsError as err:
        # validate numbers data rows from 1; the file's line is one more (the header)
        raise ControlsError(_shift_row(str(err))) from None


def _shift_row(message: str) -> str:
    import re

    return re.sub(r"row (\d+)", lambda m: f"line {int(m.group(1)) + 1}", message, count=1)


def write_csv(performance: Performance, path: str | Path) -> None:
    """Write a performance as CSV (the format :func:`read_csv` reads)."""
    with Path(path).open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(CSV_HEADER)
        for t, f, l in zip(performance.time_s, performance.f0_hz, performance.loudness):
            w.writerow([f"{t:.5f}", f"{f:.4f}", f"{l:.5f}"])


def midi_to_hz(note: float) -> float:
    return 440.0 * 2.0 ** ((note - 69.0) / 12.0)


def demo_phrase(rate_hz: float = 1000.0) -> Performance:
    """The built-in phrase ``make demo`` plays: about 8 s, in a violin's middle range.

    A legato D-major scale from D4 up to D5 with delayed vibrato on each note and a crescendo
    from mezzo-piano to forte, a slide (portamento) from D5 up to A5, a long A5 with widening
    vibrato and a diminuendo, then a short staccato arpeggio and a soft held G4 that fades out.
    """
    notes = [62, 64, 66, 67, 69, 71, 73, 74]  # D4 .. D5
    segments: list[tuple[float, float, float, float, float]] = []  # start, dur, midi_from, midi_to, level
    t = 0.25
    for i, n in enumerate(notes):
        level = 0.55 + 0.35 * i / (len(notes) - 1)
        segments.append((t, 0.42, n, n, level))
        t += 0.42
    segments.append((t, 0.35, 74, 81, 0.9))  # slide D5 -> A5
    t += 0.35
    segments.append((t, 1.8, 81, 81, 0.9))  # long A5, diminuendo below
    long_start, long_end = t, t + 1.8
    t += 1.8 + 0.15
    for n in (67, 71, 74, 79):  # staccato G major arpeggio
        segments.append((t, 0.14, n, n, 0.75))
        t += 0.22
    t += 0.1
    segments.append((t, 1.5, 67, 67, 0.6))  # soft held G4
    end = t + 1.5 + 0.3

    time_s = np.arange(0.0, end, 1.0 / rate_hz)
    midi = np.full_like(time_s, 62.0)
    loud = np.zeros_like(time_s)
    for start, dur, m0, m1, level in segments:
        sel = (time_s >= start) & (time_s < start + dur)
        x = (time_s[sel] - start) / dur
        midi[sel] = m0 + (m1 - m0) * (0.5 - 0.5 * np.cos(np.pi * x))
        # 40 ms attack, gentle release over the last 60 ms (legato dips, not gaps)
        age = time_s[sel] - start
        rem = start + dur - time_s[sel]
        env = np.minimum(1.0, age / 0.04) * np.minimum(1.0, 0.35 + 0.65 * rem / 0.06)
        if dur < 0.2:  # staccato: shorter release
            env = np.minimum(1.0, age / 0.015) * np.minimum(1.0, rem / 0.04)
        loud[sel] = level * env
        # vibrato: starts after 180 ms, 5.5 Hz, depth up to 0.25 semitone (wider on long notes)
        depth = 0.25 if dur < 1.0 else 0.15 + 0.2 * np.clip((age - 0.3) / 1.0, 0.0, 1.0)
        onset = np.clip((age - 0.18) / 0.25, 0.0, 1.0)
        if m0 == m1 and dur > 0.3:
            midi[sel] += depth * onset * np.sin(2 * np.pi * 5.5 * age)
    # diminuendo over the long A5
    sel = (time_s >= long_start) & (time_s < long_end)
    loud[sel] *= np.linspace(1.0, 0.45, sel.sum())
    # hold pitch between notes at the previous note (release holds the last pitch)
    for i in np.flatnonzero(loud <= 0):
        if i:
            midi[i] = midi[i - 1]
    f0 = np.array([midi_to_hz(m) for m in midi])
    return validate(time_s, f0, np.clip(loud, 0.0, 1.0), where="demo phrase")
