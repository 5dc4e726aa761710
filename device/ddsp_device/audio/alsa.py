"""ALSA output through pyalsaaudio. The only module that imports ``alsaaudio``.

The requested period size and count are requests: ALSA may choose others, so the values in
force are read back from ``info()`` and exposed (and logged by the caller). See
``../shared/FIELD-NOTES.md``: open cards by name (``hw:CARD=…,DEV=0``), prefill with silence.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ..errors import AudioError
from .sinks import _SinkBase, float_to_int16

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
    """

    def __init__(self, device: str, sample_rate: int, period_size: int, periods: int, channels: int = 1):
        try:
            import alsaaudio
        except ImportError as err:
            raise AudioError(
                "ALSA output needs pyalsaaudio (pip install 'ddsp-device[hw]'; it builds against "
                f"libasound2-dev): {err}"
            ) from err
        self._alsa = alsaaudio
        self.device = device
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
        log.info(
            "ALSA %s: %d Hz, period %d frames x %d (asked %d x %d)",
            device, self.sample_rate, self.period_size, self.periods, period_size, periods,
        )

    @property
    def buffer_ms(self) -> float:
        return 1000.0 * self.period_size * self.periods / self.sample_rate

    def write(self, block: np.ndarray) -> None:
        n = block.shape[0]
        pcm = float_to_int16(block, self._scratch, self._pcm16)
        frames = self._frame16[:n]
        for c in range(self.channels):
            frames[:, c] = pcm
        written = self._pcm.write(frames.tobytes())
        if written < 0:  # -EPIPE: underrun; pyalsaaudio has re-prepared the stream
            self.underruns += 1

    def close(self) -> None:
        pcm, self._pcm = getattr(self, "_pcm", None), None
        if pcm is not None:
            try:
                pcm.drain()
            except Exception:  # noqa: BLE001 - closing must not fail on a vanished device
                pass
            pcm.close()
