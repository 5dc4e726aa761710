"""The streaming engine with the real runtime on the real fixture model."""

import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from ddsp_device.engine import Engine, EngineSettings
from ddsp_device.model import load_model
from ddsp_device.performance import demo_phrase

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "models" / "TestFixture.tflite"
SR = 48000

pytestmark = pytest.mark.runtime


def engine(**settings) -> Engine:
    return Engine(load_model(FIXTURE), EngineSettings(**settings))


def peak_hz(x, sr=SR):
    win = np.hanning(len(x))
    spec = np.abs(np.fft.rfft(x * win, n=8 * len(x)))
    i = int(np.argmax(spec[1:-1])) + 1
    a, b, c = np.log(spec[i - 1 : i + 2] + 1e-30)
    return (i + 0.5 * (a - c) / (a - 2 * b + c)) * sr / (8 * len(x))


def test_hop_follows_the_models_frame_rate():
    with engine() as e:
        assert e.model.info.frame_rate_hz == 375.0
        assert e.hop == 128
    with engine(sample_rate=44100) as e:
        assert e.hop == round(44100 / 375.0)


@pytest.mark.parametrize("midi", [55, 62, 69, 76, 83, 90, 97, 100])  # G3 .. E7
def test_spectral_peak_within_one_cent_of_f0(midi):
    """The whole engine (model, noise, reverb, limiter): the strongest partial is f0."""
    f0 = 440.0 * 2 ** ((midi - 69) / 12)
    with engine() as e:
        e.set_f0_hz(f0)
        e.set_loudness(0.8)
        e.render_new(SR // 2)  # settle
        out = e.render_new(SR).astype(np.float64)
    cents = 1200 * np.log2(peak_hz(out) / f0)
    assert abs(cents) < 1.0, f"{cents:.3f} cents off at {f0:.1f} Hz"


def test_loudness_zero_is_below_minus_80_dbfs():
    with engine() as e:
        e.set_f0_hz(440.0)
        e.set_loudness(0.0)
        out = e.render_new(SR)
    assert np.abs(out).max() < 10 ** (-80 / 20)


def test_note_off_reaches_silence_after_the_reverb_tail():
    with engine(reverb_mix=0.15, reverb_decay_s=1.0) as e:
        e.set_f0_hz(440.0)
        e.set_loudness(0.9)
        assert np.abs(e.render_new(SR // 2)).max() > 0.05
        e.set_loudness(0.0)
        tail = e.render_new(3 * SR)
    assert 20 * np.log10(np.abs(tail[-SR // 4 :]).max() + 1e-12) < -80


@pytest.mark.parametrize("reverb_mix", [0.0, 0.3])
def test_period_size_does_not_change_the_audio(reverb_mix):
    """Streaming equals offline: periods of 32, 128 and 1024 give identical samples."""
    rendered = []
    for period in (32, 128, 1024, 4096):
        with engine(reverb_mix=reverb_mix, noise_seed=7) as e:
            frames = demo_phrase().frames(e.hop, SR, tail_s=0.2)
            out = np.empty(frames.n_samples + 4096, np.float32)
            for i in range(0, frames.n_samples, period):
                e.render(out[i : i + period], frames)
            rendered.append(out[: frames.n_samples])
    for other in rendered[1:]:
        assert np.array_equal(rendered[0], other)


def test_period_size_does_not_change_the_audio_with_a_moving_tone():
    """The tone, and its ramps, run on the hop grid: periods of 32, 128, 1024 and 4096 agree."""
    rendered = []
    for period in (32, 128, 1024, 4096):
        with engine(tone=-0.7, noise_seed=3) as e:
            frames = demo_phrase().frames(e.hop, SR, tail_s=0.2)
            out = np.empty(frames.n_samples + 4096, np.float32)
            for i in range(0, frames.n_samples, period):
                if i % 8192 == 0:  # a multiple of every period and of the hop
                    e.tone = (-0.7, 1.0, 0.0, 0.4)[(i // 8192) % 4]
                e.render(out[i : i + period], frames)
            rendered.append(out[: frames.n_samples])
    for other in rendered[1:]:
        assert np.array_equal(rendered[0], other)


def _share_above_db(x, f_hz, sr=SR):
    spec = np.abs(np.fft.rfft(x.astype(np.float64) * np.hanning(len(x)))) ** 2
    freqs = np.fft.rfftfreq(len(x), 1.0 / sr)
    return 10 * np.log10(spec[freqs >= f_hz].sum() / spec.sum())


def test_tone_darkens_and_brightens_the_instrument():
    shares = {}
    for tone in (-1.0, 0.0, 1.0):
        with engine(tone=tone, reverb_mix=0.0) as e:
            e.set_f0_hz(440.0)
            e.set_loudness(0.8)
            e.render_new(SR // 4)
            shares[tone] = _share_above_db(e.render_new(SR // 2), 4000.0)
    assert shares[-1.0] < shares[0.0] - 6.0 and shares[1.0] > shares[0.0] + 3.0, shares


def test_a_nan_tone_plays_flat_and_is_counted():
    with engine(tone=0.0) as flat, engine() as bad:
        for e in (flat, bad):
            e.set_f0_hz(440.0)
            e.set_loudness(0.6)
        bad.tone = float("nan")
        np.testing.assert_array_equal(bad.render_new(2048), flat.render_new(2048))
        assert bad.nonfinite_controls > 0
        bad.tone = 7.0  # out of range: clamped to +1
        bad.render_new(SR // 10)
        assert bad.tone_applied == 1.0


def test_output_never_exceeds_the_ceiling_even_with_gain():
    ceiling = 10 ** (-0.3 / 20)
    with engine(master_gain_db=12.0, reverb_mix=0.5) as e:
        frames = demo_phrase().frames(e.hop, SR)
        out = e.render_new(frames.n_samples, frames)
    assert np.isfinite(out).all()
    assert np.abs(out).max() <= ceiling + 1e-7


def test_bad_control_values_are_clamped_and_counted():
    with engine() as e:
        e.set_f0_hz(440.0)
        e.set_loudness(0.5)
        e.render_new(1024)
        for f0, loud in [(float("nan"), 0.5), (float("inf"), 0.5), (-5.0, 0.5), (440.0, float("nan")), (1e9, 7.0)]:
            e.set_f0_hz(f0)
            e.set_loudness(loud)
            out = e.render_new(512)
            assert np.isfinite(out).all()
        assert e.nonfinite_controls >= 4


def test_render_allocates_nothing_per_period():
    """After warm-up, 2000 periods leave no new memory behind and no large temporaries."""
    with engine() as e:
        frames = demo_phrase().frames(e.hop, SR)
        out = np.empty(128, np.float32)
        for _ in range(50):
            e.render(out, frames)
        tracemalloc.start()
        try:
            before, _ = tracemalloc.get_traced_memory()
            tracemalloc.reset_peak()
            for _ in range(2000):
                e.render(out, frames)
            after, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert after - before < 2048, f"grew by {after - before} bytes"
    assert peak - before < 16384, f"temporary peak {peak - before} bytes per period"


def test_moving_the_tone_allocates_nothing_per_period():
    """The tone ramping to a new value in most periods: still no growth, no temporaries."""
    with engine(tone=-1.0) as e:
        frames = demo_phrase().frames(e.hop, SR)
        out = np.empty(128, np.float32)
        for _ in range(50):
            e.render(out, frames)
        tones = [(-1.0, -0.2, 0.5, 1.0)[i % 4] for i in range(2000)]  # made before tracing
        tracemalloc.start()
        try:
            before, _ = tracemalloc.get_traced_memory()
            tracemalloc.reset_peak()
            for i in range(2000):
                if i % 8 == 0:
                    e.tone = tones[i]
                e.render(out, frames)
            after, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert after - before < 2048, f"grew by {after - before} bytes"
    assert peak - before < 16384, f"temporary peak {peak - before} bytes per period"


def test_embedding_api_by_name():
    from ddsp_device import Engine as PublicEngine

    with PublicEngine.load("TestFixture") as e:
        e.set_f0_hz(220.0)
        e.set_loudness(0.7)
        audio = e.render_new(4800)
    assert audio.dtype == np.float32 and audio.shape == (4800,)
    assert np.abs(audio).max() > 0.01
