"""Audio sinks: where finished periods go. The engine does not know which one it has.

Every sink takes mono float32 blocks in [-1, 1] through ``write(block)`` and is closed with
``close()`` (twice is harmless); all are context managers. :class:`~ddsp_device.audio.alsa.AlsaSink`
(the sound card) lives in its own module because only it imports ``alsaaudio``.

``write`` returns a status instead of raising for the faults a player expects: :data:`WRITTEN`,
or :data:`UNDERRUN` when the device ran dry before this block (recovered: re-prepared,
prefilled with silence, block queued). A device that went away raises :class:`AudioDeviceLost`:
close the sink and open a new one. :class:`FaultySink` simulates both for tests and soaks.
"""

from __future__ import annotations

import os
import struct
import wave
from pathlib import Path
from typing import Protocol

import numpy as np

from ..errors import AudioError

#: :meth:`Sink.write` results.
WRITTEN = 0
UNDERRUN = 1


class AudioDeviceLost(AudioError):
    """The sound device went away (unplugged, ``ENODEV``, ``EIO``, ``EBADFD``): reopen it."""


class Sink(Protocol):
    sample_rate: int

    def write(self, block: np.ndarray) -> int:
        """Queue one block; :data:`WRITTEN` or :data:`UNDERRUN`; :class:`AudioDeviceLost`."""
        ...

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


#: The RIFF header of a 16-bit mono PCM WAV file: 44 bytes, sizes at offsets 4 and 40.
_WAV_HEADER = struct.Struct("<4sI4s4sIHHIIHH4sI")
#: The most sample data a RIFF file can declare (its 32-bit size counts the 36 header bytes after it).
WAV_MAX_DATA_BYTES = 0xFFFFFFFF - 36


def wav_max_seconds(sample_rate: int) -> float:
    """The longest 16-bit mono WAV file at ``sample_rate``, s (the 4 GiB RIFF limit)."""
    return WAV_MAX_DATA_BYTES // 2 / sample_rate


class WavSink(_SinkBase):
    """16-bit PCM mono WAV file whose header is never wrong by more than a moment.

    Two ways to write it:

    * ``atomic=True`` (``render``): the audio goes to a temp file beside ``path``, renamed over
      it by a clean :meth:`close`; leaving the ``with`` block with an exception, or
      ``close(discard=True)``, removes it. ``path`` is the old file or the complete new one.
    * streaming (the daemon's ``--out``): the file is ``path`` itself and the RIFF and data
      sizes in its header are rewritten every ``header_every_s`` of audio (a ``flush`` and one
      44-byte ``pwrite`` from a preallocated buffer, on the writing thread), so a file cut short
      by a crash or SIGKILL reads, in any WAV reader, as the audio up to the last update.

    Args:
        path: file to write (replaced).
        sample_rate: Hz.
        max_block: the largest block that will be written.
        atomic: write under a temp name and rename on close (see above).
        header_every_s: audio seconds between header updates while streaming (not atomic).
    Raises:
        AudioError: the file cannot be created (at construction), written, or would pass the
            4 GiB a WAV file can hold (:func:`wav_max_seconds`).
    """

    def __init__(self, path: str | Path, sample_rate: int, max_block: int = 4096, *,
                 atomic: bool = False, header_every_s: float = 0.5):
        from ..atomicfile import AtomicOutput

        self.path = Path(path)
        self.sample_rate = int(sample_rate)
        self.atomic = bool(atomic)
        self.frames_written = 0
        self._max_frames = WAV_MAX_DATA_BYTES // 2
        self._header_every = None if atomic else max(1, int(header_every_s * self.sample_rate))
        self._frames_at_header = 0
        self._header = bytearray(_WAV_HEADER.size)
        self._output = None
        try:
            if atomic:
                self._output = AtomicOutput(self.path)
                self._file = self._output.file
            else:
                self._file = open(self.path, "wb")
            self._fd = self._file.fileno()
            self._write_header()
            self._file.write(self._header)
        except OSError as err:
            self._abandon()
            raise AudioError(f"{self.path}: cannot write: {err.strerror or err}") from err
        self._scratch = np.empty(max_block, np.float32)
        self._pcm = np.empty(max_block, np.int16)
        self._open = True

    def _write_header(self) -> None:
        data_bytes = 2 * self.frames_written
        _WAV_HEADER.pack_into(
            self._header, 0, b"RIFF", 36 + data_bytes, b"WAVE", b"fmt ", 16, 1, 1,
            self.sample_rate, 2 * self.sample_rate, 2, 16, b"data", data_bytes,
        )

    def _update_header(self) -> None:
        """Make the header declare everything written so far (data first, then the header)."""
        self._file.flush()
        self._write_header()
        os.pwrite(self._fd, self._header, 0)
        self._frames_at_header = self.frames_written

    def write(self, block: np.ndarray) -> int:
        if not self._open:
            raise AudioError(f"{self.path}: write after close")
        n = block.shape[0]
        if self.frames_written + n > self._max_frames:
            raise AudioError(
                f"{self.path}: full: a WAV file holds at most {wav_max_seconds(self.sample_rate):.0f} s "
                f"at {self.sample_rate} Hz"
            )
        pcm = float_to_int16(block, self._scratch, self._pcm)
        try:
            self._file.write(pcm.data)
            self.frames_written += n
            if self._header_every is not None and self.frames_written - self._frames_at_header >= self._header_every:
                self._update_header()
        except OSError as err:
            raise AudioError(f"{self.path}: cannot write: {err.strerror or err}") from err
        return WRITTEN

    def close(self, discard: bool = False) -> None:
        """Finish the file (final header; atomic: rename into place). ``discard``: an atomic
        sink removes its temp file instead (a streaming file is kept, its header made right).
        Twice is harmless."""
        if not getattr(self, "_open", False):
            return
        self._open = False
        if discard and self._output is not None:
            self._abandon()
            return
        try:
            self._update_header()
            if self._output is not None:
                self._output.commit()
            else:
                self._file.close()
        except OSError as err:
            self._abandon()
            raise AudioError(f"{self.path}: cannot write: {err.strerror or err}") from err

    def _abandon(self) -> None:
        if self._output is not None:
            self._output.discard()
        elif getattr(self, "_file", None) is not None:
            try:
                self._file.close()
            except OSError:
                pass

    def __exit__(self, exc_type, *exc) -> None:
        self.close(discard=exc_type is not None)


class NullSink(_SinkBase):
    """Discards audio (counts frames): for benchmarks and soak tests."""

    def __init__(self, sample_rate: int = 48000):
        self.sample_rate = sample_rate
        self.frames_written = 0

    def write(self, block: np.ndarray) -> int:
        self.frames_written += block.shape[0]
        return WRITTEN

    def close(self) -> None:
        pass


class MemorySink(_SinkBase):
    """Keeps every block (copies) in memory: for tests."""

    def __init__(self, sample_rate: int = 48000):
        self.sample_rate = sample_rate
        self.blocks: list[np.ndarray] = []

    def write(self, block: np.ndarray) -> int:
        self.blocks.append(np.array(block, np.float32, copy=True))
        return WRITTEN

    def audio(self) -> np.ndarray:
        return np.concatenate(self.blocks) if self.blocks else np.zeros(0, np.float32)

    def close(self) -> None:
        pass


class FaultySink(_SinkBase):
    """Wraps another sink and injects the faults a sound card has: for tests and soaks.

    Writes are counted from 0. At each index in ``underrun_at`` the write reports
    :data:`UNDERRUN` and, as ALSA's recovery does, first passes ``prefill_frames`` of silence to
    the inner sink (the gap a listener hears), then the block. From index ``lost_at`` on, every
    write raises :class:`AudioDeviceLost`, as an unplugged device does until it is reopened.

    Args:
        inner: the sink that receives the audio; closed with this one.
        underrun_at: write indices that report an underrun.
        lost_at: first write index at which the device is gone, or None.
        prefill_frames: silence written before the block on an underrun.
    """

    def __init__(self, inner, *, underrun_at=(), lost_at: "int | None" = None, prefill_frames: int = 0):
        self.inner = inner
        self.sample_rate = inner.sample_rate
        self.underrun_at = frozenset(int(i) for i in underrun_at)
        self.lost_at = lost_at
        self.writes = 0
        self.underruns = 0
        self.lost = False
        self.closed = False
        self._silence = np.zeros(int(prefill_frames), np.float32)

    def write(self, block: np.ndarray) -> int:
        if self.closed:
            raise AudioError("FaultySink: write after close")
        index = self.writes
        self.writes = index + 1
        if self.lost or (self.lost_at is not None and index >= self.lost_at):
            self.lost = True
            raise AudioDeviceLost("simulated: No such device [FaultySink]")
        if index in self.underrun_at:
            self.underruns += 1
            if self._silence.shape[0]:
                self.inner.write(self._silence)
            self.inner.write(block)
            return UNDERRUN
        return self.inner.write(block)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.inner.close()


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
