"""The bundled instrument, ``models/Violin.tflite``: the shipped file itself, on this runtime.

``make test`` runs these under tflite-runtime 2.14 (``.venv``) and under ai-edge-litert
(``.venv-litert``), so together the two runs prove that both runtimes load and play the file.
"""

from __future__ import annotations

import numpy as np
import pytest

from ddsp_device.engine import Engine, EngineSettings
from ddsp_device.model import load_model
from ddsp_device.model.metadata import read_metadata
from ddsp_device.performance import midi_to_hz
from ddsp_device.train.runtime_check import stream_outputs

pytestmark = pytest.mark.runtime

MAX_BYTES = 200 * 1024
G3_HZ, E7_HZ = midi_to_hz(55), midi_to_hz(100)


@pytest.fixture(scope="module")
def violin_path(paths):
    return paths.root / "models" / "Violin.tflite"


@pytest.fixture(scope="module")
def violin(violin_path):
    with load_model(violin_path) as model:
        yield model


def stream(path, f0_hz, loudness):
    """``(amps [F], dist [F, 64], noise [F, 65])`` streamed frame by frame from a reset, as the engine does."""
    out = stream_outputs(str(path), np.asarray(f0_hz), np.asarray(loudness))
    return out["harmonic_amps"][:, 0].astype(np.float64), out["harmonic_dist"], out["noise_mags"]


def test_file_is_small_and_carries_its_provenance(violin_path):
    assert violin_path.stat().st_size <= MAX_BYTES
    meta = read_metadata(violin_path)
    assert meta["name"] == "Violin"
    assert meta["sample_rate_hz"] == 48000 and meta["frame_rate_hz"] == 375.0 and meta["window_frames"] == 1
    # the timbre comes from real violins; the soundfont only adds articulation and range
    assert "CC-BY-3.0" in meta["licence"] and "MIT" in meta["licence"]
    assert "Bach Violin Dataset" in meta["provenance"] and "Versilian Studios" in meta["provenance"]
    assert "FluidR3" in meta["provenance"] or "Fluid R3" in meta["provenance"]
    assert meta["training_steps"] > 1000


def test_loads_with_fixed_shapes_and_covers_the_violin_range(violin):
    info = violin.info
    assert info.metadata_source == "metadata.json"
    assert (info.window_frames, info.n_harmonics, info.n_noise_bands) == (1, 64, 65)
    assert info.state_size > 0
    assert info.f0_min_hz <= G3_HZ * 0.95 and info.f0_max_hz >= E7_HZ
    assert not info.quantised_inputs and not info.quantised_outputs  # int8 body, float edges


def test_louder_bowing_gives_a_louder_tone(violin_path):
    """A crescendo on A4: the harmonic amplitude follows loudness (a trained model, not a constant)."""
    n = 750  # 2 s at 375 Hz
    loudness = np.linspace(0.2, 0.85, n)
    amps, dist, noise = stream(violin_path, np.full(n, 440.0), loudness)
    assert np.all(np.isfinite(amps)) and np.all(np.isfinite(dist)) and np.all(np.isfinite(noise))
    assert np.all((amps >= 0) & (amps <= 1))
    amps_db = 20 * np.log10(np.maximum(amps, 1e-6))
    assert np.corrcoef(amps_db[100:], loudness[100:])[0, 1] > 0.9
    assert amps_db[-50:].mean() - amps_db[100:150].mean() > 15.0  # 52 dB of loudness span


def test_timbre_depends_on_pitch(violin_path):
    """The harmonic distribution of G3 differs from that of E6 (not one fixed spectrum)."""
    n = 375
    low = stream(violin_path, np.full(n, G3_HZ), np.full(n, 0.6))[1][-1]
    high = stream(violin_path, np.full(n, midi_to_hz(88)), np.full(n, 0.6))[1][-1]
    low_db, high_db = (20 * np.log10(np.maximum(d / d.sum(), 1e-9))[:8] for d in (low, high))
    assert np.max(np.abs(low_db - high_db)) > 3.0


def test_engine_plays_it_in_tune(violin_path):
    """1 s of A4 through the engine: finite, audible, not clipping, its strongest partial a harmonic of 440 Hz."""
    with Engine(load_model(violin_path), EngineSettings()) as engine:
        audio = engine.render_new(engine.sample_rate, lambda frame: (440.0, 0.7))
    tail = audio[engine.sample_rate // 4 :]
    assert np.all(np.isfinite(tail))
    peak_dbfs = 20 * np.log10(np.max(np.abs(tail)))
    assert -40.0 < peak_dbfs < -0.5
    spectrum = np.abs(np.fft.rfft(tail * np.hanning(tail.size), 1 << 18))
    peak_hz = np.argmax(spectrum) * engine.sample_rate / (1 << 18)
    k = max(1, round(peak_hz / 440.0))
    assert abs(1200 * np.log2(peak_hz / (k * 440.0))) < 5.0


def voiced_fixtures(root, out_dir):
    """The real-violin fixtures (close-miked VSCO 2 CE notes) voiced to the listening distance by
    the curve the Violin's recipe measured and trained with (``models/violin-run/distance-eq.json``),
    as a dataset in ``out_dir``: zero-phase EQ by FFT, loudness measured again, f0 kept."""
    import json

    from ddsp_device.train import features as feat
    from ddsp_device.train.data import load_clip, save_clip
    from ddsp_device.train.prepare import eq_gain_db

    points = json.loads((root / "models" / "violin-run" / "distance-eq.json").read_text())["points"]
    (out_dir / "validation").mkdir(parents=True)
    for path in sorted((root / "tests" / "fixtures" / "real_violin" / "validation").glob("*.npz")):
        clip = load_clip(path)
        spectrum = np.fft.rfft(clip.audio.astype(np.float64))
        gains = 10.0 ** (eq_gain_db(np.fft.rfftfreq(clip.audio.size, 1.0 / clip.sample_rate), points) / 20.0)
        audio = np.fft.irfft(spectrum * gains, clip.audio.size).astype(np.float32)
        loudness = feat.normalise_loudness(feat.loudness_db(audio, clip.sample_rate, clip.hop))[: clip.n_frames]
        save_clip(out_dir / "validation" / path.name, audio, clip.f0_hz, loudness, clip.sample_rate,
                  clip.frame_rate_hz)
    return out_dir


def test_resynthesises_real_violin_notes_far_closer_than_a_sawtooth(paths, violin_path, tmp_path):
    """Three real violin notes from the training set's close-miked source (VSCO 2 CE,
    tests/fixtures/real_violin), voiced to the listening distance as the recipe voiced them,
    resynthesised from their own f0 and loudness through the runtime engine: far closer than a
    band-limited sawtooth driven by the same controls (floor-limited LSD), closer in tone colour,
    and at about the right level. The independent judgement, on performances it never heard, is
    the recipe's (models/README.md); this guards the shipped file on both runtimes."""
    from ddsp_device.train.evaluate import evaluate

    dataset = voiced_fixtures(paths.root, tmp_path / "voiced")
    report = evaluate(violin_path, dataset, baselines=("sawtooth",))
    assert [c.name for c in report.clips] == ["A3", "A6", "E5"]
    for clip in report.clips:
        ours, saw = clip.scores["model"], clip.scores["sawtooth"]
        assert ours.lsd_db < 0.6 * saw.lsd_db, (clip.name, ours.lsd_db, saw.lsd_db)
        assert ours.balance_error_db < saw.balance_error_db, clip.name  # closer in tone colour
        assert ours.loudness_error_db < 6.0, clip.name
    assert report.mean_loudness_error_db < 4.0, report.summary()
