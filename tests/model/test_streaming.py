"""Model.step / reset: window and state semantics, (de)quantisation, runtime agreement."""

from __future__ import annotations

import math
import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ddsp_device.errors import ModelError
from ddsp_device.model import load_model

pytestmark = pytest.mark.runtime

LN_K = np.log(np.arange(1, 65))
BAND = np.arange(65) / 64


def fixture_outputs(f0_hz: float, loudness: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The closed form TestFixture / float_window compute per frame (make_models.py)."""
    amps = np.full(64, 0.5 * loudness**2)
    dist = 1 / (1 + np.exp(-(-1 - (2 - loudness + 0.3 * f0_hz / 4200) * LN_K)))
    noise = np.maximum(0.002 + 0.006 * BAND + loudness * (0.004 + 0.008 * BAND), 0)
    return amps, dist, noise


@pytest.fixture
def float_model(paths):
    with load_model(paths.float_window) as model:
        yield model


@pytest.fixture
def demo_model(paths):
    with load_model(paths.demo) as model:
        yield model


@pytest.fixture
def state_model(paths):
    with load_model(paths.state) as model:
        yield model


def test_outputs_are_preallocated_and_overwritten_in_place(demo_model):
    arrays = (demo_model.harmonic_amps, demo_model.harmonic_dist, demo_model.noise_mags)
    assert [(a.dtype, a.shape) for a in arrays] == [(np.float32, (64,)), (np.float32, (64,)), (np.float32, (65,))]
    demo_model.step(220.0, 0.8)
    first = [a.copy() for a in arrays]
    demo_model.step(220.0, 0.3)
    now = (demo_model.harmonic_amps, demo_model.harmonic_dist, demo_model.noise_mags)
    assert all(new is old for new, old in zip(now, arrays))
    assert not np.array_equal(first[0], demo_model.harmonic_amps)


@pytest.mark.parametrize(("f0_hz", "loudness"), [(220.0, 0.0), (220.0, 0.5), (880.0, 1.0), (3000.0, 0.25)])
def test_outputs_bound_by_name_follow_the_closed_form(float_model, f0_hz, loudness):
    """Each output has its own closed form: any mix-up of the outputs would show."""
    float_model.reset(f0_hz, loudness)
    float_model.step(f0_hz, loudness)
    amps, dist, noise = fixture_outputs(f0_hz, loudness)
    np.testing.assert_allclose(float_model.harmonic_amps, amps, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(float_model.harmonic_dist, dist, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(float_model.noise_mags, noise, rtol=1e-5, atol=1e-7)


def test_fixture_sounds_like_a_bright_saw(demo_model):
    """Level ~ loudness**2, roll-off about 1/k when loud and steeper when quiet, a little noise."""
    demo_model.step(220.0, 1.0)
    assert demo_model.harmonic_amps == pytest.approx(np.full(64, 0.5), abs=0.003)
    loud = demo_model.harmonic_dist / demo_model.harmonic_dist[0]
    assert 0.4 < loud[1] < 0.7 and 0.05 < loud[9] < 0.2  # ~1/2 and ~1/10
    assert 0.015 < demo_model.noise_mags[-1] <= 0.0201 and demo_model.noise_mags[0] >= 0.005
    demo_model.step(220.0, 0.3)
    quiet = demo_model.harmonic_dist / demo_model.harmonic_dist[0]
    assert quiet[9] < loud[9]
    assert demo_model.harmonic_amps[0] == pytest.approx(0.5 * 0.3**2, abs=0.003)
    demo_model.step(220.0, 0.0)
    assert not demo_model.harmonic_amps.any()


def test_newest_frame_drives_the_outputs(float_model):
    float_model.reset(220.0)
    float_model.step(220.0, 0.9)
    float_model.step(220.0, 0.2)
    np.testing.assert_allclose(float_model.harmonic_amps, 0.5 * 0.2**2, rtol=1e-5)


def test_reset_fills_the_window(float_model):
    float_model.reset(330.0, 0.4)
    f0_window, loudness_window = float_model.window()
    np.testing.assert_allclose(f0_window, np.full(8, 330.0))
    np.testing.assert_allclose(loudness_window, np.full(8, 0.4))
    float_model.step(440.0, 0.6)
    f0_window, loudness_window = float_model.window()
    np.testing.assert_allclose(f0_window, [330.0] * 7 + [440.0])
    np.testing.assert_allclose(loudness_window, [0.4] * 7 + [0.6], rtol=1e-6)


def test_first_step_without_reset_fills_with_its_f0_and_silence(float_model):
    float_model.step(261.0, 0.7)
    f0_window, loudness_window = float_model.window()
    np.testing.assert_allclose(f0_window, np.full(8, 261.0))
    np.testing.assert_allclose(loudness_window, [0.0] * 7 + [0.7], rtol=1e-6)


@settings(max_examples=40, deadline=None)
@given(
    start_f0_hz=st.floats(30, 4200),
    frames=st.lists(st.tuples(st.floats(30, 4200), st.floats(0, 1)), min_size=0, max_size=30),
)
def test_window_holds_the_last_t_frames_oldest_first(paths, start_f0_hz, frames):
    with load_model(paths.float_window) as model:
        model.reset(start_f0_hz)
        for f0_hz, loudness in frames:
            model.step(f0_hz, loudness)
        history = [(start_f0_hz, 0.0)] * 8 + list(frames)
        f0_window, loudness_window = model.window()
        np.testing.assert_allclose(f0_window, [f for f, _ in history[-8:]], rtol=1e-6)
        np.testing.assert_allclose(loudness_window, [l for _, l in history[-8:]], rtol=1e-6, atol=1e-7)


def test_int8_inputs_are_quantised_per_the_contract(demo_model):
    demo_model.reset(220.0)
    for loudness in (0.0, 0.3, 0.5, 1.0, 1.7, -0.2):
        demo_model.step(220.0, loudness)
        seen = demo_model.window()[1][-1]
        step = 1 / 255  # TestFixture's loudness scale: 0..1 in 255 steps
        assert seen == pytest.approx(min(max(loudness, 0.0), 1.0), abs=step / 2 + 1e-9)


def test_non_finite_controls_do_not_stop_an_int8_model(demo_model):
    for f0_hz, loudness in ((math.nan, math.nan), (math.inf, -math.inf), (1e300, 1e300)):
        demo_model.step(f0_hz, loudness)
        assert np.isfinite(demo_model.harmonic_amps).all()


def test_state_is_carried_between_steps(state_model):
    """From zero state at loudness 1: amps = 0.5 (1 - 0.9**n) after n steps."""
    state_model.reset(220.0)
    amps = []
    for n in range(1, 31):
        state_model.step(220.0, 1.0)
        amps.append(float(state_model.harmonic_amps[0]))
        assert amps[-1] == pytest.approx(0.5 * (1 - 0.9**n), abs=0.01)
    assert all(b >= a for a, b in zip(amps, amps[1:])) and amps[-1] > 0.45
    for _ in range(10):  # silence: the state decays
        state_model.step(220.0, 0.0)
    assert state_model.harmonic_amps[0] == pytest.approx(0.5 * (1 - 0.9**30) * 0.9**10, abs=0.01)


def test_reset_zeroes_the_state(state_model):
    for _ in range(20):
        state_model.step(220.0, 1.0)
    state_model.reset(220.0)
    assert not state_model.harmonic_amps.any()
    state_model.step(220.0, 1.0)
    assert state_model.harmonic_amps[0] == pytest.approx(0.05, abs=0.005)


@pytest.mark.parametrize("name", ["TestFixture", "float_window", "state"])
def test_outputs_agree_with_the_reference_interpreter(paths, reference, name):
    """Both runtimes (this test runs under each) and TensorFlow's interpreter agree to 1 int8 step."""
    path = {"TestFixture": paths.demo, "float_window": paths.float_window, "state": paths.state}[name]
    f0_hz, loudness = reference["f0_hz"], reference["loudness"]
    outputs = ("harmonic_amps", "harmonic_dist", "noise_mags")
    with load_model(path) as model:
        model.reset(float(f0_hz[0]))
        for n, (f0, level) in enumerate(zip(f0_hz, loudness)):
            model.step(float(f0), float(level))
            for output in outputs:
                expected = reference[f"{name}__{output}"][n]
                step = float(reference[f"{name}__{output}__step"])
                tolerance = step * 1.001 if step else 1e-5 * np.abs(expected).max() + 1e-7
                actual = getattr(model, output)
                assert np.abs(actual - expected).max() <= tolerance, f"frame {n} {output} ({model.info.runtime_name})"


def test_int8_model_tracks_the_float_model(paths, reference):
    """Same weights: int8 outputs stay within a few quantisation steps of float ones, when both
    are fed what the int8 model actually sees (its quantised inputs)."""
    keys = ("harmonic_amps", "harmonic_dist", "noise_mags")
    steps = {key: float(reference[f"TestFixture__{key}__step"]) for key in keys}
    worst = dict.fromkeys(steps, 0.0)
    with load_model(paths.demo) as int8_model, load_model(paths.float_window) as float_model:
        int8_model.reset(220.0)
        float_model.reset(220.0)
        for f0_hz, loudness in zip(reference["f0_hz"], reference["loudness"]):
            int8_model.step(float(f0_hz), float(loudness))
            f0_window, loudness_window = int8_model.window()
            float_model.step(float(f0_window[-1]), float(loudness_window[-1]))
            for key in steps:
                error = np.abs(getattr(int8_model, key) - getattr(float_model, key)).max()
                worst[key] = max(worst[key], error / steps[key])
    assert max(worst.values()) <= 2.0, worst


def test_close_twice_and_step_after_close(paths):
    model = load_model(paths.demo)
    model.step(220.0, 0.5)
    model.close()
    model.close()
    assert model.closed
    with pytest.raises(ModelError, match="closed"):
        model.step(220.0, 0.5)
    with load_model(paths.demo) as other:
        assert not other.closed
    assert other.closed


def test_step_leaks_nothing(demo_model, state_model):
    for model in (demo_model, state_model):
        for _ in range(50):
            model.step(220.0, 0.5)
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            for i in range(2000):
                model.step(220.0 + i % 7, 0.5)
            after, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert after - before < 1024
        assert peak - before < 16 * 1024
