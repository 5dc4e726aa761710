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


def _declared_frames(path) -> int:
    """Frames the file's header declares, read by the wave module as any player would."""
    import wave

    with wave.open(str(path), "rb") as w:
        return w.getnframes()


def test_streaming_wav_header_keeps_up_without_close(tmp_path):
    """A WAV the process never closes (SIGKILL, power cut) still says how much audio it holds."""
    path = tmp_path / "live.wav"
    sink = WavSink(path, 48000, max_block=128, header_every_s=0.5)
    block = np.full(128, 0.25, np.float32)
    for _ in range(3 * 48000 // 128):  # 3 s, never closed
        sink.write(block)
    declared = _declared_frames(path)
    on_disk = (path.stat().st_size - 44) // 2
    assert 2.5 * 48000 <= declared <= on_disk <= 3 * 48000
    audio, rate = read_wav(path)
    assert rate == 48000 and len(audio) == declared and np.allclose(audio, 0.25, atol=1e-4)
    sink.close()
    assert _declared_frames(path) == 3 * 48000


def test_atomic_wav_appears_only_when_complete(tmp_path):
    path = tmp_path / "take.wav"
    path.write_bytes(b"old take")
    sink = WavSink(path, 48000, max_block=64, atomic=True)
    sink.write(np.zeros(64, np.float32))
    assert path.read_bytes() == b"old take"  # still being written under a temp name
    sink.close()
    assert _declared_frames(path) == 64 and [p.name for p in tmp_path.iterdir()] == ["take.wav"]

    with pytest.raises(RuntimeError):
        with WavSink(path, 48000, max_block=64, atomic=True) as sink:
            sink.write(np.zeros(64, np.float32))
            raise RuntimeError("render failed")
    assert _declared_frames(path) == 64 and [p.name for p in tmp_path.iterdir()] == ["take.wav"]


def test_wav_refuses_to_pass_the_riff_size_limit(tmp_path):
    from ddsp_device.audio.sinks import wav_max_seconds

    sink = WavSink(tmp_path / "full.wav", 48000, max_block=128)
    sink.frames_written = sink._max_frames - 100  # as after ~12 h
    with pytest.raises(AudioError, match="full: a WAV file holds at most 44739 s"):
        sink.write(np.zeros(128, np.float32))
    assert 12 * 3600 < wav_max_seconds(48000) and 12 * 3600 < wav_max_seconds(44100)
    sink.frames_written = 0
    sink.close()


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
