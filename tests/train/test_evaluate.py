"""``evaluate``: resynthesis through the runtime engine, spectral distance, PNGs and report.json.

The dataset is rendered by the runtime engine itself with ``models/TestFixture.tflite`` (dry), so
TestFixture resynthesises it almost exactly and another model (``float_window``, 250 Hz) does not.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from ddsp_device.cli import main  # noqa: E402
from ddsp_device.engine import Engine, EngineSettings  # noqa: E402
from ddsp_device.model import load_model  # noqa: E402
from ddsp_device.train import data  # noqa: E402
from ddsp_device.train.evaluate import band_balance_db, evaluate, spectral_distance  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "models" / "TestFixture.tflite"
OTHER = ROOT / "tests" / "fixtures" / "models" / "float_window.tflite"
SR, FRAME_RATE, HOP = 48000, 375.0, 128


def render_fixture(f0, loudness):
    model = load_model(FIXTURE)
    with Engine(model, EngineSettings(sample_rate=SR, reverb_mix=0.0, max_period=HOP)) as engine:
        out = np.empty(len(f0) * HOP, np.float32)
        controls = lambda n: (float(f0[min(n, len(f0) - 1)]), float(loudness[min(n, len(f0) - 1)]))  # noqa: E731
        for start in range(0, out.shape[0], HOP):
            engine.render(out[start : start + HOP], controls)
    return out


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("dataset")
    rng = np.random.default_rng(0)
    for split, n_clips in (("train", 1), ("validation", 2)):
        (root / split).mkdir()
        for i in range(n_clips):
            n = int(0.8 * FRAME_RATE)
            t = np.arange(n) / FRAME_RATE
            f0 = (rng.uniform(220, 440) * 2 ** (t / 2) * (1 + 0.01 * np.sin(2 * np.pi * 5 * t))).astype(np.float32)
            loud = np.clip(0.5 + 0.3 * np.sin(2 * np.pi * t / 0.8), 0, 1).astype(np.float32)
            loud[:10] = 0.0
            data.save_clip(root / split / f"clip{i}.npz", render_fixture(f0, loud), f0, loud, SR, FRAME_RATE)
    return root


def test_spectral_distance_definition():
    rng = np.random.default_rng(1)
    a = rng.normal(size=5000).astype(np.float32)
    assert spectral_distance(a, a) == 0.0
    assert spectral_distance(a, 0.5 * a) > 0.5  # the log term alone gives 6 · log 2


def test_band_balance_sees_a_dull_copy_and_ignores_the_level():
    rng = np.random.default_rng(2)
    t = np.arange(SR) / SR
    tone = sum(np.sin(2 * np.pi * 220 * k * t) / k for k in range(1, 60)).astype(np.float32)
    tone += 0.001 * rng.normal(size=SR).astype(np.float32)
    assert np.allclose(band_balance_db(tone, 0.25 * tone, SR), 0.0, atol=1e-3)  # a level change is no colour
    spectrum = np.fft.rfft(tone)
    freqs = np.fft.rfftfreq(SR, 1 / SR)
    dull = np.fft.irfft(spectrum * np.where(freqs >= 4000, 0.1, 1.0), SR).astype(np.float32)  # −20 dB above 4 kHz
    balance = band_balance_db(tone, dull, SR)
    assert abs(balance[0]) < 1.0 and abs(balance[1]) < 1.0
    assert -21.0 < balance[3] < -19.0 and -21.0 < balance[4] < -19.0


def test_own_renders_close_other_model_far(dataset, tmp_path):
    own = evaluate(FIXTURE, dataset, out_dir=tmp_path / "own")
    other = evaluate(OTHER, dataset, out_dir=tmp_path / "other", max_clips=1)
    assert [c.name for c in own.clips] == ["clip0", "clip1"] and len(other.clips) == 1
    for report in (own, other):
        for c in report.clips:
            assert math.isfinite(c.spectral_distance) and math.isfinite(c.loudness_error_db)
    assert own.mean_spectral_distance < 0.05, own.summary()
    assert own.mean_loudness_error_db < 0.5, own.summary()
    assert own.mean_balance_error_db < 0.1 and len(own.mean_balance_db) == 5, own.summary()
    assert other.mean_spectral_distance > 10 * own.mean_spectral_distance + 0.5, (own.summary(), other.summary())

    pngs = sorted((tmp_path / "own").glob("*.png"))
    assert len(pngs) == 2 and all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    saved = json.loads((tmp_path / "own" / "report.json").read_text())
    assert saved["model"] == "TestFixture" and saved["split"] == "validation"
    assert len(saved["clips"]) == 2 and math.isclose(saved["mean_spectral_distance"], own.mean_spectral_distance)
    assert math.isclose(saved["mean_balance_error_db"], own.mean_balance_error_db)
    assert len(saved["clips"][0]["balance_db"]) == 5 and "balance_error_db" in saved["clips"][0]


def test_cli(dataset, tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["train", "evaluate", str(FIXTURE), str(dataset), "--split", "train", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "clip0" in printed and "mean" in printed and str(out) in printed
    assert (out / "report.json").exists() and len(list(out.glob("*.png"))) == 1


def test_missing_dataset_and_bad_model(dataset, tmp_path, capsys):
    with pytest.raises(data.DatasetError, match="no such dataset"):
        evaluate(FIXTURE, tmp_path / "nowhere")
    assert main(["train", "evaluate", str(FIXTURE), str(tmp_path / "nowhere"), "--out", str(tmp_path / "x")]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "nowhere" in err[0]

    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"not a model")
    assert main(["train", "evaluate", str(bad), str(dataset), "--out", str(tmp_path / "y")]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "bad.tflite" in err[0]
