"""Expressive violin phrases rendered with FluidSynth from a free General-MIDI soundfont.

Training data that can be rebuilt here and redistributed: phrases are generated
programmatically (deterministic from a seed), written as Standard MIDI Files, and rendered by the
``fluidsynth`` command with the General-MIDI violin (program 41, 0-based 40) of FluidR3_GM
(Debian ``fluid-soundfont-gm``, MIT licence). These are **sample-library renderings**, not
recordings of a player: close-miked and brighter than a violin heard in a room
(``shared/FIELD-NOTES.md``, "Data for models"), so ``prepare(..., augment=...)`` should add room
and spectral-tilt variety.

Phrase kinds (all monophonic, G3–E7, MIDI 55–100):

- ``legato``: stepwise and leaping lines, note-off and next note-on on the same tick, delayed
  vibrato on the longer notes, a slow expression (CC11) contour;
- ``long``: 2–5 s notes with a crescendo, diminuendo or both (CC11), developing vibrato;
- ``slide``: a note that glides 1–5 semitones mid-note (pitch bend) and stays there;
- ``staccato``: short detached notes across the dynamics (velocity);
- ``run``: fast scales and arpeggios, legato.

Vibrato and slides are pitch bend with the bend range set by RPN 0 first (``BEND_RANGE_SEMITONES``).
Reverb and chorus are off (``-R 0 -C 0`` and CC91/CC93 = 0).

What the soundfont does (measured on FluidR3_GM 3.1): its violin samples sit within about
±30 cents of equal temperament (``prepare`` tracks the pitch actually heard, so the labels are
right); key 94 (A#6) is a hole in the key map, ~50 dB down, so :func:`probe_keys` finds such
keys first and those notes are played from a neighbouring key with pitch bend; rendering runs
about 20× faster than real time on one core.

    from ddsp_device.train.violin_data import render_violin_dataset
    summary = render_violin_dataset("data/violin-wav", minutes=30, seed=0)

``OUT_DIR`` then holds ``violin_NNNN_<kind>.wav`` (48 kHz mono float32), the matching ``.mid``
files, and ``SOURCES.json`` (soundfont name, version, licence, FluidSynth version, seed, every
phrase's notes), which :func:`ddsp_device.train.prepare.prepare` copies into ``dataset.json``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import struct
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from ddsp_device.errors import DdspDeviceError

log = logging.getLogger(__name__)

#: Where Debian's ``fluid-soundfont-gm`` puts FluidR3 (MIT licence).
SOUNDFONT_PATHS = (
    "/usr/share/sounds/sf2/FluidR3_GM.sf2",
    "/usr/share/soundfonts/FluidR3_GM.sf2",
)
GM_VIOLIN_PROGRAM = 40  # 0-based: General MIDI program 41, "Violin"
LOWEST_NOTE = 55  # G3, the open G string
HIGHEST_NOTE = 100  # E7
BEND_RANGE_SEMITONES = 12  # set with RPN 0 at the start of every file
TICKS_PER_QUARTER = 500  # with the default tempo (500 000 µs per quarter) one tick is 1 ms
BEND_STEP_S = 0.004  # pitch-bend curve resolution (250 messages per second while it moves)
EXPRESSION_STEP_S = 0.02
PHRASE_KINDS = ("legato", "long", "slide", "staccato", "run")
KIND_WEIGHTS = (0.32, 0.22, 0.16, 0.14, 0.16)
SOURCES_FILE = "SOURCES.json"

CC_VOLUME, CC_EXPRESSION, CC_REVERB_SEND, CC_CHORUS_SEND = 7, 11, 91, 93
CC_DATA_ENTRY_MSB, CC_DATA_ENTRY_LSB, CC_RPN_LSB, CC_RPN_MSB = 6, 38, 100, 101


class RenderError(DdspDeviceError, OSError):
    """FluidSynth or the soundfont is missing, or a render failed (the message says which)."""


# --------------------------------------------------------------------------------------------
# Phrases


@dataclass
class Note:
    """One note: MIDI ``pitch`` sounding from ``start_s`` for ``duration_s`` at ``velocity``."""

    start_s: float
    duration_s: float
    pitch: int
    velocity: int

    def __post_init__(self):
        # on the pitch-bend grid, so a note's bend starts exactly at its note-on
        start = round(self.start_s / BEND_STEP_S)
        end = max(start + 1, round((self.start_s + self.duration_s) / BEND_STEP_S))
        self.start_s, self.duration_s = start * BEND_STEP_S, (end - start) * BEND_STEP_S

    @property
    def end_s(self) -> float:
        return self.start_s + self.duration_s


@dataclass
class Phrase:
    """A monophonic phrase: notes, a pitch-bend curve and an expression (CC11) curve.

    ``bend_semitones`` [n] is sampled every ``BEND_STEP_S`` from 0 s (the bend applies to the
    sounding note); ``expression`` [m] (0..127) every ``EXPRESSION_STEP_S``.
    """

    kind: str
    notes: list[Note]
    bend_semitones: np.ndarray
    expression: np.ndarray
    volume: int = 100
    tail_s: float = 0.6  # silence after the last note-off, for the release

    @property
    def duration_s(self) -> float:
        return max(note.end_s for note in self.notes) + self.tail_s

    def describe(self) -> dict:
        pitches = [note.pitch for note in self.notes]
        return {
            "kind": self.kind,
            "duration_s": round(self.duration_s, 3),
            "n_notes": len(self.notes),
            "lowest_note": min(pitches),
            "highest_note": max(pitches),
            "velocities": [min(n.velocity for n in self.notes), max(n.velocity for n in self.notes)],
            "notes": [[round(n.start_s, 3), round(n.duration_s, 3), n.pitch, n.velocity] for n in self.notes],
        }


def midi_to_hz(pitch) -> np.ndarray:
    """Equal temperament, A4 = MIDI 69 = 440 Hz."""
    return 440.0 * 2.0 ** ((np.asarray(pitch, np.float64) - 69.0) / 12.0)


def _curve_at(curve: np.ndarray, step_s: float, times_s: np.ndarray) -> np.ndarray:
    index = np.clip(np.floor(np.asarray(times_s) / step_s).astype(np.int64), 0, len(curve) - 1)
    return curve[index]


def phrase_f0_hz(phrase: Phrase, times_s) -> np.ndarray:
    """The phrase's nominal f0 [len(times_s)] in Hz (MIDI pitch + bend), 0 where no note is held."""
    times_s = np.asarray(times_s, np.float64)
    pitch = np.zeros_like(times_s)
    for note in phrase.notes:
        pitch[(times_s >= note.start_s) & (times_s < note.end_s)] = note.pitch
    bend = _curve_at(phrase.bend_semitones, BEND_STEP_S, times_s)
    return np.where(pitch > 0, midi_to_hz(pitch + bend), 0.0)


def _vibrato(rng, n: int, step_s: float, depth_cents: float, rate_hz: float, delay_s: float) -> np.ndarray:
    """A vibrato curve in semitones [n]: delayed onset, depth ramping in, a wandering rate."""
    t = np.arange(n) * step_s
    rate = rate_hz * (1.0 + 0.06 * np.sin(2 * np.pi * rng.uniform(0.2, 0.6) * t + rng.uniform(0, 2 * np.pi)))
    phase = 2 * np.pi * np.cumsum(rate) * step_s
    ramp = np.clip((t - delay_s) / rng.uniform(0.2, 0.6), 0.0, 1.0)
    return depth_cents / 100.0 * ramp * np.sin(phase)


def _smooth_contour(rng, n: int, low: float, high: float, n_points: int) -> np.ndarray:
    """A random smooth contour [n] between ``low`` and ``high`` (cosine-interpolated points)."""
    points = rng.uniform(low, high, size=n_points)
    x = np.linspace(0, n_points - 1, n)
    i = np.minimum(np.floor(x).astype(int), n_points - 2) if n_points > 1 else np.zeros(n, int)
    if n_points == 1:
        return np.full(n, points[0])
    frac = x - i
    w = 0.5 - 0.5 * np.cos(np.pi * frac)
    return points[i] * (1 - w) + points[i + 1] * w


def _dynamic(rng) -> tuple[int, float]:
    """A dynamic level: (velocity, expression base 0..127), pp to ff."""
    level = rng.uniform(0.0, 1.0)
    velocity = int(round(30 + 95 * level + rng.normal(0, 6)))
    expression = 45 + 82 * level ** 0.7
    return int(np.clip(velocity, 20, 127)), float(np.clip(expression, 35, 127))


def _register(rng, span: int) -> tuple[int, int]:
    """A pitch window ``span`` semitones wide, its centre uniform over G3–E7."""
    centre = rng.integers(LOWEST_NOTE, HIGHEST_NOTE + 1)
    low = int(np.clip(centre - span // 2, LOWEST_NOTE, HIGHEST_NOTE - span))
    return low, low + span


_SCALES = {
    "major": (0, 2, 4, 5, 7, 9, 11),
    "minor": (0, 2, 3, 5, 7, 8, 10),
    "dorian": (0, 2, 3, 5, 7, 9, 10),
    "chromatic": tuple(range(12)),
}


def _scale_pitches(rng, low: int, high: int) -> np.ndarray:
    name = rng.choice(list(_SCALES), p=(0.4, 0.3, 0.2, 0.1))
    tonic = int(rng.integers(0, 12))
    pitches = [p for p in range(low, high + 1) if (p - tonic) % 12 in _SCALES[name]]
    return np.array(pitches)


def make_phrase(kind: str, rng: np.random.Generator) -> Phrase:
    """One random phrase of ``kind`` (one of :data:`PHRASE_KINDS`)."""
    if kind not in PHRASE_KINDS:
        raise ValueError(f"phrase kind {kind!r}: choose one of {', '.join(PHRASE_KINDS)}")
    notes: list[Note] = []
    vibratos: list[tuple[Note, float, float, float]] = []  # note, depth_cents, rate_hz, delay_s
    slides: list[tuple[Note, float, float, float]] = []  # note, at_s, length_s, semitones
    velocity, expr_base = _dynamic(rng)
    vib_rate = rng.uniform(4.5, 7.0)
    vib_depth = rng.uniform(8.0, 40.0) if rng.uniform() < 0.85 else 0.0
    t = rng.uniform(0.05, 0.3)
    expression_shape = "contour"

    if kind in ("legato", "run"):
        low, high = _register(rng, int(rng.integers(7, 20)))
        pitches = _scale_pitches(rng, low, high)
        n_notes = int(rng.integers(6, 18)) if kind == "legato" else int(rng.integers(10, 28))
        index = int(rng.integers(0, len(pitches)))
        direction = rng.choice([-1, 1])
        for _ in range(n_notes):
            if kind == "legato":
                duration = float(rng.choice([0.15, 0.25, 0.35, 0.5, 0.8, 1.2], p=(0.1, 0.25, 0.25, 0.2, 0.12, 0.08)))
                duration *= rng.uniform(0.9, 1.1)
                step = int(rng.choice([1, 1, 1, 2, 2, 3, 4, 5])) * (direction if rng.uniform() < 0.7 else -direction)
            else:
                duration = rng.uniform(0.07, 0.16)
                step = direction * (1 if rng.uniform() < 0.8 else 2)
            if not 0 <= index + step < len(pitches):
                direction = -direction
                step = -step
            index = int(np.clip(index + step, 0, len(pitches) - 1))
            note_velocity = int(np.clip(velocity + rng.normal(0, 8), 20, 127))
            note = Note(t, duration, int(pitches[index]), note_velocity)
            notes.append(note)
            if duration >= 0.3 and vib_depth > 0:
                vibratos.append((note, vib_depth * rng.uniform(0.7, 1.2), vib_rate, rng.uniform(0.08, 0.25)))
            t += duration
    elif kind == "long":
        expression_shape = str(rng.choice(["crescendo", "diminuendo", "messa di voce", "contour"]))
        pitch = int(rng.integers(LOWEST_NOTE, HIGHEST_NOTE + 1))
        for _ in range(int(rng.integers(1, 3))):
            duration = rng.uniform(2.0, 5.0)
            note = Note(t, duration, pitch, velocity)
            notes.append(note)
            if vib_depth > 0:
                vibratos.append((note, vib_depth, vib_rate, rng.uniform(0.2, 0.8)))
            t += duration + rng.uniform(0.0, 0.4)
            pitch = int(np.clip(pitch + rng.integers(-5, 6), LOWEST_NOTE, HIGHEST_NOTE))
    elif kind == "slide":
        for _ in range(int(rng.integers(2, 5))):
            interval = int(rng.integers(1, 6)) * int(rng.choice([-1, 1]))
            pitch = int(rng.integers(LOWEST_NOTE + 5, HIGHEST_NOTE - 4))
            target = int(np.clip(pitch + interval, LOWEST_NOTE, HIGHEST_NOTE))
            duration = rng.uniform(1.0, 2.2)
            note = Note(t, duration, pitch, int(np.clip(velocity + rng.normal(0, 8), 20, 127)))
            notes.append(note)
            at = rng.uniform(0.25, 0.45) * duration
            slides.append((note, at, rng.uniform(0.08, 0.45), float(target - pitch)))
            if vib_depth > 0:
                vibratos.append((note, vib_depth, vib_rate, at + 0.3))
            t += duration + (rng.uniform(0.05, 0.3) if rng.uniform() < 0.5 else 0.0)
    else:  # staccato
        low, high = _register(rng, int(rng.integers(5, 15)))
        for _ in range(int(rng.integers(8, 20))):
            duration = rng.uniform(0.06, 0.2)
            pitch = int(rng.integers(low, high + 1))
            note_velocity, _ = _dynamic(rng) if rng.uniform() < 0.3 else (velocity, 0)
            notes.append(Note(t, duration, pitch, int(np.clip(note_velocity + rng.normal(0, 6), 20, 127))))
            t += duration + rng.uniform(0.04, 0.25)

    phrase_end = max(note.end_s for note in notes) + 0.6
    bend = np.zeros(int(np.ceil(phrase_end / BEND_STEP_S)) + 1)
    for note, depth, rate, delay in vibratos:
        i0, i1 = int(round(note.start_s / BEND_STEP_S)), int(round(note.end_s / BEND_STEP_S))
        bend[i0:i1] += _vibrato(rng, i1 - i0, BEND_STEP_S, depth, rate, delay)
    for note, at, length, semitones in slides:
        i0, i1 = int(round(note.start_s / BEND_STEP_S)), int(round(note.end_s / BEND_STEP_S))
        local = np.arange(i1 - i0) * BEND_STEP_S
        x = np.clip((local - at) / length, 0.0, 1.0)
        bend[i0:i1] += semitones * (0.5 - 0.5 * np.cos(np.pi * x))

    n_expr = int(np.ceil(phrase_end / EXPRESSION_STEP_S)) + 1
    x = np.linspace(0.0, 1.0, n_expr)
    low_expr = max(20.0, expr_base - rng.uniform(30, 70))
    if expression_shape == "crescendo":
        expression = low_expr + (127 - low_expr) * x ** rng.uniform(0.7, 1.5)
    elif expression_shape == "diminuendo":
        expression = 127 - (127 - low_expr) * x ** rng.uniform(0.7, 1.5)
    elif expression_shape == "messa di voce":
        expression = low_expr + (127 - low_expr) * np.sin(np.pi * x) ** 1.5
    else:
        expression = _smooth_contour(rng, n_expr, low_expr, min(127.0, expr_base + 10), int(rng.integers(2, 6)))
    return Phrase(kind, notes, bend, np.clip(expression, 0, 127), volume=100)


# --------------------------------------------------------------------------------------------
# Standard MIDI File


def _vlq(value: int) -> bytes:
    """A MIDI variable-length quantity."""
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    return bytes(reversed(out))


def bend_value(semitones: float, bend_range_semitones: float = BEND_RANGE_SEMITONES) -> int:
    """14-bit pitch-bend value (8192 = centre) for ``semitones`` at the given bend range."""
    return int(np.clip(round(8192 + semitones / bend_range_semitones * 8192), 0, 16383))


def phrase_to_midi(phrase: Phrase, *, channel: int = 0, program: int = GM_VIOLIN_PROGRAM,
                   bend_range_semitones: int = BEND_RANGE_SEMITONES, silent_keys=()) -> bytes:
    """A format-0 Standard MIDI File (1 tick = 1 ms) playing ``phrase``.

    A note whose key is in ``silent_keys`` (a hole in the soundfont's key map, see
    :func:`probe_keys`) is played on the nearest sounding key with the difference added to the
    pitch bend while it sounds, so the pitch heard is the same.
    """
    ch = channel & 0x0F
    silent = set(int(k) for k in silent_keys)
    bend_curve = np.array(phrase.bend_semitones, np.float64)
    keys = []
    for note in phrase.notes:
        key = note.pitch
        if key in silent:
            options = [k for k in range(key - 2, key + 3) if k not in silent and 0 <= k <= 127]
            if options:
                key = min(options, key=lambda k: (abs(k - note.pitch), -k))
                i0, i1 = int(round(note.start_s / BEND_STEP_S)), int(round(note.end_s / BEND_STEP_S))
                bend_curve[i0:i1] += note.pitch - key
        keys.append(key)
    cc = 0xB0 | ch
    events: list[tuple[int, int, bytes]] = []  # (tick, order at the same tick, message)

    def at(seconds: float) -> int:
        return int(round(seconds * 1000.0))

    setup = [
        bytes([0xFF, 0x51, 0x03]) + (500000).to_bytes(3, "big"),  # tempo: 120 bpm → 1 tick = 1 ms
        bytes([0xC0 | ch, program]),
        bytes([cc, CC_RPN_MSB, 0]), bytes([cc, CC_RPN_LSB, 0]),  # RPN 0: pitch-bend range …
        bytes([cc, CC_DATA_ENTRY_MSB, bend_range_semitones]), bytes([cc, CC_DATA_ENTRY_LSB, 0]),
        bytes([cc, CC_RPN_MSB, 127]), bytes([cc, CC_RPN_LSB, 127]),  # … then RPN null
        bytes([cc, CC_VOLUME, phrase.volume]),
        bytes([cc, CC_REVERB_SEND, 0]), bytes([cc, CC_CHORUS_SEND, 0]),
    ]
    events += [(0, i, message) for i, message in enumerate(setup)]
    last = None
    for i, value in enumerate(np.round(phrase.expression).astype(int)):
        if value != last:
            events.append((at(i * EXPRESSION_STEP_S), 50, bytes([cc, CC_EXPRESSION, int(value)])))
            last = value
    last = None
    for i, semitones in enumerate(bend_curve):
        value = bend_value(float(semitones), bend_range_semitones)
        if value != last:
            events.append((at(i * BEND_STEP_S), 60, bytes([0xE0 | ch, value & 0x7F, value >> 7])))
            last = value
    for note, key in zip(phrase.notes, keys):
        events.append((at(note.end_s), 40, bytes([0x80 | ch, key, 0])))  # offs before ons
        events.append((at(note.start_s), 70, bytes([0x90 | ch, key, note.velocity])))
    end = at(phrase.duration_s)
    events.append((end, 99, bytes([0xFF, 0x2F, 0x00])))
    events.sort(key=lambda e: (e[0], e[1]))

    track = bytearray()
    now = 0
    for tick, _, message in events:
        track += _vlq(tick - now) + message
        now = tick
    header = b"MThd" + struct.pack(">IHHH", 6, 0, 1, TICKS_PER_QUARTER)
    return header + b"MTrk" + struct.pack(">I", len(track)) + bytes(track)


# --------------------------------------------------------------------------------------------
# Rendering


def find_fluidsynth() -> Optional[str]:
    return shutil.which("fluidsynth")


def find_soundfont(soundfont=None) -> Path:
    """The soundfont to use: ``soundfont`` if given, else FluidR3_GM where Debian installs it."""
    candidates = [soundfont] if soundfont else list(SOUNDFONT_PATHS)
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    raise RenderError(
        f"no soundfont at {', '.join(str(c) for c in candidates)}: install Debian's fluid-soundfont-gm"
        " (apt-get install fluid-soundfont-gm) or pass soundfont=PATH"
    )


def soundfont_info(path) -> dict:
    """Name, version and copyright from a SoundFont 2 file's INFO chunk (``{}`` parts if absent)."""
    info: dict = {"file": os.path.basename(str(path))}
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"sfbk":
            raise RenderError(f"{path}: not a SoundFont 2 file")
        chunk = f.read(8)
        if chunk[:4] != b"LIST":
            return info
        size = struct.unpack("<I", chunk[4:8])[0]
        body = f.read(min(size, 1 << 16))
    if body[:4] != b"INFO":
        return info
    pos = 4
    names = {b"INAM": "name", b"ICOP": "copyright", b"IENG": "engineers", b"ICMT": "comment",
             b"ICRD": "date", b"isng": "sound_engine"}
    while pos + 8 <= len(body):
        key, length = body[pos : pos + 4], struct.unpack("<I", body[pos + 4 : pos + 8])[0]
        value = body[pos + 8 : pos + 8 + length]
        if key == b"ifil" and length >= 4:
            major, minor = struct.unpack("<HH", value[:4])
            info["sf_version"] = f"{major}.{minor:02d}"
        elif key in names:
            info[names[key]] = value.split(b"\0", 1)[0].decode("latin-1").strip()
        pos += 8 + length + (length & 1)
    return info


def _debian_package_version(path) -> Optional[str]:
    """``package version`` of the Debian package owning ``path``, if dpkg knows it."""
    try:
        owner = subprocess.run(["dpkg-query", "-S", str(Path(path).resolve())], capture_output=True,
                               text=True, timeout=10)
        if owner.returncode != 0:
            return None
        package = owner.stdout.split(":", 1)[0].strip()
        version = subprocess.run(["dpkg-query", "-W", "-f=${Version}", package], capture_output=True,
                                 text=True, timeout=10)
        return f"{package} {version.stdout.strip()}" if version.returncode == 0 else package
    except (OSError, subprocess.SubprocessError):
        return None


def fluidsynth_version(fluidsynth: Optional[str] = None) -> str:
    exe = fluidsynth or find_fluidsynth()
    if not exe:
        return "not installed"
    try:
        out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError) as err:
        return f"unknown ({err})"
    for line in out.splitlines():
        if "version" in line.lower():
            return line.strip()
    return out.strip().splitlines()[0] if out.strip() else "unknown"


def render_midi(midi_path, wav_path, soundfont, *, sample_rate: int = 48000, gain: float = 0.5,
                fluidsynth: Optional[str] = None, timeout_s: float = 300.0) -> None:
    """Render ``midi_path`` to a float WAV at ``sample_rate`` with reverb and chorus off.

    Runs ``fluidsynth -ni -q -R 0 -C 0 -g GAIN -r RATE -O float -T wav -F WAV SF2 MID``.
    """
    exe = fluidsynth or find_fluidsynth()
    if not exe:
        raise RenderError("fluidsynth not found: install Debian's fluidsynth (apt-get install fluidsynth)")
    command = [exe, "-ni", "-q", "-R", "0", "-C", "0", "-g", f"{gain:g}", "-r", str(int(sample_rate)),
               "-O", "float", "-T", "wav", "-F", str(wav_path), str(soundfont), str(midi_path)]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
    except (OSError, subprocess.SubprocessError) as err:
        raise RenderError(f"{midi_path}: fluidsynth failed: {err}") from err
    if result.returncode != 0 or not Path(wav_path).is_file() or Path(wav_path).stat().st_size <= 44:
        detail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
        raise RenderError(f"{midi_path}: fluidsynth exited {result.returncode}: {detail[0]}")


def _to_mono(wav_path, seconds: Optional[float] = None) -> None:
    """Rewrite a (stereo) float WAV as mono float32 (the mean of its channels), cut to ``seconds``
    (FluidSynth's fast render appends about 2 s of silence)."""
    import soundfile as sf

    audio, sample_rate = sf.read(str(wav_path), dtype="float32", always_2d=True)
    if seconds is not None:
        audio = audio[: int(round(seconds * sample_rate))]
    sf.write(str(wav_path), audio.mean(axis=1), sample_rate, subtype="FLOAT")


def render_phrase(phrase: Phrase, wav_path, soundfont, *, silent_keys=(), program: int = GM_VIOLIN_PROGRAM,
                  **kwargs) -> None:
    """Write ``phrase`` as MIDI next to ``wav_path`` (same stem, ``.mid``), render it, make it mono.

    ``program`` is 0-based (40 = General MIDI 41, Violin); ``kwargs`` go to :func:`render_midi`.
    """
    wav_path = Path(wav_path)
    midi_path = wav_path.with_suffix(".mid")
    midi_path.write_bytes(phrase_to_midi(phrase, program=program, silent_keys=silent_keys))
    render_midi(midi_path, wav_path, soundfont, **kwargs)
    _to_mono(wav_path, phrase.duration_s)


def probe_keys(soundfont, *, low: int = LOWEST_NOTE - 2, high: int = HIGHEST_NOTE + 2,
               program: int = GM_VIOLIN_PROGRAM, fluidsynth: Optional[str] = None,
               hole_db: float = 20.0) -> tuple[dict, list]:
    """Render every key ``low..high`` once (velocity 100) and find the holes in the key map.

    Returns ``(level_db, silent_keys)``: each key's RMS level in dBFS, and the keys more than
    ``hole_db`` below the median (FluidR3's violin: key 94, A#6, is ~50 dB down).
    """
    import soundfile as sf

    notes = [Note(0.1 + 0.6 * k, 0.5, p, 100) for k, p in enumerate(range(low, high + 1))]
    end = notes[-1].end_s + 0.6
    phrase = Phrase("probe", notes, np.zeros(int(end / BEND_STEP_S) + 1),
                    np.full(int(end / EXPRESSION_STEP_S) + 1, 127.0))
    with tempfile.TemporaryDirectory(prefix="ddsp-probe-") as tmp:
        wav = Path(tmp) / "probe.wav"
        midi = Path(tmp) / "probe.mid"
        midi.write_bytes(phrase_to_midi(phrase, program=program))
        render_midi(midi, wav, soundfont, sample_rate=48000, gain=1.0, fluidsynth=fluidsynth)
        audio, sample_rate = sf.read(str(wav), dtype="float64", always_2d=True)
    audio = audio.mean(axis=1)
    level_db = {}
    for note in notes:
        segment = audio[int((note.start_s + 0.1) * sample_rate): int(note.end_s * sample_rate)]
        level_db[note.pitch] = float(10 * np.log10(np.mean(segment ** 2) + 1e-20))
    median = float(np.median(list(level_db.values())))
    silent = [key for key, level in level_db.items() if level < median - hole_db]
    return level_db, silent


@dataclass
class RenderSummary:
    """What :func:`render_violin_dataset` wrote."""

    out_dir: str
    n_phrases: int
    minutes: float
    wall_s: float
    kinds: dict = field(default_factory=dict)


def render_violin_dataset(out_dir, minutes: float = 30.0, *, seed: int = 0, soundfont=None,
                          sample_rate: int = 48000, gain: float = 2.0,
                          kinds: Sequence[str] = PHRASE_KINDS, kind_weights: Optional[Sequence[float]] = None,
                          progress: bool = True) -> RenderSummary:
    """Render about ``minutes`` of expressive violin phrases into ``out_dir`` (deterministic in ``seed``).

    Phrase ``i`` is drawn from ``numpy.random.default_rng([seed, i])``, so a longer render starts
    with the same phrases as a shorter one. Writes ``violin_NNNN_<kind>.wav`` / ``.mid`` and
    ``SOURCES.json``. ``gain`` is FluidSynth's master gain, the same for every phrase, so the
    dynamics between phrases are kept (at 2.0 the loudest ff phrases peak near −2 dBFS).
    Keys the soundfont leaves silent (:func:`probe_keys`) are played from a neighbouring key
    with pitch bend.
    """
    import time

    from tqdm import tqdm

    started = time.monotonic()
    exe = find_fluidsynth()
    if not exe:
        raise RenderError("fluidsynth not found: install Debian's fluidsynth (apt-get install fluidsynth)")
    sf2 = find_soundfont(soundfont)
    if minutes <= 0:
        raise ValueError(f"minutes must be > 0, not {minutes}")
    kinds = tuple(kinds)
    weights = np.asarray(kind_weights if kind_weights is not None else
                         [KIND_WEIGHTS[PHRASE_KINDS.index(k)] if k in PHRASE_KINDS else 1.0 for k in kinds], float)
    weights = weights / weights.sum()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _, silent_keys = probe_keys(sf2, fluidsynth=exe)
    if silent_keys:
        log.info("%s: keys %s are silent for program %d; playing them from a neighbour with pitch bend",
                 sf2.name, silent_keys, GM_VIOLIN_PROGRAM + 1)
    phrases, total_s, counts = [], 0.0, {}
    bar = tqdm(total=round(minutes * 60.0), unit="s", desc="render violin", disable=not progress or None)
    i = 0
    while total_s < minutes * 60.0:
        rng = np.random.default_rng([seed, i])
        kind = str(rng.choice(kinds, p=weights))
        phrase = make_phrase(kind, rng)
        name = f"violin_{i:04d}_{kind}"
        render_phrase(phrase, out / f"{name}.wav", sf2, silent_keys=silent_keys, sample_rate=sample_rate,
                      gain=gain, fluidsynth=exe)
        entry = {"file": f"{name}.wav", "midi": f"{name}.mid", **phrase.describe()}
        phrases.append(entry)
        counts[kind] = counts.get(kind, 0) + 1
        total_s += phrase.duration_s
        bar.update(min(round(phrase.duration_s), max(0, bar.total - bar.n)))
        i += 1
    bar.close()
    sf_info = soundfont_info(sf2)
    package = _debian_package_version(sf2)
    fs_version = fluidsynth_version(exe)
    provenance = (
        f"Sample-library renderings, not recordings: {len(phrases)} generated violin phrases "
        f"({total_s / 60:.1f} min; {', '.join(f'{k} {n}' for k, n in sorted(counts.items()))}) played by the "
        f"General-MIDI Violin (program 41) of {sf_info.get('name', sf2.name)} ({sf2.name}"
        f"{', ' + package if package else ''}) through {fs_version}, reverb and chorus off, "
        f"{sample_rate} Hz, seed {seed}."
    )
    sources = {
        "provenance": provenance,
        "licence": "MIT (FluidR3_GM soundfont by Frank Wen; renderings and generated MIDI likewise)",
        "kind": "sample-library renderings",
        "soundfont": {**sf_info, "path": str(sf2), "debian_package": package, "licence": "MIT",
                      "program": GM_VIOLIN_PROGRAM + 1},
        "renderer": {"fluidsynth": fs_version, "sample_rate_hz": sample_rate, "gain": gain,
                     "reverb": False, "chorus": False, "format": "mono float32 WAV",
                     "silent_keys_played_by_bend": silent_keys},
        "generator": {"module": __name__, "seed": seed, "minutes": minutes, "kinds": list(kinds),
                      "kind_weights": [round(float(w), 4) for w in weights],
                      "range": ["G3 (MIDI 55)", "E7 (MIDI 100)"], "bend_range_semitones": BEND_RANGE_SEMITONES},
        "phrases": phrases,
    }
    (out / SOURCES_FILE).write_text(json.dumps(sources, indent=1) + "\n", encoding="utf-8")
    wall = time.monotonic() - started
    log.info("rendered %d phrases, %.1f min of violin, into %s in %.0f s", len(phrases), total_s / 60, out, wall)
    return RenderSummary(str(out), len(phrases), total_s / 60.0, wall, counts)
