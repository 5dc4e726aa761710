"""The decoder's two graphs agree; the loss and the dataset format behave as documented."""

from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
pytest.importorskip("keras")

from ddsp_device.train import data, losses, model  # noqa: E402

CONFIG = model.DecoderConfig(
    hidden_units=24, gru_units=20, input_layers=2, output_layers=2, f0_min_hz=80.0, f0_max_hz=2000.0
)


def test_state_model_steps_like_the_sequence_model():
    decoder = model.build_decoder(CONFIG)
    rng = np.random.default_rng(0)
    n = 40
    f0 = rng.uniform(80.0, 2000.0, (1, n)).astype(np.float32)
    loudness = rng.uniform(0.0, 1.0, (1, n)).astype(np.float32)
    sequence = decoder({"f0_hz": f0, "loudness": loudness})
    step_model = model.build_state_model(decoder)
    state = np.zeros((1, CONFIG.gru_units), np.float32)
    for t in range(n):
        out = step_model({"f0_hz": f0[:, t : t + 1], "loudness": loudness[:, t : t + 1], "state_in": state})
        state = np.asarray(out["state_out"])
        np.testing.assert_allclose(state[0], np.asarray(sequence["gru_state"])[0, t], atol=1e-5)
        for name, size in (("harmonic_amps", 64), ("harmonic_dist", 64), ("noise_mags", 65)):
            value = np.asarray(out[name])
            assert value.shape == (1, 1, size)
            # the same function, but for the hard clip to [1e−6, 1] where training's leaks
            expected = np.clip(np.asarray(sequence[name])[0, t], 1e-6, 1.0)
            np.testing.assert_allclose(value[0, 0], expected, rtol=1e-4, atol=1e-9)


def test_outputs_are_positive_and_start_at_a_plausible_sound():
    decoder = model.build_decoder(CONFIG)
    out = decoder({"f0_hz": np.full((2, 10), 440.0, np.float32), "loudness": np.full((2, 10), 0.7, np.float32)})
    for name in ("harmonic_amps", "harmonic_dist", "noise_mags"):
        value = np.asarray(out[name])
        assert np.all(value > 0) and np.all(value <= 1.1)  # ≤ 1, but for the training leak
    amps_db = 20 * np.log10(np.asarray(out["harmonic_amps"]))
    assert -40 < amps_db.mean() < 0  # about −20 dB, not full scale


def test_soft_clip_leaks_and_hard_clip_does_not():
    a = np.array([-2.0, 0.0, 3.0, 6.0, 8.0], np.float32)
    np.testing.assert_allclose(np.asarray(model.soft_clip(a)), [-0.02, 0.0, 3.0, 6.0, 6.02], atol=1e-6)
    np.testing.assert_allclose(np.asarray(model.hard_clip(a)), [0.0, 0.0, 3.0, 6.0, 6.0], atol=1e-6)


def test_spectral_loss_is_zero_for_identical_audio_and_grows_with_difference():
    rng = np.random.default_rng(0)
    audio = rng.uniform(-0.5, 0.5, (2, 8000)).astype(np.float32)
    assert float(losses.multiscale_spectral_loss(audio, audio)) == pytest.approx(0.0, abs=1e-6)
    near = float(losses.multiscale_spectral_loss(audio, audio * 1.1))
    far = float(losses.multiscale_spectral_loss(audio, audio * 2.0))
    assert 0 < near < far
    one = float(losses.multiscale_spectral_loss(audio[0], audio[0] * 2.0, fft_sizes=(256,)))
    assert one > 0


def test_clip_format_round_trip_and_errors(tmp_path):
    n, hop = 30, 128
    audio = np.zeros(n * hop + 7, np.float32)
    data.save_clip(tmp_path / "ok.npz", audio, np.full(n, 220.0), np.full(n, 0.5), 48000, 375.0)
    clip = data.load_clip(tmp_path / "ok.npz")
    assert (clip.hop, clip.n_frames, clip.audio.shape[0]) == (128, n, n * hop)

    data.save_clip(tmp_path / "short.npz", audio[:100], np.full(n, 220.0), np.full(n, 0.5), 48000, 375.0)
    with pytest.raises(data.DatasetError, match="short.npz: audio has 100 samples"):
        data.load_clip(tmp_path / "short.npz")
    data.save_clip(tmp_path / "rate.npz", audio, np.full(n, 220.0), np.full(n, 0.5), 44100, 375.0)
    with pytest.raises(data.DatasetError, match="not a whole hop"):
        data.load_clip(tmp_path / "rate.npz")
    np.savez(tmp_path / "keys.npz", audio=audio)
    with pytest.raises(data.DatasetError, match="missing f0_hz, loudness"):
        data.load_clip(tmp_path / "keys.npz")
    assert isinstance(data.DatasetError("x"), ValueError)


def test_crops_cover_the_clips(tmp_path):
    hop = 128
    clips = []
    for i, n in enumerate((50, 80)):
        data.save_clip(
            tmp_path / f"c{i}.npz",
            np.arange(n * hop, dtype=np.float32),
            np.full(n, 100.0 + i),
            np.linspace(0, 1, n),
            48000,
            375.0,
        )
        clips.append(data.load_clip(tmp_path / f"c{i}.npz"))
    crops = data.Crops(clips, example_frames=40, seed=1)
    audio, f0, _ = crops.random()
    assert audio.shape == (40 * hop,) and f0.shape == (40,)
    start = int(audio[0]) // hop  # the audio counts samples: it is aligned with the frames
    assert audio[0] == start * hop
    audio, f0, _ = crops.fixed()
    assert f0.shape == (3, 40)
    assert audio.shape == (1 + 2, 40 * hop)  # 50 frames → 1 crop, 80 → 2
    with pytest.raises(data.DatasetError, match="no clip has 100 frames"):
        data.Crops(clips, example_frames=100)


def test_mixed_crops_draw_from_each_dataset_by_weight(tmp_path):
    hop = 128
    sets = []
    for i in range(2):
        data.save_clip(tmp_path / f"m{i}.npz", np.zeros(60 * hop, np.float32), np.full(60, 100.0 + i),
                       np.ones(60), 48000, 375.0)
        sets.append(data.Crops([data.load_clip(tmp_path / f"m{i}.npz")], example_frames=20, seed=i))
    mixed = data.MixedCrops(sets, [3.0, 1.0], seed=0)
    drawn = np.array([mixed.random()[1][0] for _ in range(2000)])
    assert mixed.example_frames == 20 and mixed.hop == hop
    assert np.mean(drawn == 100.0) == pytest.approx(0.75, abs=0.04)
    assert data.parse_weighted("ds@0.25") == ("ds", 0.25) and data.parse_weighted("plain") == ("plain", 1.0)
    for bad in ("ds@x", "ds@0", "ds@-1"):
        with pytest.raises(data.DatasetError, match="weight after '@'"):
            data.parse_weighted(bad)
    with pytest.raises(data.DatasetError, match="must be positive"):
        data.MixedCrops(sets, [1.0, 0.0])
