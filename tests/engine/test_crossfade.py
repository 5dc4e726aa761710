"""Model hot-swap crossfade, fade-out and mute, on the real runtime and fixture models.

Fixture frame rates: ``TestFixture`` (int8) and ``state`` run at 375 Hz (hop 128 at 48 kHz);
``float_window`` is a bare file, so it takes the default 250 Hz (hop 192) unless
``ModelDefaults(frame_rate_hz=375)`` says otherwise: that gives both the same-hop and the
other-hop swap.
"""

import tracemalloc
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from ddsp_device.engine import Engine, EngineSettings, SwapPendingError
from ddsp_device.model import ModelDefaults, load_model

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "models" / "TestFixture.tflite"
FLOAT_WINDOW = ROOT / "tests" / "fixtures" / "models" / "float_window.tflite"
STATE = ROOT / "tests" / "fixtures" / "models" / "state.tflite"
SR = 48000
PERIOD = 128

pytestmark = pytest.mark.runtime


class ToneModel:
    """A stand-in model with fixed outputs: a pure sine or a bright 1/k spectrum with noise.

    Much further apart in timbre than the fixtures, so the crossfade has something to hide.
    """

    def __init__(self, bright: bool, frame_rate_hz: float = 375.0):
        self.info = SimpleNamespace(
            path=f"<tone bright={bright}>", name="bright" if bright else "sine", frame_rate_hz=frame_rate_hz,
            sample_rate_hz=SR, n_harmonics=64, n_noise_bands=65, f0_min_hz=30.0, f0_max_hz=4200.0,
            loudness_min=0.0, loudness_max=1.0,
        )
        k = np.arange(1, 65, dtype=np.float32)
        self.harmonic_amps = np.full(64, 0.4 if bright else 0.3, np.float32)
        self.harmonic_dist = (1.0 / k if bright else (k == 1)).astype(np.float32)
        self.noise_mags = np.full(65, 0.02 if bright else 0.0, np.float32)
        self.closed = False
        self.steps = 0

    def reset(self, f0_hz, loudness=0.0):
        pass

    def step(self, f0_hz, loudness):
        assert not self.closed, "stepped after close"
        self.steps += 1

    def close(self):
        self.closed = True


def play_with_swap(first, second, *, before_s=0.5, after_s=0.5, f0_hz=440.0, loudness=0.8, crossfade_s=None,
                   period=PERIOD, **settings):
    """A held note; ``request_model(second)`` at ``before_s``. Returns (audio, swap sample, engine)."""
    e = Engine(first, EngineSettings(**settings))
    e.set_f0_hz(f0_hz)
    e.set_loudness(loudness)
    n_before = int(before_s * SR) // period * period
    out = np.zeros(n_before + int(after_s * SR) // period * period, np.float32)
    for i in range(0, n_before, period):
        e.render(out[i : i + period])
    if second is not None:
        e.request_model(second, crossfade_s=crossfade_s)
    for i in range(n_before, len(out), period):
        e.render(out[i : i + period])
    return out, n_before, e


def rms(x):
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


def assert_seamless(audio, at, fade_samples, label=""):
    """No click and no gap around sample ``at``.

    Click: the largest second difference (a step or kink shows up there) in the swap region is
    no larger than in the steady note on either side. Gap: every 5 ms window (two cycles of
    440 Hz) in the swap region keeps at least 70% of the quieter side's RMS.
    """
    d2 = np.abs(np.diff(audio.astype(np.float64), 2))
    pre = slice(at - int(0.30 * SR), at - int(0.02 * SR))
    post_start = at + fade_samples + int(0.05 * SR)
    post = slice(post_start, post_start + int(0.25 * SR))
    swap = slice(at - int(0.005 * SR), at + fade_samples + int(0.01 * SR))
    steady = max(d2[pre].max(), d2[post].max())
    assert d2[swap].max() <= 1.1 * steady, f"{label}: click: {d2[swap].max():.4f} vs steady {steady:.4f}"
    floor = 0.7 * min(rms(audio[pre]), rms(audio[post]))
    w = int(0.005 * SR)
    for i in range(swap.start, swap.stop - w, w // 2):
        level = rms(audio[i : i + w])
        assert level >= floor, f"{label}: gap at {(i - at) / SR * 1e3:.1f} ms: rms {level:.4f} < {floor:.4f}"


def peak_hz(x):
    win = np.hanning(len(x))
    spec = np.abs(np.fft.rfft(x * win, n=8 * len(x)))
    i = int(np.argmax(spec[1:-1])) + 1
    a, b, c = np.log(spec[i - 1 : i + 2] + 1e-30)
    return (i + 0.5 * (a - c) / (a - 2 * b + c)) * SR / (8 * len(x))


# --------------------------------------------------------------------------- the swap itself
@pytest.mark.parametrize(
    "second, defaults, hop",
    [
        (FLOAT_WINDOW, ModelDefaults(frame_rate_hz=375.0), 128),  # same hop: controls mixed
        (FLOAT_WINDOW, ModelDefaults(), 192),  # 250 Hz: state moved into a new pipeline
        (STATE, ModelDefaults(), 128),  # a recurrent model with another timbre
    ],
    ids=["float_window@375", "float_window@250", "state"],
)
def test_swapping_fixture_models_mid_note_is_seamless(second, defaults, hop):
    new = load_model(second, defaults=defaults)
    audio, at, e = play_with_swap(load_model(FIXTURE), new, reverb_mix=0.15)
    with e:
        assert e.model is new and e.hop == hop and e.crossfades == 1
        assert np.isfinite(audio).all()
        assert_seamless(audio, at, int(0.05 * SR), label=second.name)
        cents = 1200 * np.log2(peak_hz(audio[-SR // 4 :].astype(np.float64)) / 440.0)
        assert abs(cents) < 1.0


@pytest.mark.parametrize("frame_rate_hz", [375.0, 250.0])
@pytest.mark.parametrize("direction", ["sine_to_bright", "bright_to_sine"])
def test_swapping_very_different_timbres_is_seamless(direction, frame_rate_hz):
    bright_first = direction.startswith("bright")
    a, b = ToneModel(bright_first), ToneModel(not bright_first, frame_rate_hz)
    audio, at, e = play_with_swap(a, b, reverb_mix=0.0)
    with e:
        assert e.crossfades == 1
        assert_seamless(audio, at, int(0.05 * SR), label=direction)


def test_a_swap_to_another_hop_carries_the_tone_filters():
    """The dark tone's filters continue in the new hop's pipeline: no click, same tone after."""
    audio, at, e = play_with_swap(ToneModel(True), ToneModel(True, 250.0), reverb_mix=0.0, tone=-0.8)
    with e:
        assert e.crossfades == 1 and e.hop == 192
        assert e.tone_applied == -0.8
        assert_seamless(audio, at, int(0.05 * SR), label="dark tone across hops")


def test_the_click_metric_catches_a_phase_jump():
    """The check above has teeth: a hard cut between two renderings 1/3 cycle apart fails it."""
    audio, at, e = play_with_swap(ToneModel(bright=False), None, reverb_mix=0.0)
    e.close()
    cut = np.concatenate([audio[:at], audio[at + 36 :]])
    with pytest.raises(AssertionError, match="click"):
        assert_seamless(cut, at, int(0.05 * SR))


@pytest.mark.parametrize("period", [128, 100])
@pytest.mark.parametrize("frame_rate_hz, hop", [(375.0, 128), (250.0, 192)])
def test_crossfade_equals_an_audio_crossfade_of_the_two_models(frame_rate_hz, hop, period):
    """Shared phase makes the control-level mix exactly a linear audio crossfade.

    Harmonics only, no reverb: the swapped engine's output equals
    ``(1 − g(t))·old(t) + g(t)·new(t)`` with ``old`` and ``new`` each rendered alone and ``g``
    rising per sample from the hop boundary of the swap to 1 after ``n`` hops of the new model.
    With 100-frame periods the FIFO holds samples of the old hop grid at the request: the swap
    starts at the next boundary of that grid.
    """

    def tone(bright, rate=375.0):
        m = ToneModel(bright, rate)
        m.noise_mags[:] = 0.0
        return m

    settings = dict(reverb_mix=0.0, f0_hz=330.0, before_s=0.3, after_s=0.3, period=period)
    swapped, at, e = play_with_swap(tone(False), tone(True, frame_rate_hz), **settings)
    old, _, e_old = play_with_swap(tone(False), None, **settings)
    new, _, e_new = play_with_swap(tone(True, frame_rate_hz), None, **settings)
    for engine in (e, e_old, e_new):
        engine.close()
    assert e.crossfades == 1 and e.hop == hop
    start = -(-at // PERIOD) * PERIOD  # the old grid's next hop boundary
    n = max(1, round(0.05 * SR / hop))
    g = np.clip((np.arange(len(old)) - start + 1) / (n * hop), 0.0, 1.0)
    expected = old + g * (new - old)
    assert np.abs(swapped[: at] - old[: at]).max() == 0.0
    np.testing.assert_allclose(swapped, expected, atol=2e-4)


def test_crossfade_is_linear_in_the_synth_controls():
    """Mid-crossfade the harmonic amplitudes are (1−g)·A_old + g·A_new, g rising per hop."""
    a, b = ToneModel(bright=False), ToneModel(bright=True)
    e = Engine(a, EngineSettings(reverb_mix=0.0))
    e.set_f0_hz(220.0)
    e.set_loudness(0.8)
    out = np.zeros(PERIOD, np.float32)
    for _ in range(10):
        e.render(out)
    e.request_model(b, crossfade_s=4 * PERIOD / SR)  # exactly 4 hops
    seen = []
    for hop in range(1, 6):
        e.render(out)
        seen.append(e._amps_from.copy())  # the amplitudes this hop ended on
    a_old, a_new = seen[-1] * 0, seen[-1]  # after the fade: all new
    for hop, amps in enumerate(seen[:4], start=1):
        g = hop / 4
        a_old = np.zeros_like(amps)
        a_old[0] = 0.3  # the sine model: only the fundamental
        np.testing.assert_allclose(amps, (1 - g) * a_old + g * a_new, rtol=1e-5, atol=1e-7)
    assert e.crossfades == 1 and not e.crossfading


def test_old_model_is_retired_not_closed_on_the_audio_path():
    old, new = ToneModel(False), ToneModel(True)
    audio, at, e = play_with_swap(old, new, after_s=0.2)
    with e:
        assert not old.closed, "the render path must not close models"
        assert [swap.old_model for swap in e.retired_models] == [old]
        assert e.collect_retired() == 1
        assert old.closed and not new.closed and not e.retired_models
        assert e.collect_retired() == 0


def test_old_model_stops_stepping_after_the_crossfade():
    old, new = ToneModel(False), ToneModel(True)
    audio, at, e = play_with_swap(old, new, after_s=0.3, crossfade_s=0.05)
    with e:
        hops = round(0.05 * SR / PERIOD)
        assert old.steps == at // PERIOD + hops


def test_a_second_request_waits_for_the_first():
    e = Engine(ToneModel(False), EngineSettings())
    e.request_model(ToneModel(True))
    assert e.swap_pending
    with pytest.raises(SwapPendingError):
        e.request_model(ToneModel(True))
    out = np.zeros(PERIOD, np.float32)
    e.render(out)  # taken at the first hop boundary
    assert not e.swap_pending and e.crossfading
    third = ToneModel(False)
    e.request_model(third)  # accepted; starts after the running crossfade
    for _ in range(40):
        e.render(out)
    assert e.crossfades == 2 and e.model is third
    e.close()


def test_close_closes_waiting_and_crossfading_models():
    first, second = ToneModel(False), ToneModel(True)
    e = Engine(first, EngineSettings())
    e.request_model(second)
    e.render(np.zeros(PERIOD, np.float32))  # crossfade running: second plays, first fades
    third = ToneModel(False)
    e.request_model(third)  # waiting
    e.close()
    assert first.closed and second.closed and third.closed
    e.close()  # twice is harmless


def test_request_refuses_the_playing_model_and_wrong_shapes():
    a = ToneModel(False)
    e = Engine(a, EngineSettings())
    with pytest.raises(ValueError):
        e.request_model(a)
    odd = ToneModel(True)
    odd.info.n_noise_bands = 33
    with pytest.raises(ValueError, match="noise bands"):
        e.request_model(odd)
    assert not e.swap_pending


def test_crossfade_allocates_nothing_per_period():
    e = Engine(load_model(FIXTURE), EngineSettings())
    e.set_f0_hz(440.0)
    e.set_loudness(0.8)
    out = np.empty(PERIOD, np.float32)
    for _ in range(50):
        e.render(out)
    e.request_model(load_model(FLOAT_WINDOW), crossfade_s=0.2)  # allocates here, not below
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        for _ in range(400):  # the whole crossfade (75 hops at 250 Hz) and beyond
            e.render(out)
        after, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert e.crossfades == 1
    e.close()
    assert after - before < 2048, f"grew by {after - before} bytes"
    assert peak - before < 16384, f"temporary peak {peak - before} bytes per period"


# --------------------------------------------------------------------------- fade-out and mute
def note(**settings):
    e = Engine(load_model(FIXTURE), EngineSettings(**settings))
    e.set_f0_hz(440.0)
    e.set_loudness(0.9)
    return e


def render_periods(e, n_periods, period=PERIOD):
    out = np.zeros(n_periods * period, np.float32)
    for i in range(0, len(out), period):
        e.render(out[i : i + period])
    return out


@pytest.mark.parametrize("period", [64, 128, 500])
def test_fade_out_is_a_linear_ramp_to_silence_within_20_ms(period):
    with note() as faded, note() as reference:
        render_periods(faded, 40, period)
        render_periods(reference, 40, period)
        faded.fade_out(0.015)
        assert not faded.faded_out
        y = render_periods(faded, int(0.03 * SR) // period + 1, period)
        x = render_periods(reference, int(0.03 * SR) // period + 1, period)
        ramp = np.maximum(0.0, 1.0 - np.arange(1, len(x) + 1) / (0.015 * SR))
        np.testing.assert_allclose(y, x * ramp, atol=2e-6)
        silent_from = int(0.015 * SR)
        assert silent_from <= int(0.020 * SR)
        assert not y[silent_from:].any()
        assert faded.faded_out and faded.muted
        assert not render_periods(faded, 10, period).any()  # and stays silent


def test_mute_and_unmute_ramp_without_a_click():
    with note(reverb_mix=0.0) as e, note(reverb_mix=0.0) as reference:
        render_periods(e, 40)
        render_periods(reference, 40)
        e.set_muted(True, ramp_s=0.01)
        y1 = render_periods(e, 10)
        x1 = render_periods(reference, 10)
        ramp = np.maximum(0.0, 1.0 - np.arange(1, len(x1) + 1) / (0.01 * SR))
        np.testing.assert_allclose(y1, x1 * ramp, atol=2e-6)
        assert e.faded_out
        e.set_muted(False, ramp_s=0.01)
        y2 = render_periods(e, 10)
        x2 = render_periods(reference, 10)
        ramp = np.minimum(1.0, np.arange(1, len(x2) + 1) / (0.01 * SR))
        np.testing.assert_allclose(y2, x2 * ramp, atol=2e-6)
        assert not e.muted and e.output_gain == 1.0
        # the engine kept running while muted: afterwards it plays exactly what it would have
        np.testing.assert_array_equal(render_periods(e, 5), render_periods(reference, 5))
        both = np.concatenate([render_periods(reference, 0), y1, y2])
        assert np.abs(np.diff(both)).max() <= np.abs(np.diff(np.concatenate([x1, x2]))).max() + 1e-6


def test_preparing_a_swap_multiplies_no_matrices(monkeypatch):
    """OpenBLAS gives a thread that multiplies matrices while another thread is doing so (the
    audio thread, every period) a 32 MB buffer of its own, for good, and the daemon's mlockall
    makes it resident: the soak saw +32 MB at a random reload. Preparing a swap (the control
    thread; here to another hop, a new pipeline with its own reverb) must do no matrix product."""
    import threading

    products = []
    dot = np.dot

    def watched(a, b, *args, **kwargs):
        if np.ndim(a) >= 2 and np.ndim(b) >= 2 and threading.current_thread() is threading.main_thread():
            products.append((np.shape(a), np.shape(b)))
        return dot(a, b, *args, **kwargs)

    with Engine(load_model(FIXTURE), EngineSettings(reverb_mix=0.15)) as e:
        new = load_model(FLOAT_WINDOW)  # 250 Hz: hop 192
        monkeypatch.setattr(np, "dot", watched)
        e.request_model(new)
        monkeypatch.setattr(np, "dot", dot)
        assert products == []
        e.render_new(4096)
        assert e.model is new and e.hop == 192


def test_a_reverb_like_another_equals_one_simulated_afresh():
    from ddsp_device.dsp.output import make_reverb, reverb_block

    fresh = make_reverb(SR, 1.5, 192)
    like = make_reverb(SR, 1.5, 192, like=make_reverb(SR, 1.5, 128))
    np.testing.assert_array_equal(like._tap, fresh._tap)
    x = np.random.default_rng(3).standard_normal(4096).astype(np.float32)
    a, b = np.empty_like(x), np.empty_like(x)
    reverb_block(x, 0.3, fresh, a)
    reverb_block(x, 0.3, like, b)
    np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="like"):
        make_reverb(SR, 1.0, 192, like=fresh)
