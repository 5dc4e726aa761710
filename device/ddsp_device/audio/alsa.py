"""ALSA output through pyalsaaudio. The only module that imports ``alsaaudio``.

The requested period size and count are requests: ALSA may choose others, so the values in
force are read back from ``info()`` and exposed (and logged). See ``../shared/FIELD-NOTES.md``:
open cards by name (``hw:CARD=…,DEV=0``), prefill with silence.

Faults, as pyalsaaudio 0.11 reports them (``alsapcm_write`` in its ``alsaaudio.c``):

* underrun: ``write`` returns ``-EPIPE`` after re-preparing the stream (the block was *not*
  queued). Older releases raise ``ALSAAudioError("Broken pipe …")`` instead. Either way
  :meth:`AlsaSink.write` counts it, prefills the buffer with silence (``periods ×
  period_size`` frames), queues the block again and returns :data:`UNDERRUN`.
* any other error from ``snd_pcm_writei`` is raised as ``ALSAAudioError("<strerror> [<card>]")``
  with no errno attribute: ``No such device`` (USB audio unplugged), ``File descriptor in bad
  state``, ``Input/output error``, ``Streams pipe error`` (suspended). All of them mean the
  stream is unusable; :meth:`AlsaSink.write` raises :class:`AudioDeviceLost` and the caller
  reopens.

pyalsaaudio 0.11 parses ``write``'s argument with ``y*``: any C-contiguous buffer is accepted, so
the int16 array is passed as it is, without a per-period ``bytes`` copy.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ..errors import AudioError
from .sinks import UNDERRUN, WRITTEN, AudioDeviceLost, _SinkBase, float_to_int16

log = logging.getLogger(__name__)


def sound_cards(proc_path: str = "/proc/asound/cards") -> list[str]:
    """Names of the sound cards the kernel knows, [] when there are none (or no ALSA at all)."""
    try:
        text = Path(proc_path).read_text()
    except OSError:
        return []
    cards = []
    for line in text.splitlines():
        parts = line.split("[", 1)
        if len(parts) == 2 and parts[0].strip().isdigit():
            cards.append(parts[1].split("]", 1)[0].strip())
    return cards


class AlsaSink(_SinkBase):
    """Mono float blocks → an ALSA PCM as S16_LE.

    Args:
        device: ALSA PCM name, e.g. ``default`` or ``hw:CARD=sndrpihifiberry,DEV=0``.
        sample_rate: requested rate, Hz.
        period_size: requested frames per period.
        periods: requested number of periods in the buffer.
        channels: 1 or 2 (mono is duplicated for stereo-only cards).

    Attributes (the values in force, read back from ALSA): ``sample_rate``, ``period_size``,
    ``periods``, ``channels``; ``underruns`` counts recovered underruns.
    """

    def __init__(self, device: str, sample_rate: int, period_size: int, periods: int, channels: int = 1):
        try:
            import alsaaudio
        except ImportError as err:
            raise AudioError(
                "ALSA output needs pyalsaaudio (pip install 'ddsp-device[hw]'; it builds against "
                f"libasound2-dev): {err}"
            ) from err
        if channels not in (1, 2):
            raise AudioError(f"ALSA device {device!r}: channels must be 1 or 2, got {channels!r}")
        self._alsa_error = alsaaudio.ALSAAudioError
        self.device = device
        self._pcm = None
        try:
            self._pcm = alsaaudio.PCM(
                type=alsaaudio.PCM_PLAYBACK,
                mode=alsaaudio.PCM_NORMAL,
                rate=int(sample_rate),
                channels=channels,
                format=alsaaudio.PCM_FORMAT_S16_LE,
                periodsize=int(period_size),
                periods=int(periods),
                device=device,
            )
        except alsaaudio.ALSAAudioError as err:
            raise AudioError(f"ALSA device {device!r}: cannot open: {err}") from err
        info = self._pcm.info()
        self.sample_rate = int(info.get("rate", sample_rate))
        self.period_size = int(info.get("period_size", period_size))
        self.periods = int(info.get("periods", periods))
        self.channels = channels
        self.underruns = 0
        max_block = max(self.period_size, 4096)
        self._scratch = np.empty(max_block, np.float32)
        self._pcm16 = np.empty(max_block, np.int16)
        self._frame16 = np.empty((max_block, channels), np.int16)
        # views for the usual block (one period), made once
        n = self.period_size
        self._period_frames = self._frame16[:n]
        self._period_columns = [self._period_frames[:, c] for c in range(channels)]
        self._silence = np.zeros((self.periods * self.period_size, channels), np.int16)
        log.info(
            "ALSA %s: %d Hz, period %d frames x %d (asked %d x %d)",
            device, self.sample_rate, self.period_size, self.periods, period_size, periods,
        )

    @property
    def buffer_ms(self) -> float:
        return 1000.0 * self.period_size * self.periods / self.sample_rate

    def prefill(self) -> None:
        """Fill the buffer with silence (``periods × period_size`` frames), e.g. at start.

        Raises:
            AudioDeviceLost: the device is gone.
        """
        self._write_frames(self._silence)

    def write(self, block: np.ndarray) -> int:
        """Queue one mono float32 block: :data:`WRITTEN`, or :data:`UNDERRUN` (recovered).

        Blocks while the buffer is full (that is the pacing). Allocates no arrays for a block of
        ``period_size`` frames.

        Raises:
            AudioDeviceLost: the device is gone; close this sink and open a new one.
            AudioError: written after :meth:`close`.
        """
        if self._pcm is None:
            raise AudioError(f"ALSA device {self.device!r}: write after close")
        n = block.shape[0]
        pcm = float_to_int16(block, self._scratch, self._pcm16)
        if self.channels == 1:
            frames = pcm
        elif n == self.period_size:
            frames = self._period_frames
            for column in self._period_columns:
                column[:] = pcm
        else:
            frames = self._frame16[:n]
            for c in range(self.channels):
                frames[:, c] = pcm
        if self._write_frames(frames):
            return WRITTEN
        # underrun: the stream is prepared again and empty; ``frames`` was not queued
        self.underruns += 1
        for _ in range(2):  # a second try covers releases that raise before re-preparing
            if self._write_frames(self._silence):
                break
        self._write_frames(frames)
        return UNDERRUN

    def _write_frames(self, frames: np.ndarray) -> bool:
        """Write all of ``frames``; False on an underrun (the rest is dropped)."""
        pcm = self._pcm
        if pcm is None:
            raise AudioError(f"ALSA device {self.device!r}: write after close")
        total = frames.shape[0]
        done = 0
        while True:
            try:
                written = pcm.write(frames if done == 0 else frames[done:])
            except self._alsa_error as err:
                if str(err).startswith("Broken pipe"):
                    return False
                raise AudioDeviceLost(f"ALSA device {self.device!r}: {err}") from err
            if written < 0:  # -EPIPE, re-prepared by pyalsaaudio
                return False
            done += written
            if done >= total or written == 0:  # 0: non-blocking and full (not used here)
                return True

    def close(self, drain: bool = True) -> None:
        """Play out what is queued (``drain``) and close. Twice is harmless.

        ``drain=False`` drops the queued audio, for a device that has gone away.
        """
        pcm, self._pcm = self._pcm, None
        if pcm is None:
            return
        try:
            if drain:
                pcm.drain()
            else:
                pcm.drop()
        except Exception:  # noqa: BLE001 - closing must not fail on a vanished device
            pass
        try:
            pcm.close()
        except Exception:  # noqa: BLE001 - the same
            pass
