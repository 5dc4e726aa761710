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

MAX_BYTES = 2 * 1024 * 1024
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
    assert "MIT" in meta["licence"]
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


def test_resynthesises_real_violin_recordings_better_than_a_plain_tone(paths, violin_path):
    """Real violin notes it never trained on (VSCO 2 CE, tests/fixtures/real_violin), from their own
    f0 and loudness through the runtime engine: closer than the TestFixture tone in spectral
    distance and in tone colour (octave-band balance), and at about the right level."""
    from ddsp_device.train.evaluate import evaluate

    real = paths.root / "tests" / "fixtures" / "real_violin"
    violin = evaluate(violin_path, real)
    fixture = evaluate(paths.demo, real)
    assert [c.name for c in violin.clips] == ["A3", "A6", "E5"]
    for ours, plain in zip(violin.clips, fixture.clips):
        assert ours.spectral_distance < 0.85 * plain.spectral_distance, ours.name
        assert ours.balance_error_db < plain.balance_error_db, ours.name  # closer in tone colour
        assert ours.loudness_error_db < 6.0, ours.name
    assert violin.mean_loudness_error_db < 4.0 and violin.mean_balance_error_db < 3.0, violin.summary()
