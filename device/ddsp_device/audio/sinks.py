"""Audio sinks: where finished periods go. The engine does not know which one it has.

Every sink takes mono float32 blocks in [-1, 1] through ``write(block)`` and is closed with
``close()`` (twice is harmless); all are context managers. :class:`~ddsp_device.audio.alsa.AlsaSink`
(the sound card) lives in its own module because only it imports ``alsaaudio``.
"""

from __future__ import annotations

import wave
from pathlib import Path
from typing import Protocol

import numpy as np

from ..errors import AudioError


class Sink(Protocol):
    sample_rate: int

    def write(self, block: np.ndarray) -> None: ...

    def close(self) -> None: ...


def float_to_int16(block: np.ndarray, scratch: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Convert float32 samples to int16 (clipped, rounded) without allocating.

    Args:
        block: ``[n]`` float32 in [-1, 1].
        scratch: ``[≥ n]`` float32 work space.
        out: ``[≥ n]`` int16 destination.
    Returns:
        ``out[:n]``.
    """
    n = block.shape[0]
    s = scratch[:n]
    np.clip(block, -1.0, 1.0, out=s)
    np.multiply(s, 32767.0, out=s)
    np.rint(s, out=s)
    o = out[:n]
    np.copyto(o, s, casting="unsafe")
    return o


class _SinkBase:
    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class WavSink(_SinkBase):
    """16-bit PCM mono WAV file.

    Args:
        path: file to write (replaced).
        sample_rate: Hz.
        max_block: the largest block that will be written.
    """

    def __init__(self, path: str | Path, sample_rate: int, max_block: int = 4096):
        self.path = Path(path)
        self.sample_rate = int(sample_rate)
        self.frames_written = 0
        try:
            self._file = open(self.path, "wb")
        except OSError as err:
            raise AudioError(f"{self.path}: cannot write: {err.strerror or err}") from err
        self._wav = wave.open(self._file, "wb")
        self._wav.setnchannels(1)
        self._wav.setsampwidth(2)
        self._wav.setframerate(self.sample_rate)
        self._scratch = np.empty(max_block, np.float32)
        self._pcm = np.empty(max_block, np.int16)

    def write(self, block: np.ndarray) -> None:
        if self._wav is None:
            raise AudioError(f"{self.path}: write after close")
        pcm = float_to_int16(block, self._scratch, self._pcm)
        self._wav.writeframesraw(pcm.tobytes())
        self.frames_written += pcm.shape[0]

    def close(self) -> None:
        if self._wav is not None:
            self._wav.close()
            self._wav = None
            self._file.close()


class NullSink(_SinkBase):
    """Discards audio (counts frames): for benchmarks and soak tests."""

    def __init__(self, sample_rate: int = 48000):
        self.sample_rate = sample_rate
        self.frames_written = 0

    def write(self, block: np.ndarray) -> None:
        self.frames_written += block.shape[0]

    def close(self) -> None:
        pass


class MemorySink(_SinkBase):
    """Keeps every block (copies) in memory: for tests."""

    def __init__(self, sample_rate: int = 48000):
        self.sample_rate = sample_rate
        self.blocks: list[np.ndarray] = []

    def write(self, block: np.ndarray) -> None:
        self.blocks.append(np.array(block, np.float32, copy=True))

    def audio(self) -> np.ndarray:
        return np.concatenate(self.blocks) if self.blocks else np.zeros(0, np.float32)

    def close(self) -> None:
        pass


def read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    """Read a 16-bit PCM WAV (mono, or the first channel) as float32. Returns ``(audio, rate)``."""
    with wave.open(str(path), "rb") as w:
        if w.getsampwidth() != 2:
            raise AudioError(f"{path}: only 16-bit PCM WAV is supported, got {8 * w.getsampwidth()}-bit")
        raw = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
        ch = w.getnchannels()
        rate = w.getframerate()
    audio = raw.reshape(-1, ch)[:, 0].astype(np.float32) / 32767.0
    return audio, rate
