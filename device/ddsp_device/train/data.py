"""The training dataset on disk, and random crops of it for training.

A dataset is a directory (what ``ddsp-device train prepare`` writes)::

    DATASET/
      dataset.json          optional: {"provenance": str, "licence": str, ...} (copied into the
                            exported model's metadata)
      train/*.npz           one clip per file
      validation/*.npz      the same, held out

Each ``.npz`` holds:

=================  ==============  ============================================================
key                dtype, shape    meaning
=================  ==============  ============================================================
``audio``          float32 [S]     mono audio at ``sample_rate``, −1..1
``f0_hz``          float32 [F]     fundamental per frame, Hz (> 0; unvoiced frames carry the
                                   nearest voiced value or the tracker's guess, not 0)
``loudness``       float32 [F]     0..1, ``= loudness_db / 80 + 1`` (A-weighted), 0 = silence
``sample_rate``    int scalar      Hz (48000)
``frame_rate_hz``  float scalar    frames per second (375.0: hop 128 at 48 kHz)
=================  ==============  ============================================================

Frame ``n`` describes the audio at sample ``n · H`` (``H = sample_rate / frame_rate_hz``, an
integer); ``S ≥ F · H`` (extra samples are ignored). This is the synthesiser's grid: frame ``n``
drives segment ``n``, the samples ``n·H … n·H + H − 1``.

Numpy only; :func:`tf_dataset` imports TensorFlow when called.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ddsp_device.errors import DdspDeviceError

log = logging.getLogger(__name__)

SPLITS = ("train", "validation")
CLIP_KEYS = ("audio", "f0_hz", "loudness", "sample_rate", "frame_rate_hz")


class DatasetError(DdspDeviceError, ValueError):
    """A dataset directory or clip is not as :mod:`ddsp_device.train.data` describes."""


@dataclass
class Clip:
    """One clip: ``audio`` [F · hop] float32, ``f0_hz`` / ``loudness`` [F] float32."""

    path: str
    audio: np.ndarray
    f0_hz: np.ndarray
    loudness: np.ndarray
    sample_rate: int
    frame_rate_hz: float

    @property
    def hop(self) -> int:
        return int(round(self.sample_rate / self.frame_rate_hz))

    @property
    def n_frames(self) -> int:
        return int(self.f0_hz.shape[0])


def save_clip(path, audio, f0_hz, loudness, sample_rate: int, frame_rate_hz: float) -> None:
    """Write one clip in the format above (for ``prepare`` and tests)."""
    np.savez(
        path,
        audio=np.asarray(audio, np.float32),
        f0_hz=np.asarray(f0_hz, np.float32),
        loudness=np.asarray(loudness, np.float32),
        sample_rate=np.int64(sample_rate),
        frame_rate_hz=np.float64(frame_rate_hz),
    )


def load_clip(path) -> Clip:
    """Read and check one ``.npz`` clip; :class:`DatasetError` names the file and the problem."""
    path = str(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [key for key in CLIP_KEYS if key not in data.files]
            if missing:
                raise DatasetError(f"{path}: missing {', '.join(missing)}")
            arrays = {key: data[key] for key in CLIP_KEYS}
    except (OSError, ValueError) as err:
        if isinstance(err, DatasetError):
            raise
        raise DatasetError(f"{path}: cannot read clip: {err}") from err
    sample_rate = int(arrays["sample_rate"])
    frame_rate_hz = float(arrays["frame_rate_hz"])
    hop_float = sample_rate / frame_rate_hz if frame_rate_hz > 0 else 0.0
    hop = int(round(hop_float))
    f0_hz = np.asarray(arrays["f0_hz"], np.float32).reshape(-1)
    loudness = np.asarray(arrays["loudness"], np.float32).reshape(-1)
    audio = np.asarray(arrays["audio"], np.float32).reshape(-1)
    problems = []
    if hop < 1 or abs(hop_float - hop) > 1e-6:
        problems.append(f"sample_rate / frame_rate_hz = {sample_rate} / {frame_rate_hz} is not a whole hop")
    if f0_hz.shape != loudness.shape:
        problems.append(f"f0_hz has {f0_hz.shape[0]} frames, loudness {loudness.shape[0]}")
    elif hop >= 1 and audio.shape[0] < f0_hz.shape[0] * hop:
        problems.append(f"audio has {audio.shape[0]} samples, {f0_hz.shape[0]} frames need {f0_hz.shape[0] * hop}")
    for key, values in (("audio", audio), ("f0_hz", f0_hz), ("loudness", loudness)):
        if not np.all(np.isfinite(values)):
            problems.append(f"{key} holds NaN or infinite values")
    if problems:
        raise DatasetError(f"{path}: " + "; ".join(problems))
    n_frames = f0_hz.shape[0]
    return Clip(path, audio[: n_frames * hop], f0_hz, loudness, sample_rate, frame_rate_hz)


def load_split(dataset_dir, split: str) -> list[Clip]:
    """All clips of ``DATASET/<split>/*.npz``, sorted by name; all at one rate."""
    directory = Path(dataset_dir) / split
    paths = sorted(directory.glob("*.npz"))
    if not paths:
        raise DatasetError(f"{directory}: no .npz clips")
    clips = [load_clip(path) for path in paths]
    rates = {(clip.sample_rate, clip.frame_rate_hz) for clip in clips}
    if len(rates) > 1:
        raise DatasetError(f"{directory}: clips at different rates {sorted(rates)}")
    return clips


def read_dataset_info(dataset_dir) -> dict:
    """``DATASET/dataset.json`` (provenance, licence …) or ``{}``."""
    path = Path(dataset_dir) / "dataset.json"
    if not path.exists():
        return {}
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise DatasetError(f"{path}: {err}") from err
    if not isinstance(info, dict):
        raise DatasetError(f"{path}: must hold a JSON object")
    return info


def f0_range(clips: list[Clip], margin: float = 0.05) -> tuple[float, float]:
    """Pitch range of the voiced (loudness > 0) frames, widened by ``margin`` (fraction) each way."""
    f0 = np.concatenate([clip.f0_hz[(clip.loudness > 0) & (clip.f0_hz > 0)] for clip in clips])
    if f0.size == 0:
        raise DatasetError("no voiced frames (loudness > 0 and f0_hz > 0) in the training clips")
    return float(f0.min()) * (1.0 - margin), float(f0.max()) * (1.0 + margin)


class Crops:
    """Random fixed-length crops of clips: ``(audio [n·H], f0_hz [n], loudness [n])``.

    Args:
        clips: from :func:`load_split`.
        example_frames: frames per crop (clips shorter than that are skipped).
        seed: for the crop positions.
    """

    def __init__(self, clips: list[Clip], example_frames: int, seed: int = 0):
        self.clips = [clip for clip in clips if clip.n_frames >= example_frames]
        if not self.clips:
            longest = max((clip.n_frames for clip in clips), default=0)
            raise DatasetError(f"no clip has {example_frames} frames (the longest has {longest})")
        self.example_frames = example_frames
        self.hop = self.clips[0].hop
        weights = np.array([clip.n_frames - example_frames + 1 for clip in self.clips], np.float64)
        self.weights = weights / weights.sum()  # every start position equally likely
        self.rng = np.random.default_rng(seed)

    def crop(self, clip: Clip, start: int):
        n, hop = self.example_frames, self.hop
        return (
            clip.audio[start * hop : (start + n) * hop],
            clip.f0_hz[start : start + n],
            clip.loudness[start : start + n],
        )

    def random(self):
        clip = self.clips[self.rng.choice(len(self.clips), p=self.weights)]
        start = int(self.rng.integers(0, clip.n_frames - self.example_frames + 1))
        return self.crop(clip, start)

    def fixed(self, limit: int | None = None):
        """Consecutive non-overlapping crops of every clip, in order (validation), as arrays."""
        audio, f0, loudness = [], [], []
        for clip in self.clips:
            for start in range(0, clip.n_frames - self.example_frames + 1, self.example_frames):
                a, f, l = self.crop(clip, start)
                audio.append(a), f0.append(f), loudness.append(l)
        if limit is not None:
            audio, f0, loudness = audio[:limit], f0[:limit], loudness[:limit]
        return np.stack(audio), np.stack(f0), np.stack(loudness)

    def generator(self):
        while True:
            yield self.random()


class MixedCrops:
    """Crops drawn from several datasets, each chosen with its weight (then as :class:`Crops`).

    Args:
        crops: one :class:`Crops` per dataset (same ``example_frames`` and hop).
        weights: relative shares of the crops (> 0); e.g. ``(1, 1)``: half from each.
        seed: for the choice of dataset.
    """

    def __init__(self, crops: list, weights, seed: int = 0):
        weights = np.asarray(weights, np.float64)
        if len(crops) != weights.shape[0] or not crops or np.any(~np.isfinite(weights)) or np.any(weights <= 0):
            raise DatasetError(f"dataset weights {list(weights)} must be positive, one per dataset")
        if len({(c.example_frames, c.hop) for c in crops}) > 1:
            raise DatasetError("datasets differ in crop length or hop")
        self.crops = list(crops)
        self.weights = weights / weights.sum()
        self.example_frames = crops[0].example_frames
        self.hop = crops[0].hop
        self.rng = np.random.default_rng([seed, 7])

    def random(self):
        return self.crops[self.rng.choice(len(self.crops), p=self.weights)].random()

    def generator(self):
        while True:
            yield self.random()


def parse_weighted(spec: str) -> tuple[str, float]:
    """``"DATASET@0.5"`` → ``("DATASET", 0.5)``; a bare path has weight 1."""
    path, sep, weight = str(spec).rpartition("@")
    if not sep:
        return str(spec), 1.0
    try:
        value = float(weight)
    except ValueError:
        raise DatasetError(f"{spec}: the weight after '@' must be a number") from None
    if not (np.isfinite(value) and value > 0):
        raise DatasetError(f"{spec}: the weight after '@' must be > 0")
    return path, value


def tf_dataset(crops: Crops, batch_size: int):
    """An endless, batched ``tf.data.Dataset`` of ``{"audio", "f0_hz", "loudness"}``."""
    import tensorflow as tf

    n, hop = crops.example_frames, crops.hop
    signature = (
        tf.TensorSpec([n * hop], tf.float32),
        tf.TensorSpec([n], tf.float32),
        tf.TensorSpec([n], tf.float32),
    )
    dataset = tf.data.Dataset.from_generator(crops.generator, output_signature=signature)
    dataset = dataset.map(lambda a, f, l: {"audio": a, "f0_hz": f, "loudness": l})
    return dataset.batch(batch_size, drop_remainder=True).prefetch(2)
