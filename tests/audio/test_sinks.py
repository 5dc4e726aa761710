"""Sinks: WAV, and ALSA through the real libasound with a `file` PCM (no sound card needed)."""

import numpy as np
import pytest

from ddsp_device.audio.sinks import MemorySink, NullSink, WavSink, float_to_int16, read_wav
from ddsp_device.errors import AudioError


def test_float_to_int16_clips_and_rounds():
    x = np.array([0.0, 0.5, -0.5, 1.0, -1.0, 2.0, -3.0, 1e-6], np.float32)
    out = float_to_int16(x, np.empty(16, np.float32), np.empty(16, np.int16))
    assert out.tolist() == [0, 16384, -16384, 32767, -32767, 32767, -32767, 0]


def test_wav_round_trip(tmp_path):
    x = (0.5 * np.sin(np.arange(4800) / 7)).astype(np.float32)
    with WavSink(tmp_path / "a.wav", 48000, max_block=256) as sink:
        for i in range(0, len(x), 256):
            sink.write(x[i : i + 256])
    y, rate = read_wav(tmp_path / "a.wav")
    assert rate == 48000 and len(y) == len(x)
    assert np.max(np.abs(y - x)) < 1 / 32767


def test_wav_unwritable_path_is_an_audio_error(tmp_path):
    with pytest.raises(AudioError, match="cannot write"):
        WavSink(tmp_path / "no" / "such" / "dir.wav", 48000)


def test_null_and_memory_sinks():
    x = np.ones(64, np.float32)
    with NullSink() as n, MemorySink() as m:
        n.write(x)
        m.write(x)
        x[:] = 0  # the memory sink copied
    assert n.frames_written == 64 and m.audio().sum() == 64


@pytest.fixture
def alsa_file_pcm(tmp_path, monkeypatch):
    """An ALSA `file` PCM over `null`: real libasound, every byte lands in a file."""
    raw = tmp_path / "out.raw"
    (tmp_path / ".asoundrc").write_text(
        f'pcm.ddsptest {{\n type file\n slave.pcm "null"\n file "{raw}"\n format "raw"\n}}\n'
    )
    monkeypatch.setenv("HOME", str(tmp_path))
    return raw


def test_alsa_sink_writes_through_libasound(alsa_file_pcm):
    pytest.importorskip("alsaaudio")
    from ddsp_device.audio.alsa import AlsaSink

    x = (0.5 * np.sin(np.arange(4800) / 10)).astype(np.float32)
    sink = AlsaSink("ddsptest", 48000, 128, 2)
    assert (sink.sample_rate, sink.period_size, sink.periods) == (48000, 128, 2)
    for i in range(0, len(x), 128):
        sink.write(x[i : i + 128])
    sink.close()
    sink.close()  # twice is harmless
    got = np.fromfile(alsa_file_pcm, dtype="<i2")
    assert np.array_equal(got, np.rint(x * 32767).astype(np.int16))


def test_alsa_sink_unknown_device_names_it(alsa_file_pcm):
    pytest.importorskip("alsaaudio")
    from ddsp_device.audio.alsa import AlsaSink

    with pytest.raises(AudioError, match="ALSA device 'nosuchpcm'"):
        AlsaSink("nosuchpcm", 48000, 128, 2)


def test_sound_cards_parses_proc(tmp_path):
    from ddsp_device.audio.alsa import sound_cards

    p = tmp_path / "cards"
    p.write_text(
        " 0 [sndrpihifiberry]: HifiberryDacp - snd_rpi_hifiberry_dacplus\n"
        "                      snd_rpi_hifiberry_dacplus\n"
        " 1 [Device         ]: USB-Audio - USB Audio Device\n"
    )
    assert sound_cards(str(p)) == ["sndrpihifiberry", "Device"]
    p.write_text("--- no soundcards ---\n")
    assert sound_cards(str(p)) == []
    assert sound_cards(str(tmp_path / "absent")) == []
