"""``ddsp-device train prepare``: a folder of recordings → a training dataset.

    from ddsp_device.train.prepare import prepare
    summary = prepare("recordings/", "data/violin", augment=("tilt+room", "room+gain"))

Every audio file under ``AUDIO_DIR`` (``.wav``, also ``.flac``, ``.ogg``, ``.opus``, ``.mp3``, ``.aif(f)``; any rate,
mono or multichannel, searched recursively) is mixed to mono, resampled to 48 kHz
(``scipy.signal.resample_poly``, Kaiser β = 8.6), optionally level-normalised, analysed
(:mod:`ddsp_device.train.features`: A-weighted loudness and Praat f0 at the frame rate) and cut
into clips of ``clip_s`` seconds on the frame grid. Files go whole to ``train`` or
``validation`` (never split between them), chosen deterministically from ``seed``.

A file that cannot be used is refused with one warning naming it and the reason (unreadable,
empty, too short, not finite, silent, no pitch found) and the rest go on.

The dataset (read by :mod:`ddsp_device.train.data`)::

    DATASET/
      dataset.json      provenance, licence, settings, features, every source and its split,
                        the refused files and why
      train/*.npz       one clip per file: audio, f0_hz, loudness, f0_confidence, sample_rate,
                        frame_rate_hz
      validation/*.npz

**Provenance and licence** come from the arguments, else from ``AUDIO_DIR/SOURCES.json`` (what
:func:`ddsp_device.train.violin_data.render_violin_dataset` writes), else "unknown".

**Augmentation** (training files only): each entry of ``augment`` adds one more copy of every
training file, transformed and then analysed again (loudness and f0 recomputed from the
transformed audio). An entry joins effects with ``+``, applied in this order:

- ``tilt``: a high shelf of −6…+6 dB above 1.5–4 kHz and a one-pole low-pass at 10–20 kHz: the
  colour of another microphone and placement, as likely brighter as darker (close-miked real
  violins, e.g. VSCO 2's, have 5–7 dB more energy at 4–8 kHz than FluidR3's violin; a cut-only
  tilt taught the first Violin runs a duller tone than real violins have);
- ``room``: convolution with a synthetic room response: sparse early reflections, then
  exponentially decaying noise (RT60 0.25–1.5 s, highs decaying 1.4–2.5× faster), direct to
  reverberant ratio −6…+8 dB;
- ``gain``: a level change of −15…+3 dB (varied dynamics in the loudness input).

The parameters are drawn per file and copy from ``seed``; repeat an entry for more copies.
"""

from __future__ import annotations

import json
import logging
import math
import re
import shutil
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from ddsp_device.errors import DdspDeviceError
from ddsp_device.train import features as feat

log = logging.getLogger(__name__)

SAMPLE_RATE_HZ = 48000
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".opus", ".mp3", ".aif", ".aiff")  # as libsndfile ≥ 1.1 reads
AUGMENT_EFFECTS = ("tilt", "room", "gain")
SOURCES_FILE = "SOURCES.json"
DATASET_FILE = "dataset.json"
SPLITS = ("train", "validation")
MIN_FILE_S = 0.5
MIN_CLIP_S = 1.0  # a file's last piece is kept as a shorter clip when at least this long
SILENCE_DB = feat.LOUDNESS_FLOOR_DB  # a file whose loudest frame is below this is silent
PEAK_LIMIT = 0.99  # normalisation and augmentation never push the peak above this
RESAMPLE_WINDOW = ("kaiser", 8.6)


class PrepareError(DdspDeviceError, ValueError):
    """``prepare`` cannot run: bad settings (all listed), no usable files, or the output exists."""


class RefusedFile(Exception):
    """One input file cannot be used; the message is the reason."""


@dataclass
class PrepareSummary:
    """What :func:`prepare` did. ``refused`` holds ``(file, reason)``; minutes are of clips written."""

    out_dataset: str
    files_used: int
    files_refused: list = field(default_factory=list)
    clips: dict = field(default_factory=dict)  # split → clips (train includes augmented)
    minutes: dict = field(default_factory=dict)  # split → minutes
    augmented_clips: int = 0
    augmented_minutes: float = 0.0
    source_minutes: float = 0.0  # of the usable input files
    wall_s: float = 0.0

    def lines(self) -> list[str]:
        """A short human summary."""
        out = [
            f"{self.files_used} files used ({self.source_minutes:.1f} min), {len(self.files_refused)} refused",
            *(f"{split}: {self.clips.get(split, 0)} clips, {self.minutes.get(split, 0.0):.1f} min" for split in SPLITS),
        ]
        if self.augmented_clips:
            out.append(f"of train, augmented: {self.augmented_clips} clips, {self.augmented_minutes:.1f} min")
        out += [f"refused {name}: {reason}" for name, reason in self.files_refused]
        out.append(f"wrote {self.out_dataset} in {self.wall_s:.0f} s")
        return out


# --------------------------------------------------------------------------------------------
# Audio in


def read_audio(path, sample_rate: int = SAMPLE_RATE_HZ) -> tuple[np.ndarray, dict]:
    """``(audio [S] float32 mono at sample_rate, info)``; raises :class:`RefusedFile`."""
    import soundfile as sf

    try:
        data, rate_in = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as err:  # soundfile raises LibsndfileError, RuntimeError, TypeError …
        text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise RefusedFile(f"unreadable ({text})") from err
    info = {"sample_rate_in": int(rate_in), "channels_in": int(data.shape[1]), "seconds": data.shape[0] / rate_in}
    if data.shape[0] == 0:
        raise RefusedFile("empty (no samples)")
    if not np.all(np.isfinite(data)):
        raise RefusedFile("holds NaN or infinite samples")
    mono = data.mean(axis=1)
    if info["seconds"] < MIN_FILE_S:
        raise RefusedFile(f"too short ({info['seconds']:.2f} s; need at least {MIN_FILE_S} s)")
    return resample(mono, int(rate_in), sample_rate), info


def resample(audio, rate_in: int, rate_out: int) -> np.ndarray:
    """Polyphase resampling ``rate_in`` → ``rate_out`` (exact ratio), float32."""
    audio = np.asarray(audio, np.float32)
    if rate_in == rate_out:
        return audio
    from scipy.signal import resample_poly

    g = math.gcd(int(rate_in), int(rate_out))
    return resample_poly(audio, rate_out // g, rate_in // g, window=RESAMPLE_WINDOW).astype(np.float32)


def find_audio_files(audio_dir) -> list[Path]:
    """Audio files under ``audio_dir`` (recursive), sorted by relative path."""
    root = Path(audio_dir)
    files = [p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS
             and not any(part.startswith(".") for part in p.relative_to(root).parts)]
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


# --------------------------------------------------------------------------------------------
# Augmentation


def parse_augment(augment: Sequence[str]) -> list[tuple[str, ...]]:
    """``("tilt+room", "gain")`` → ``[("tilt", "room"), ("gain",)]``; :class:`ValueError` names bad ones."""
    if isinstance(augment, str):
        augment = [augment]
    variants = []
    for entry in augment:
        effects = tuple(e.strip() for e in str(entry).split("+") if e.strip())
        unknown = [e for e in effects if e not in AUGMENT_EFFECTS]
        if not effects or unknown:
            raise ValueError(f"augment {entry!r}: effects are {', '.join(AUGMENT_EFFECTS)} joined with '+'")
        variants.append(tuple(sorted(set(effects), key=AUGMENT_EFFECTS.index)))
    return variants


def _biquad_high_shelf(f0_hz: float, gain_db: float, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
    """RBJ cookbook high shelf, shelf slope 1: ``(b, a)``."""
    amp = 10.0 ** (gain_db / 40.0)
    w0 = 2.0 * np.pi * f0_hz / sample_rate
    alpha = np.sin(w0) / 2.0 * np.sqrt(2.0)
    cos = np.cos(w0)
    sq = 2.0 * np.sqrt(amp) * alpha
    b = np.array([amp * ((amp + 1) + (amp - 1) * cos + sq), -2 * amp * ((amp - 1) + (amp + 1) * cos),
                  amp * ((amp + 1) + (amp - 1) * cos - sq)])
    a = np.array([(amp + 1) - (amp - 1) * cos + sq, 2 * ((amp - 1) - (amp + 1) * cos),
                  (amp + 1) - (amp - 1) * cos - sq])
    return b / a[0], a / a[0]


def spectral_tilt(audio, sample_rate: int, *, shelf_hz: float, shelf_db: float, lowpass_hz: float) -> np.ndarray:
    """High shelf (``shelf_db`` above ``shelf_hz``, a cut when negative) then a one-pole low-pass at ``lowpass_hz``."""
    from scipy.signal import lfilter

    b, a = _biquad_high_shelf(shelf_hz, shelf_db, sample_rate)
    out = lfilter(b, a, np.asarray(audio, np.float64))
    pole = np.exp(-2.0 * np.pi * lowpass_hz / sample_rate)
    return lfilter([1.0 - pole], [1.0, -pole], out).astype(np.float32)


BRIGHTEN_SHELF_HZ = 2500.0
BRIGHTEN_LOWPASS_HZ = 14000.0


def brighten(audio, sample_rate: int, shelf_db: float) -> np.ndarray:
    """A fixed colour correction: high shelf of ``shelf_db`` above 2.5 kHz, one-pole low-pass at 14 kHz.

    Why: General-MIDI soundfont violins (FluidR3, MuseScore General, TimGM6mb) carry 5 dB less
    energy at 2–4 kHz and 10 dB less at 4–8 kHz, relative to their lows, than real violins. With
    +12 dB, FluidR3's G4 matches a real violin recording (LMMS's ``violin_fingered01``, not the
    recordings the Violin is judged on) within 2 dB in each octave band from 1 to 16 kHz. The
    peak is kept at or below the input's (scaled down if the shelf raised it).
    """
    audio = np.asarray(audio, np.float32)
    if not shelf_db:
        return audio
    out = spectral_tilt(audio, sample_rate, shelf_hz=BRIGHTEN_SHELF_HZ, shelf_db=shelf_db,
                        lowpass_hz=BRIGHTEN_LOWPASS_HZ)
    peak_in, peak_out = float(np.max(np.abs(audio))), float(np.max(np.abs(out)))
    if peak_out > peak_in > 0:
        out *= np.float32(peak_in / peak_out)
    return out


EQ_TAPS = 4095  # linear-phase FIR for :func:`apply_eq` (85 ms at 48 kHz: ~12 Hz resolution)


def parse_eq(spec) -> tuple[tuple[float, float], ...]:
    """``"1500:0,3000:-6,6000:-14"`` (or pairs) → ``((1500.0, 0.0), (3000.0, -6.0), (6000.0, -14.0))``.

    Points are ``Hz:dB``, frequencies strictly increasing and positive, gains within ±40 dB.
    Raises :class:`ValueError` naming the bad point.
    """
    if spec is None or spec == "" or spec == ():
        return ()
    if isinstance(spec, str):
        points = []
        for item in spec.split(","):
            hz_text, sep, db_text = item.strip().partition(":")
            try:
                if not sep:
                    raise ValueError
                points.append((float(hz_text), float(db_text)))
            except ValueError:
                raise ValueError(f"eq: {item.strip()!r} is not HZ:DB (e.g. 2000:-6)") from None
    else:
        points = [(float(hz), float(db)) for hz, db in spec]
    for (hz, db), previous in zip(points, [None, *points[:-1]]):
        if not (math.isfinite(hz) and math.isfinite(db)) or hz <= 0:
            raise ValueError(f"eq: {hz:g}:{db:g} needs a positive frequency and a finite gain")
        if not -40.0 <= db <= 40.0:
            raise ValueError(f"eq: {hz:g}:{db:g} is outside ±40 dB")
        if previous is not None and hz <= previous[0]:
            raise ValueError(f"eq: frequencies must increase ({previous[0]:g} then {hz:g})")
    return tuple(points)


def eq_gain_db(frequencies_hz, points) -> np.ndarray:
    """The EQ curve at ``frequencies_hz``: linear in dB against log-frequency between the points,
    held at the first and last point's gain outside them."""
    f = np.maximum(np.asarray(frequencies_hz, np.float64), 1e-3)
    if not points:
        return np.zeros_like(f)
    hz = np.log([p[0] for p in points])
    db = np.array([p[1] for p in points], np.float64)
    return np.interp(np.log(f), hz, db)


def combine_eq(curves) -> tuple[tuple[float, float], ...]:
    """Several curves (each a :func:`parse_eq` spec) as one: their gains add at every point of
    any of them (in dB, so ``"1000:0,4000:6"`` then ``"1000:0,4000:-10"`` is ``4000:-4``)."""
    parsed = [parse_eq(c) for c in curves if c not in (None, "", ())]
    if len(parsed) <= 1:
        return parsed[0] if parsed else ()
    grid = sorted({hz for points in parsed for hz, _ in points})
    total = sum(eq_gain_db(grid, points) for points in parsed)
    return tuple((float(hz), round(float(db), 3)) for hz, db in zip(grid, total))


def apply_eq(audio, sample_rate: int, points) -> np.ndarray:
    """Filter ``audio`` [S] by the curve ``points`` (:func:`parse_eq`): a zero-phase (delay-
    compensated linear-phase) FIR of :data:`EQ_TAPS` taps designed by frequency sampling.
    The output has the input's length and alignment; no points → the input unchanged."""
    audio = np.asarray(audio, np.float32)
    if not points:
        return audio
    from scipy.signal import firwin2, oaconvolve

    grid = np.linspace(0.0, sample_rate / 2.0, 2049)
    gains = 10.0 ** (eq_gain_db(grid, points) / 20.0)
    taps = firwin2(EQ_TAPS, grid, gains, fs=sample_rate, window=("kaiser", 8.0))
    out = oaconvolve(audio.astype(np.float64), taps)[EQ_TAPS // 2 : EQ_TAPS // 2 + audio.shape[0]]
    return out.astype(np.float32)


def voice(audio, sample_rate: int, brighten_db: float, eq_points) -> np.ndarray:
    """A source's fixed colour correction: :func:`brighten` then :func:`apply_eq`; the peak is
    kept at or below :data:`PEAK_LIMIT`."""
    out = apply_eq(brighten(audio, sample_rate, brighten_db), sample_rate, eq_points)
    peak = float(np.max(np.abs(out))) if out.size else 0.0
    if peak > PEAK_LIMIT:
        out = out * np.float32(PEAK_LIMIT / peak)
    return out


def room_impulse_response(rng: np.random.Generator, sample_rate: int, *, rt60_s: float, drr_db: float,
                          high_decay_ratio: float = 2.0, crossover_hz: float = 2000.0,
                          predelay_s: float = 0.01) -> np.ndarray:
    """A synthetic room response [~1.5·rt60_s·sr]: direct sound 1 at t = 0, early reflections,
    then exponentially decaying noise whose highs (above ``crossover_hz``) decay
    ``high_decay_ratio`` times faster; reverberant energy = direct energy / 10^(drr_db/10)."""
    n = int(1.5 * rt60_s * sample_rate) + 1
    t = np.arange(n) / sample_rate
    noise = rng.standard_normal(n)
    spectrum = np.fft.rfft(noise)
    freqs = np.fft.rfftfreq(n, 1.0 / sample_rate)
    high = 1.0 / (1.0 + (crossover_hz / np.maximum(freqs, 1.0)) ** 2)  # smooth split
    low_part = np.fft.irfft(spectrum * (1.0 - high), n)
    high_part = np.fft.irfft(spectrum * high, n)
    tail = low_part * np.exp(-6.91 * t / rt60_s) + high_part * np.exp(-6.91 * t * high_decay_ratio / rt60_s)
    tail[t < predelay_s] = 0.0
    onset = np.clip((t - predelay_s) / 0.01, 0.0, 1.0)  # 10 ms fade-in of the diffuse tail
    tail *= onset
    for _ in range(int(rng.integers(3, 8))):  # early reflections, 2–40 ms
        delay = int(rng.uniform(0.002, 0.04) * sample_rate)
        if delay < n:
            tail[delay] += rng.uniform(-0.6, 0.6)
    tail *= np.sqrt(10.0 ** (-drr_db / 10.0) / max(np.sum(tail**2), 1e-12))
    tail[0] += 1.0
    return tail.astype(np.float32)


def augment_audio(audio, sample_rate: int, effects: Sequence[str], rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """Apply ``effects`` (in :data:`AUGMENT_EFFECTS` order) with random parameters: ``(audio, params)``."""
    from scipy.signal import oaconvolve

    out = np.asarray(audio, np.float32)
    params: dict = {}
    if "tilt" in effects:
        params["tilt"] = {"shelf_hz": float(rng.uniform(1500, 4000)), "shelf_db": float(rng.uniform(-6, 6)),
                          "lowpass_hz": float(rng.uniform(10000, 20000))}
        out = spectral_tilt(out, sample_rate, **params["tilt"])
    if "room" in effects:
        room = {"rt60_s": float(rng.uniform(0.25, 1.5)), "drr_db": float(rng.uniform(-6, 8)),
                "high_decay_ratio": float(rng.uniform(1.4, 2.5)), "predelay_s": float(rng.uniform(0.003, 0.02))}
        params["room"] = room
        ir = room_impulse_response(rng, sample_rate, **room)
        wet = oaconvolve(out, ir)[: out.shape[0]]
        # keep the level: match the dry RMS
        wet *= np.sqrt(np.mean(out.astype(np.float64) ** 2) / max(np.mean(wet.astype(np.float64) ** 2), 1e-20))
        out = wet.astype(np.float32)
    if "gain" in effects:
        params["gain_db"] = float(rng.uniform(-15, 3))
        out = out * np.float32(10.0 ** (params["gain_db"] / 20.0))
    peak = float(np.max(np.abs(out))) if out.size else 0.0
    if peak > PEAK_LIMIT:
        params["peak_limit_db"] = float(20 * np.log10(PEAK_LIMIT / peak))
        out = out * np.float32(PEAK_LIMIT / peak)
    return out.astype(np.float32), params


# --------------------------------------------------------------------------------------------
# Clips


def _safe_name(relative: str) -> str:
    stem = relative.rsplit(".", 1)[0].replace("/", "__")
    return re.sub(r"[^A-Za-z0-9._-]+", "_", stem)[:80]


def _clip_bounds(n_frames: int, clip_frames: int, min_frames: int) -> list[tuple[int, int]]:
    bounds = [(start, min(start + clip_frames, n_frames)) for start in range(0, n_frames, clip_frames)]
    return [(a, b) for a, b in bounds if b - a >= min_frames]


def write_clip(path, audio, features: feat.Features, sample_rate: int, frame_rate_hz: float) -> None:
    """One ``.npz`` clip (``ddsp_device.train.data``'s keys plus ``f0_confidence``)."""
    np.savez(
        path,
        audio=np.asarray(audio, np.float32),
        f0_hz=np.asarray(features.f0_hz, np.float32),
        loudness=np.asarray(features.loudness, np.float32),
        f0_confidence=np.asarray(features.f0_confidence, np.float32),
        sample_rate=np.int64(sample_rate),
        frame_rate_hz=np.float64(frame_rate_hz),
    )


def _slice(features: feat.Features, a: int, b: int) -> feat.Features:
    return feat.Features(features.f0_hz[a:b], features.f0_confidence[a:b], features.loudness_db[a:b],
                         features.loudness[a:b])


def _write_clips(out_dir: Path, prefix: str, audio, features: feat.Features, hop: int, clip_frames: int,
                 min_frames: int, sample_rate: int, frame_rate_hz: float) -> tuple[int, int]:
    """Cut and write; returns ``(clips, frames)`` written. All-silent clips are skipped."""
    clips = frames = 0
    for k, (a, b) in enumerate(_clip_bounds(features.f0_hz.shape[0], clip_frames, min_frames)):
        part = _slice(features, a, b)
        if not np.any(part.loudness > 0):
            continue
        write_clip(out_dir / f"{prefix}-{k:03d}.npz", audio[a * hop : b * hop], part, sample_rate, frame_rate_hz)
        clips += 1
        frames += b - a
    return clips, frames


def analyse(audio, sample_rate: int, hop: int, *, f0_min_hz: float, f0_max_hz: float,
            pitch: Optional[tuple[np.ndarray, np.ndarray]] = None) -> feat.Features:
    """Features of a whole file; :class:`RefusedFile` when it is silent or has no pitch.

    ``pitch``: ``(f0_hz, confidence)`` already tracked on the untouched recording (what
    :func:`prepare` passes, so that EQ, brightening and augmentation never move the pitch labels:
    a brightened violin drew octave-up errors from the tracker); else tracked here."""
    level_db = feat.loudness_db(audio, sample_rate, hop)
    if level_db.size == 0 or float(level_db.max()) < SILENCE_DB:
        peak = float(np.max(np.abs(audio))) if audio.size else 0.0
        peak_text = f"{20 * np.log10(peak):.0f} dBFS" if peak > 0 else "digital silence"
        raise RefusedFile(f"silent (loudest frame below {SILENCE_DB:.0f} dB A-weighted; peak {peak_text})")
    if pitch is None:
        pitch = feat.track_f0(audio, sample_rate, hop, f0_min_hz=f0_min_hz, f0_max_hz=f0_max_hz)
    f0_hz, confidence = (np.asarray(p, np.float32)[: level_db.shape[0]] for p in pitch)
    if not np.any(confidence > 0):
        raise RefusedFile(f"no pitch found between {f0_min_hz:g} and {f0_max_hz:g} Hz")
    return feat.Features(f0_hz, confidence, level_db, feat.normalise_loudness(level_db))


def split_files(names: Sequence[str], seconds: Sequence[float], validation_fraction: float, seed: int) -> list[str]:
    """``"train"`` or ``"validation"`` per file: files in a seeded order go to validation until it
    holds ``validation_fraction`` of the audio (at least one file when there are two or more and
    the fraction is > 0; never all)."""
    n = len(names)
    splits = ["train"] * n
    if n < 2 or validation_fraction <= 0:
        return splits
    order = np.random.default_rng(seed).permutation(n)
    total = float(sum(seconds))
    taken = 0.0
    for count, i in enumerate(order):
        if count == n - 1 or (count > 0 and taken >= validation_fraction * total):
            break
        splits[i] = "validation"
        taken += seconds[i]
    return splits


def _read_sources(audio_dir: Path) -> dict:
    path = audio_dir / SOURCES_FILE
    if not path.is_file():
        return {}
    try:
        sources = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        log.warning("%s: ignored: %s", path, err)
        return {}
    return sources if isinstance(sources, dict) else {}


def _check_settings(frame_rate_hz, sample_rate, validation_fraction, clip_s, f0_min_hz, f0_max_hz, normalise_db,
                    augment):
    problems = []
    hop_float = sample_rate / frame_rate_hz if frame_rate_hz > 0 else 0.0
    if frame_rate_hz <= 0 or abs(hop_float - round(hop_float)) > 1e-6:
        problems.append(f"frame_rate_hz: {sample_rate} / {frame_rate_hz} is not a whole hop"
                        " (375.0 gives 128, 250.0 gives 192)")
    if not 0.0 <= validation_fraction < 1.0:
        problems.append(f"validation_fraction: {validation_fraction} is not in [0, 1)")
    if not clip_s > 0:
        problems.append(f"clip_s: {clip_s} must be > 0")
    if not 0 < f0_min_hz < f0_max_hz < sample_rate / 2:
        problems.append(f"f0_min_hz, f0_max_hz: need 0 < {f0_min_hz} < {f0_max_hz} < {sample_rate / 2}")
    if normalise_db is not None and not -80.0 < normalise_db <= 0.0:
        problems.append(f"normalise_db: {normalise_db} is not in (-80, 0] dB")
    variants = []
    try:
        variants = parse_augment(augment)
    except ValueError as err:
        problems.append(str(err))
    if problems:
        raise PrepareError("; ".join(problems))
    return int(round(hop_float)), variants


def _prepare_output(out: Path, overwrite: bool) -> None:
    existing = [name for name in (*SPLITS, DATASET_FILE) if (out / name).exists()]
    if existing and not overwrite:
        raise PrepareError(f"{out}: already holds a dataset ({', '.join(existing)}); pass overwrite=True (--overwrite)")
    for split in SPLITS:
        if (out / split).is_dir():
            shutil.rmtree(out / split)
    (out / DATASET_FILE).unlink(missing_ok=True)
    for split in SPLITS:
        (out / split).mkdir(parents=True, exist_ok=True)


def prepare(audio_dir, out_dataset, *, frame_rate_hz: float = 375.0, validation_fraction: float = 0.1,
            clip_s: float = 4.0, seed: int = 0, sample_rate: int = SAMPLE_RATE_HZ,
            f0_min_hz: float = feat.F0_MIN_HZ, f0_max_hz: float = feat.F0_MAX_HZ,
            normalise_db: Optional[float] = None, augment: Sequence[str] = (),
            brighten_db: float = 0.0, eq=(), provenance: Optional[str] = None, licence: Optional[str] = None,
            overwrite: bool = False, progress: bool = True) -> PrepareSummary:
    """Turn the recordings in ``audio_dir`` into a dataset at ``out_dataset`` (module docstring).

    Args:
        frame_rate_hz: control frames per second; ``sample_rate / frame_rate_hz`` must be whole.
        validation_fraction: share of the audio (by file) held out for validation.
        clip_s: clip length; a file's last piece is kept when ≥ 1 s (or ``clip_s`` if shorter).
        seed: the split and the augmentation parameters.
        f0_min_hz, f0_max_hz: the pitch tracker's range.
        normalise_db: when set, each file is scaled so that its loud frames (95th percentile of
            the frames above −70 dB) read ``normalise_db`` dB (peak kept ≤ 0.99); else levels are
            kept as recorded.
        augment: extra transformed copies of the training files, e.g. ``("tilt+room", "room")``.
        brighten_db: when not 0, every file (both splits, before analysis and augmentation)
            first goes through :func:`brighten`: a high shelf of this many dB above 2.5 kHz and
            a one-pole low-pass at 14 kHz. For sample libraries duller than real instruments.
        eq: a voicing curve, ``"HZ:DB,…"`` or pairs (:func:`parse_eq`), or a list of such curves
            whose gains add (:func:`combine_eq`), applied zero-phase to
            every file after ``brighten_db`` and before augmentation (the microphone and room
            correction of a source: see models/README.md, "Voicing").

    Pitch is tracked once per file on the recording as it is, before any EQ, brightening or
    augmentation; those only change the audio and its loudness.
        provenance, licence: for ``dataset.json`` and the exported model's metadata.
        overwrite: replace an existing dataset's ``train/``, ``validation/`` and ``dataset.json``.

    Returns:
        A :class:`PrepareSummary`. Raises :class:`PrepareError` for bad settings (all listed),
        a missing or empty ``audio_dir``, an existing dataset, or when every file is refused.
    """
    from tqdm import tqdm

    started = time.monotonic()
    if not -24.0 <= brighten_db <= 24.0:
        raise PrepareError(f"brighten_db: {brighten_db} is not in [-24, 24] dB")
    try:
        eq_points = combine_eq([eq] if isinstance(eq, str) else list(eq or ()))
    except ValueError as err:
        raise PrepareError(str(err)) from None
    hop, variants = _check_settings(frame_rate_hz, sample_rate, validation_fraction, clip_s, f0_min_hz,
                                    f0_max_hz, normalise_db, augment)
    root = Path(audio_dir)
    if not root.is_dir():
        raise PrepareError(f"{root}: not a directory")
    files = find_audio_files(root)
    if not files:
        raise PrepareError(f"{root}: no audio files ({', '.join(AUDIO_EXTENSIONS)})")
    out = Path(out_dataset)
    _prepare_output(out, overwrite)
    staging = out / ".prepare-staging"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)

    clip_frames = max(1, int(round(clip_s * frame_rate_hz)))
    min_frames = min(clip_frames, int(round(MIN_CLIP_S * frame_rate_hz)))
    settings = {"sample_rate": sample_rate, "frame_rate_hz": float(frame_rate_hz), "hop": hop, "clip_s": clip_s,
                "validation_fraction": validation_fraction, "seed": seed, "f0_min_hz": f0_min_hz,
                "f0_max_hz": f0_max_hz, "normalise_db": normalise_db, "augment": ["+".join(v) for v in variants],
                "brighten_db": brighten_db, "eq": [list(p) for p in eq_points],
                "f0_tracked_on": "the recordings as they are (before EQ, brightening and augmentation)"}
    log.info("preparing %d files from %s into %s (%d Hz, %.1f frames/s, %.1f s clips)",
             len(files), root, out, sample_rate, frame_rate_hz, clip_s)

    used: list[dict] = []
    refused: list[tuple[str, str]] = []
    bar = tqdm(files, desc="prepare", unit="file", disable=not progress or None)
    for index, path in enumerate(bar):
        name = path.relative_to(root).as_posix()
        bar.set_postfix_str(name[-40:], refresh=False)
        try:
            raw, info = read_audio(path, sample_rate)
            pitch = feat.track_f0(raw, sample_rate, hop, f0_min_hz=f0_min_hz, f0_max_hz=f0_max_hz)
            audio = voice(raw, sample_rate, brighten_db, eq_points)
            features = analyse(audio, sample_rate, hop, f0_min_hz=f0_min_hz, f0_max_hz=f0_max_hz, pitch=pitch)
            gain_db = 0.0
            if normalise_db is not None:
                audio, features, gain_db = _normalise(audio, features, normalise_db)
            prefix = f"{index:04d}-{_safe_name(name)}"
            clips, frames = _write_clips(staging, prefix, audio, features, hop, clip_frames, min_frames,
                                         sample_rate, frame_rate_hz)
            if clips == 0:
                raise RefusedFile(f"no clip of at least {min_frames / frame_rate_hz:g} s with sound")
        except RefusedFile as reason:
            for stale in staging.glob(f"{index:04d}-*.npz"):
                stale.unlink()
            refused.append((name, str(reason)))
            log.warning("refused %s: %s", name, reason)
            continue
        used.append({"file": name, "index": index, "prefix": prefix, "sample_rate_in": info["sample_rate_in"],
                     "channels_in": info["channels_in"], "seconds": round(audio.shape[0] / sample_rate, 3),
                     "gain_db": round(gain_db, 2), "clips": clips, "clip_minutes": frames / frame_rate_hz / 60.0,
                     "voiced_fraction": round(float(np.mean(features.f0_confidence > 0)), 3)})
    bar.close()
    if not used:
        shutil.rmtree(staging, ignore_errors=True)
        raise PrepareError(f"{root}: every file was refused ({len(refused)}): "
                           + "; ".join(f"{n}: {r}" for n, r in refused))

    splits = split_files([u["file"] for u in used], [u["seconds"] for u in used], validation_fraction, seed)
    clips = {split: 0 for split in SPLITS}
    minutes = {split: 0.0 for split in SPLITS}
    for entry, split in zip(used, splits):
        entry["split"] = split
        for clip in sorted(staging.glob(f"{entry['prefix']}-*.npz")):
            clip.rename(out / split / clip.name)
        clips[split] += entry["clips"]
        minutes[split] += entry["clip_minutes"]
    shutil.rmtree(staging, ignore_errors=True)

    augmented_clips, augmented_frames = 0, 0
    train_files = [entry for entry in used if entry["split"] == "train"]
    if variants and train_files:
        jobs = [(entry, j, effects) for entry in train_files for j, effects in enumerate(variants)]
        bar = tqdm(jobs, desc="augment", unit="copy", disable=not progress or None)
        cached = (None, None, None)
        for entry, j, effects in bar:
            rng = np.random.default_rng([seed, entry["index"], j, 1])
            if cached[0] is not entry:
                raw, _ = read_audio(root / entry["file"], sample_rate)
                pitch = feat.track_f0(raw, sample_rate, hop, f0_min_hz=f0_min_hz, f0_max_hz=f0_max_hz)
                dry = voice(raw, sample_rate, brighten_db, eq_points)
                cached = (entry, dry * np.float32(10.0 ** (entry["gain_db"] / 20.0)), pitch)
            audio, params = augment_audio(cached[1], sample_rate, effects, rng)
            entry.setdefault("augmented", []).append({"variant": "+".join(effects), **params})
            try:
                features = analyse(audio, sample_rate, hop, f0_min_hz=f0_min_hz, f0_max_hz=f0_max_hz,
                                   pitch=cached[2])
            except RefusedFile as reason:
                log.warning("%s, augmented %s: skipped: %s", entry["file"], "+".join(effects), reason)
                continue
            prefix = f"{entry['prefix']}-aug{j}-{'+'.join(effects)}"
            n, frames = _write_clips(out / "train", prefix, audio, features, hop, clip_frames, min_frames,
                                     sample_rate, frame_rate_hz)
            augmented_clips += n
            augmented_frames += frames
        bar.close()
    clips["train"] += augmented_clips
    augmented_minutes = augmented_frames / frame_rate_hz / 60.0
    minutes["train"] += augmented_minutes

    origin = _read_sources(root)
    n_files = len(used)
    summary = PrepareSummary(
        out_dataset=str(out), files_used=n_files, files_refused=refused, clips=clips,
        minutes={k: round(v, 3) for k, v in minutes.items()}, augmented_clips=augmented_clips,
        augmented_minutes=round(augmented_minutes, 3), source_minutes=round(sum(u["seconds"] for u in used) / 60.0, 3),
    )
    info = {
        "format": "ddsp-device dataset 1",
        "created_at": datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
        "provenance": (provenance or origin.get("provenance")
                       or f"{n_files} recordings from {root.name}/ (provenance not given)")
        + (f" Brightened by a {brighten_db:+g} dB shelf above {BRIGHTEN_SHELF_HZ:g} Hz." if brighten_db else "")
        + (f" Voiced with the EQ {', '.join(f'{hz:g} Hz {db:+g} dB' for hz, db in eq_points)}." if eq_points else ""),
        "licence": licence or origin.get("licence") or "unknown",
        "sample_rate": sample_rate,
        "frame_rate_hz": float(frame_rate_hz),
        "hop": hop,
        "features": {
            "loudness": "A-weighted STFT power (periodic Hann, n_fft 1024) averaged over bins, dB re a "
                        "full-scale 1 kHz sine; loudness = clip(dB / 80 + 1, 0, 1)",
            "f0": f"{feat.praat_version()}, autocorrelation (To Pitch (ac)), octave cost "
                  f"{feat.PRAAT_OCTAVE_COST}; unvoiced frames interpolated in log f0; f0_confidence = "
                  "strength of the chosen candidate, 0 when unvoiced",
        },
        "settings": settings,
        "summary": {k: v for k, v in asdict(summary).items() if k not in ("out_dataset", "files_refused", "wall_s")},
        "sources": [{k: v for k, v in u.items() if k not in ("index", "prefix", "clip_minutes")} for u in used],
        "refused": [{"file": n, "reason": r} for n, r in refused],
    }
    if origin:
        info["origin"] = {k: v for k, v in origin.items() if k != "phrases"}
    (out / DATASET_FILE).write_text(json.dumps(info, indent=1) + "\n", encoding="utf-8")
    summary.wall_s = time.monotonic() - started
    for line in summary.lines():
        log.info("%s", line)
    return summary


def _normalise(audio, features: feat.Features, target_db: float):
    """Scale so the loud frames read ``target_db``; features shift with the gain (loudness is
    linear in power), f0 is unchanged."""
    loud = features.loudness_db[features.loudness_db > -70.0]
    if loud.size == 0:
        return audio, features, 0.0
    gain_db = target_db - float(np.percentile(loud, 95))
    peak = float(np.max(np.abs(audio)))
    if peak > 0:
        gain_db = min(gain_db, 20.0 * np.log10(PEAK_LIMIT / peak))
    level_db = (features.loudness_db + gain_db).astype(np.float32)
    scaled = feat.Features(features.f0_hz, features.f0_confidence, level_db, feat.normalise_loudness(level_db))
    return (audio * np.float32(10.0 ** (gain_db / 20.0))).astype(np.float32), scaled, gain_db
