"""``prepare``: recordings at any rate → 48 kHz clips with features, split by file."""

import json
import logging

import numpy as np
import pytest

pytest.importorskip("scipy")
sf = pytest.importorskip("soundfile")
pytest.importorskip("parselmouth")
pytest.importorskip("tqdm")

from ddsp_device.train import data  # noqa: E402
from ddsp_device.train import prepare as prep  # noqa: E402

SR = 48000
HOP = 128


def tone(f0_hz, seconds, rate, amplitude=0.3):
    t = np.arange(int(round(seconds * rate))) / rate
    f0 = f0_hz * 2 ** (30 * np.sin(2 * np.pi * 5.0 * t) / 1200)
    phase = 2 * np.pi * np.cumsum(f0) / rate
    audio = sum(np.sin(k * phase) / k for k in range(1, 8))
    return (amplitude * audio / np.abs(audio).max()).astype(np.float32)


@pytest.fixture
def audio_dir(tmp_path):
    root = tmp_path / "recordings"
    (root / "sub").mkdir(parents=True)
    left = tone(440.0, 6.0, 44100)
    sf.write(root / "a_44k_stereo.wav", np.stack([left, 0.5 * left], axis=1), 44100, subtype="FLOAT")
    sf.write(root / "sub" / "b_16k.wav", tone(330.0, 3.0, 16000), 16000, subtype="PCM_16")
    sf.write(root / "c_48k.wav", tone(660.0, 2.5, 48000), 48000, subtype="PCM_24")
    sf.write(root / "silent.wav", np.zeros(2 * 44100, np.float32), 44100)
    (root / "corrupt.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEjunk" + bytes(range(256)) * 4)
    (root / "notes.txt").write_text("not audio")
    return root


def run(audio_dir, out, **kwargs):
    settings = dict(clip_s=2.0, validation_fraction=0.3, progress=False)
    settings.update(kwargs)
    return prep.prepare(audio_dir, out, **settings)


def clips_by_source(dataset):
    found = {}
    for split in prep.SPLITS:
        for path in sorted((dataset / split).glob("*.npz")):
            found.setdefault(path.name.split("-")[1], []).append((split, path))
    return found


def test_prepare_writes_clips_refuses_bad_files_and_splits_by_file(audio_dir, tmp_path, caplog):
    out = tmp_path / "dataset"
    with caplog.at_level(logging.WARNING, logger="ddsp_device.train.prepare"):
        summary = run(audio_dir, out)

    assert summary.files_used == 3
    refused = dict(summary.files_refused)
    assert set(refused) == {"silent.wav", "corrupt.wav"}
    assert "silent" in refused["silent.wav"]
    assert "unreadable" in refused["corrupt.wav"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2  # one message per refused file, naming it
    assert any("silent.wav" in w and "silent" in w for w in warnings)
    assert any("corrupt.wav" in w and "unreadable" in w for w in warnings)

    by_source = clips_by_source(out)
    # 6 s → 3 clips of 2 s; 3 s → 2 s + a 1 s tail; 2.5 s → 2 s (the 0.5 s tail is dropped)
    assert {name: len(clips) for name, clips in by_source.items()} == {"a_44k_stereo": 3, "sub__b_16k": 2, "c_48k": 1}
    for name, clips in by_source.items():
        assert len({split for split, _ in clips}) == 1, f"{name} is split across train and validation"
    splits = {split for clips in by_source.values() for split, _ in clips}
    assert splits == {"train", "validation"}

    frames = {"a_44k_stereo": [750] * 3, "sub__b_16k": [750, 375], "c_48k": [750]}
    for name, clips in by_source.items():
        for (_, path), n_frames in zip(clips, frames[name]):
            clip = data.load_clip(path)
            assert clip.sample_rate == SR and clip.frame_rate_hz == 375.0
            assert clip.n_frames == n_frames and clip.audio.shape == (n_frames * HOP,)
            with np.load(path) as arrays:
                assert arrays["f0_confidence"].shape == (n_frames,)
                assert arrays["audio"].dtype == np.float32
            assert np.all(clip.f0_hz > 0)
            assert np.all((clip.loudness >= 0) & (clip.loudness <= 1))

    info = json.loads((out / "dataset.json").read_text())
    assert {s["file"]: s["split"] for s in info["sources"]} == {
        name: clips[0][0] for name, clips in
        (("a_44k_stereo.wav", by_source["a_44k_stereo"]), ("sub/b_16k.wav", by_source["sub__b_16k"]),
         ("c_48k.wav", by_source["c_48k"]))
    }
    assert {r["file"] for r in info["refused"]} == {"silent.wav", "corrupt.wav"}
    assert info["sample_rate"] == SR and info["frame_rate_hz"] == 375.0 and info["licence"] == "unknown"
    assert summary.clips["train"] + summary.clips["validation"] == 6
    assert data.read_dataset_info(out)["hop"] == HOP


def test_features_are_right_after_resampling(audio_dir, tmp_path):
    out = tmp_path / "dataset"
    run(audio_dir, out, validation_fraction=0.0)
    for name, f0_hz in (("a_44k_stereo", 440.0), ("sub__b_16k", 330.0), ("c_48k", 660.0)):
        for _, path in clips_by_source(out)[name]:
            with np.load(path) as clip:
                confident = clip["f0_confidence"] > 0.5
                cents = 1200 * np.log2(clip["f0_hz"][confident] / f0_hz)
                assert confident.mean() > 0.8
                assert np.all(np.abs(cents) < 40)  # the tone's vibrato is ±30 cents
                spectrum = np.abs(np.fft.rfft(clip["audio"][:32768] * np.hanning(32768)))
                peak_hz = np.argmax(spectrum) * SR / 32768
                assert peak_hz == pytest.approx(f0_hz, rel=0.03)


def test_split_is_deterministic_and_by_seed(audio_dir, tmp_path):
    run(audio_dir, tmp_path / "one", seed=3)
    run(audio_dir, tmp_path / "two", seed=3)
    one, two = clips_by_source(tmp_path / "one"), clips_by_source(tmp_path / "two")
    assert {k: [s for s, _ in v] for k, v in one.items()} == {k: [s for s, _ in v] for k, v in two.items()}
    for name in one:
        for (_, a), (_, b) in zip(one[name], two[name]):
            with np.load(a) as x, np.load(b) as y:
                for key in ("audio", "f0_hz", "loudness"):
                    np.testing.assert_array_equal(x[key], y[key])


def test_split_files_holds_out_about_the_fraction():
    names = [f"f{i}" for i in range(20)]
    splits = prep.split_files(names, [1.0] * 20, 0.1, seed=0)
    assert splits.count("validation") == 2
    assert prep.split_files(names, [1.0] * 20, 0.1, seed=0) == splits
    assert prep.split_files(["only"], [5.0], 0.5, seed=0) == ["train"]
    assert prep.split_files(["a", "b"], [1.0, 1.0], 0.9, seed=0).count("train") == 1


def test_augmentation_adds_train_clips_with_recomputed_features(audio_dir, tmp_path):
    out = tmp_path / "dataset"
    summary = run(audio_dir, out, augment=("tilt+room", "gain"), seed=1)
    train = sorted((out / "train").glob("*.npz"))
    augmented = [p for p in train if "-aug" in p.name]
    assert augmented and not list((out / "validation").glob("*-aug*.npz"))
    assert summary.augmented_clips == len(augmented)
    dry = {p.name: p for p in train if "-aug" not in p.name}
    for path in augmented:
        source, k = path.name.split("-aug")[0], path.stem.rsplit("-", 1)[1]
        with np.load(path) as aug, np.load(dry[f"{source}-{k}.npz"]) as orig:
            assert aug["audio"].shape == orig["audio"].shape
            assert not np.array_equal(aug["loudness"], orig["loudness"])
            confident = (aug["f0_confidence"] > 0.5) & (orig["f0_confidence"] > 0.5)
            cents = 1200 * np.log2(aug["f0_hz"][confident] / orig["f0_hz"][confident])
            # a gain leaves the pitch as it was; a room smears the ±30-cent vibrato a little
            assert np.median(np.abs(cents)) < (1.0 if "-aug1-gain" in path.name else 30.0)
    info = json.loads((out / "dataset.json").read_text())
    variants = [a["variant"] for s in info["sources"] for a in s.get("augmented", [])]
    assert set(variants) == {"tilt+room", "gain"}


def test_spectral_tilt_cuts_highs_and_keeps_lows():
    t = np.arange(SR) / SR
    for freq_hz, low, high in ((400.0, -1.5, 0.5), (8000.0, -40.0, -6.0)):
        x = np.sin(2 * np.pi * freq_hz * t).astype(np.float32)
        y = prep.spectral_tilt(x, SR, shelf_hz=2000.0, shelf_db=-10.0, lowpass_hz=6000.0)
        gain_db = 10 * np.log10(np.mean(y[SR // 2 :] ** 2) / np.mean(x[SR // 2 :] ** 2))
        assert low < gain_db < high


def test_room_response_has_the_asked_direct_to_reverberant_ratio():
    ir = prep.room_impulse_response(np.random.default_rng(0), SR, rt60_s=0.6, drr_db=3.0)
    assert ir.shape[0] == int(1.5 * 0.6 * SR) + 1
    tail = ir[1:].astype(np.float64)
    assert 10 * np.log10(ir[0] ** 2 / np.sum(tail**2)) == pytest.approx(3.0, abs=0.3)
    early, late = np.sum(tail[: SR // 10] ** 2), np.sum(tail[SR // 2 : SR // 2 + SR // 10] ** 2)
    assert late < early / 100  # ≥ 20 dB down after 0.5 s of a 0.6 s RT60


def test_bad_settings_are_all_listed(audio_dir, tmp_path):
    with pytest.raises(prep.PrepareError) as err:
        run(audio_dir, tmp_path / "x", frame_rate_hz=333.0, validation_fraction=1.5, augment=("echo",))
    message = str(err.value)
    assert "frame_rate_hz" in message and "validation_fraction" in message and "echo" in message
    assert isinstance(err.value, ValueError)


def test_existing_dataset_needs_overwrite(audio_dir, tmp_path):
    out = tmp_path / "dataset"
    run(audio_dir, out)
    with pytest.raises(prep.PrepareError, match="overwrite"):
        run(audio_dir, out)
    summary = run(audio_dir, out, overwrite=True, clip_s=3.0)
    assert sum(summary.clips.values()) == len(list(out.glob("*/*.npz")))


def test_every_file_refused_is_an_error(tmp_path):
    root = tmp_path / "in"
    root.mkdir()
    sf.write(root / "quiet.wav", np.zeros(SR, np.float32), SR)
    with pytest.raises(prep.PrepareError, match="quiet.wav: silent"):
        run(root, tmp_path / "out")
    with pytest.raises(prep.PrepareError, match="no audio files"):
        run(tmp_path / "out", tmp_path / "out2")


def test_provenance_and_licence_come_from_sources_json(audio_dir, tmp_path):
    (audio_dir / "SOURCES.json").write_text(json.dumps({"provenance": "rendered", "licence": "MIT", "phrases": [1]}))
    out = tmp_path / "dataset"
    run(audio_dir, out)
    info = data.read_dataset_info(out)
    assert info["provenance"] == "rendered" and info["licence"] == "MIT"
    assert "phrases" not in info["origin"]


def test_normalise_sets_the_loud_level(tmp_path):
    root = tmp_path / "in"
    root.mkdir()
    sf.write(root / "quiet.wav", tone(440.0, 2.0, SR, amplitude=0.01), SR, subtype="FLOAT")
    out = tmp_path / "dataset"
    summary = run(root, out, normalise_db=-20.0, validation_fraction=0.0)
    assert summary.files_used == 1
    with np.load(next((out / "train").glob("*.npz"))) as clip:
        loud_db = (np.percentile(clip["loudness"][clip["loudness"] > 0.1], 95) - 1.0) * 80.0
    assert loud_db == pytest.approx(-20.0, abs=1.0)


def test_brighten_lifts_the_highs_keeps_the_lows_and_never_raises_the_peak():
    t = np.arange(SR) / SR
    x = (0.5 * np.sin(2 * np.pi * 300 * t) + 0.05 * np.sin(2 * np.pi * 6000 * t)).astype(np.float32)
    assert np.array_equal(prep.brighten(x, SR, 0.0), x)
    y = prep.brighten(x, SR, 12.0)
    assert y.dtype == np.float32 and np.max(np.abs(y)) <= np.max(np.abs(x)) + 1e-6

    def level_db(signal, freq_hz):  # 1 Hz bins over the second half (past the filters' start)
        half = signal[SR // 2 :]
        return 20 * np.log10(np.abs(np.fft.rfft(half))[int(freq_hz * half.size / SR)])

    lift = (level_db(y, 6000) - level_db(x, 6000)) - (level_db(y, 300) - level_db(x, 300))
    assert 9.0 < lift < 12.5  # the shelf, less the 14 kHz pole's −1 dB


def test_brighten_is_recorded_and_applies_to_both_splits(audio_dir, tmp_path):
    plain, bright = tmp_path / "plain", tmp_path / "bright"
    run(audio_dir, plain)
    run(audio_dir, bright, brighten_db=12.0)
    info = json.loads((bright / "dataset.json").read_text())
    assert info["settings"]["brighten_db"] == 12.0
    assert info["provenance"].endswith("Brightened by a +12 dB shelf above 2500 Hz.")
    for split in prep.SPLITS:
        for path in sorted((plain / split).glob("*.npz")):
            with np.load(path) as a, np.load(bright / split / path.name) as b:
                assert not np.array_equal(a["audio"], b["audio"])
    with pytest.raises(prep.PrepareError, match=r"brighten_db: 40.0 is not in \[-24, 24\] dB"):
        run(audio_dir, tmp_path / "x", brighten_db=40.0)


def test_eq_curve_parses_interpolates_in_log_frequency_and_names_bad_points():
    points = prep.parse_eq("1000:0, 4000:-12")
    assert points == ((1000.0, 0.0), (4000.0, -12.0))
    gains = prep.eq_gain_db([100.0, 1000.0, 2000.0, 4000.0, 16000.0], points)
    np.testing.assert_allclose(gains, [0.0, 0.0, -6.0, -12.0, -12.0], atol=1e-9)  # an octave is half way
    assert prep.parse_eq("") == ()
    for bad, message in (("1000", "not HZ:DB"), ("2000:0,1000:-3", "must increase"), ("1000:-50", "±40 dB"),
                         ("0:3", "positive frequency"), ("1000:nan", "finite gain")):
        with pytest.raises(ValueError, match=message):
            prep.parse_eq(bad)


def test_apply_eq_follows_the_curve_without_delay():
    t = np.arange(2 * SR) / SR
    x = (0.3 * np.sin(2 * np.pi * 500 * t) + 0.3 * np.sin(2 * np.pi * 6000 * t)).astype(np.float32)
    y = prep.apply_eq(x, SR, prep.parse_eq("1000:0,4000:-12"))
    assert y.shape == x.shape and y.dtype == np.float32
    spectrum_x, spectrum_y = (np.abs(np.fft.rfft(s[SR // 2 : 3 * SR // 2])) for s in (x, y))
    for freq_hz, expected_db in ((500, 0.0), (6000, -12.0)):
        k = int(freq_hz * SR / SR)
        assert 20 * np.log10(spectrum_y[k] / spectrum_x[k]) == pytest.approx(expected_db, abs=0.3)
    # zero phase: the 500 Hz component stays where it was (no delay)
    low = prep.apply_eq(0.3 * np.sin(2 * np.pi * 500 * t).astype(np.float32), SR, prep.parse_eq("1000:0,4000:-12"))
    middle = slice(SR // 2, 3 * SR // 2)
    np.testing.assert_allclose(low[middle], 0.3 * np.sin(2 * np.pi * 500 * t[middle]), atol=3e-3)
    assert np.array_equal(prep.apply_eq(x, SR, ()), x)


def test_pitch_is_tracked_before_the_eq_and_the_eq_is_recorded(audio_dir, tmp_path, monkeypatch):
    tracked = []
    real_track = prep.feat.track_f0

    def spy(audio, *args, **kwargs):
        tracked.append(np.asarray(audio).copy())
        return real_track(audio, *args, **kwargs)

    monkeypatch.setattr(prep.feat, "track_f0", spy)
    out = tmp_path / "voiced"
    run(audio_dir, out, eq="1000:0,3000:-20", augment=("gain",))
    info = json.loads((out / "dataset.json").read_text())
    assert info["settings"]["eq"] == [[1000.0, 0.0], [3000.0, -20.0]]
    assert "Voiced with the EQ 1000 Hz +0 dB, 3000 Hz -20 dB." in info["provenance"]
    # every signal the tracker saw is a recording as read, untouched by the EQ (augmented copies too)
    raw = [prep.read_audio(audio_dir / name)[0] for name in ("a_44k_stereo.wav", "sub/b_16k.wav", "c_48k.wav")]
    assert len(tracked) >= 5  # 3 files (+ the silent one) and the gain copies of the training files
    for audio in tracked:
        assert not np.any(audio) or any(a.shape == audio.shape and np.array_equal(a, audio) for a in raw)
    with pytest.raises(prep.PrepareError, match="eq: "):
        run(audio_dir, tmp_path / "x", eq="3000:0,1000:1")


def test_curves_add():
    combined = prep.combine_eq(["1000:0,4000:6", "1000:0,2000:-2,4000:-10"])
    assert combined == ((1000.0, 0.0), (2000.0, 1.0), (4000.0, -4.0))
    assert prep.combine_eq(["1000:3"]) == ((1000.0, 3.0),) and prep.combine_eq([]) == ()
