"""AlsaSink faults (underrun, vanished device) against a scripted stand-in for ``alsaaudio``,
and the no-copy write path through the real libasound with a `file` PCM."""

import ctypes
import ctypes.util
import sys
import tracemalloc
import types

import numpy as np
import pytest

from ddsp_device.audio.sinks import UNDERRUN, WRITTEN, AudioDeviceLost
from ddsp_device.errors import AudioError

EPIPE = 32


class FakeALSAAudioError(Exception):
    pass


class FakePCM:
    """Scripted like pyalsaaudio 0.11: ``script`` maps write-call index → return value or exception."""

    script: dict = {}

    def __init__(self, type, mode, rate, channels, format, periodsize, periods, device):
        self.channels = channels
        self.period_size = periodsize
        self.periods = periods
        self.writes = []  # (n_frames, first sample) per write call
        self.calls = []
        self.closed = False

    def info(self):
        return {"rate": 48000, "period_size": self.period_size, "periods": self.periods}

    def write(self, data):
        view = np.asarray(memoryview(data)).reshape(-1)
        index = len(self.writes)
        self.writes.append(view.copy())
        action = self.script.get(index)
        if isinstance(action, Exception):
            raise action
        if action is not None:
            return action
        return len(view) // self.channels

    def drain(self):
        self.calls.append("drain")
        if self.closed_device:
            raise FakeALSAAudioError("No such device [fake]")

    def drop(self):
        self.calls.append("drop")

    def close(self):
        self.calls.append("close")
        self.closed = True

    closed_device = False


@pytest.fixture
def fake_alsa(monkeypatch):
    module = types.SimpleNamespace(
        PCM=FakePCM, PCM_PLAYBACK=0, PCM_NORMAL=0, PCM_FORMAT_S16_LE=2, ALSAAudioError=FakeALSAAudioError
    )
    monkeypatch.setitem(sys.modules, "alsaaudio", module)
    FakePCM.script = {}
    return FakePCM


def sink(channels=1):
    from ddsp_device.audio.alsa import AlsaSink

    return AlsaSink("hw:CARD=fake,DEV=0", 48000, 128, 2, channels=channels)


def block(value=0.5):
    return np.full(128, value, np.float32)


def test_epipe_is_counted_prefilled_and_the_block_requeued(fake_alsa):
    fake_alsa.script = {1: -EPIPE}
    s = sink()
    assert s.write(block(0.1)) == WRITTEN
    assert s.write(block(0.2)) == UNDERRUN
    assert s.write(block(0.3)) == WRITTEN
    assert s.underruns == 1
    lengths = [len(w) for w in s._pcm.writes]
    # 0.1, 0.2 (refused: -EPIPE), prefill 2 × 128 frames of silence, 0.2 again, 0.3
    assert lengths == [128, 128, 256, 128, 128]
    assert not s._pcm.writes[2].any()
    assert s._pcm.writes[3][0] == round(0.2 * 32767)


def test_broken_pipe_exception_is_an_underrun_too(fake_alsa):
    fake_alsa.script = {0: FakeALSAAudioError("Broken pipe [hw:CARD=fake,DEV=0]"), 1: -EPIPE}
    s = sink()
    assert s.write(block()) == UNDERRUN
    assert s.underruns == 1
    # refused block, first prefill (-EPIPE: now prepared), second prefill, the block
    assert [len(w) for w in s._pcm.writes] == [128, 256, 256, 128]


@pytest.mark.parametrize(
    "message",
    ["No such device [hw:CARD=fake,DEV=0]", "File descriptor in bad state [x]", "Input/output error [x]"],
)
def test_vanished_device_raises_audio_device_lost(fake_alsa, message):
    fake_alsa.script = {1: FakeALSAAudioError(message)}
    s = sink()
    s.write(block())
    with pytest.raises(AudioDeviceLost, match=message.split(" [")[0]) as info:
        s.write(block())
    assert isinstance(info.value, AudioError) and "hw:CARD=fake,DEV=0" in str(info.value)
    pcm = s._pcm
    pcm.closed_device = True
    s.close(drain=False)
    assert pcm.calls == ["drop", "close"]
    s.close()  # twice is harmless
    with pytest.raises(AudioError, match="after close"):
        s.write(block())


def test_close_drains_and_survives_a_failing_drain(fake_alsa):
    s = sink()
    pcm = s._pcm
    pcm.closed_device = True
    s.close()
    assert pcm.calls == ["drain", "close"]


def test_short_write_sends_the_rest(fake_alsa):
    fake_alsa.script = {0: 100}
    s = sink()
    assert s.write(block()) == WRITTEN
    assert [len(w) for w in s._pcm.writes] == [128, 28]


def test_stereo_duplicates_mono_and_prefill_fills_the_buffer(fake_alsa):
    s = sink(channels=2)
    s.prefill()
    x = np.linspace(-0.5, 0.5, 128, dtype=np.float32)
    s.write(x)
    pre, frames = s._pcm.writes
    assert len(pre) == 2 * 128 * 2 and not pre.any()
    pcm = np.rint(x * 32767).astype(np.int16)
    np.testing.assert_array_equal(frames.reshape(-1, 2), np.stack([pcm, pcm], axis=1))


def test_write_allocates_nothing_per_period(fake_alsa):
    s = sink(channels=2)
    fake_alsa.write = lambda self, data: 128  # the real one copies for the test's records
    x = block()
    for _ in range(10):
        s.write(x)
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        for _ in range(2000):
            s.write(x)
        after, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert after - before < 1024 and peak - before < 4096


# --------------------------------------------------------------------------- real libasound
def _forget_alsa_config():
    """libasound caches its parsed configuration per process, ``~/.asoundrc`` path included:
    free it so that the next open reads the current $HOME's file (and later tests get theirs)."""
    try:
        ctypes.CDLL(ctypes.util.find_library("asound") or "libasound.so.2").snd_config_update_free_global()
    except (OSError, AttributeError):
        pass


@pytest.fixture
def alsa_file_pcm_stereo(tmp_path, monkeypatch):
    raw = tmp_path / "out.raw"
    (tmp_path / ".asoundrc").write_text(
        f'pcm.ddsptest {{\n type file\n slave.pcm "null"\n file "{raw}"\n format "raw"\n}}\n'
    )
    monkeypatch.setenv("HOME", str(tmp_path))
    _forget_alsa_config()
    yield raw
    _forget_alsa_config()


def test_libasound_takes_the_int16_buffer_without_a_bytes_copy(alsa_file_pcm_stereo):
    pytest.importorskip("alsaaudio")
    from ddsp_device.audio.alsa import AlsaSink

    x = (0.5 * np.sin(np.arange(1280) / 9)).astype(np.float32)
    s = AlsaSink("ddsptest", 48000, 128, 2, channels=2)
    s.prefill()
    for i in range(0, len(x), 128):
        assert s.write(x[i : i + 128]) == WRITTEN
    s.close()
    got = np.fromfile(alsa_file_pcm_stereo, dtype="<i2").reshape(-1, 2)
    pcm = np.rint(x * 32767).astype(np.int16)
    assert len(got) == 2 * 128 + len(x)
    assert not got[: 2 * 128].any()
    np.testing.assert_array_equal(got[2 * 128 :], np.stack([pcm, pcm], axis=1))
