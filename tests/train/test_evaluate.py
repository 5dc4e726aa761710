"""``evaluate``: resynthesis through the runtime engine, the baselines, the metrics, PNGs and report.json.

The dataset is rendered by the runtime engine itself with ``models/TestFixture.tflite`` (dry), so
TestFixture resynthesises it almost exactly and another model (``float_window``, 250 Hz) does not.
The metrics and the baselines have their own tests (``test_metrics.py``, ``test_baselines.py``).
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
from ddsp_device.train.baselines import SoundfontBaseline  # noqa: E402
from ddsp_device.train.evaluate import evaluate  # noqa: E402
from ddsp_device.train.violin_data import RenderError  # noqa: E402

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


def soundfont_available() -> bool:
    try:
        SoundfontBaseline()
        return True
    except RenderError:
        return False


def test_own_renders_close_other_model_far(dataset, tmp_path):
    own = evaluate(FIXTURE, dataset, out_dir=tmp_path / "own")
    other = evaluate(OTHER, dataset, out_dir=tmp_path / "other", max_clips=1, baselines="sawtooth")
    assert [c.name for c in own.clips] == ["clip0", "clip1"] and len(other.clips) == 1
    systems = ["model", "sawtooth"] + (["soundfont"] if soundfont_available() else [])
    assert own.systems == systems and other.systems == ["model", "sawtooth"]
    for report in (own, other):
        for c in report.clips:
            assert list(c.scores) == report.systems
            for scores in c.scores.values():
                assert all(math.isfinite(v) for v in (scores.spectral_distance, scores.lsd_db,
                                                      scores.loudness_error_db, scores.balance_error_db))
    assert own.mean_spectral_distance < 0.05, own.summary()
    assert own.mean_lsd_db < 0.1, own.summary()
    assert own.mean_loudness_error_db < 0.5, own.summary()
    assert own.mean_balance_error_db < 0.1 and len(own.mean_balance_db) == 5, own.summary()
    assert other.mean_spectral_distance > 10 * own.mean_spectral_distance + 0.5, (own.summary(), other.summary())
    assert own.mean("lsd_db", "sawtooth") > 3.0 and own.ratio_to_sawtooth() < 5.0, own.summary()
    assert other.ratio_to_sawtooth() == 100.0 * other.mean_lsd_db / other.mean("lsd_db", "sawtooth")

    pngs = sorted((tmp_path / "own").glob("*.png"))
    assert len(pngs) == 2 and all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    saved = json.loads((tmp_path / "own" / "report.json").read_text())
    assert saved["model"] == "TestFixture" and saved["split"] == "validation" and saved["systems"] == systems
    assert len(saved["clips"]) == 2 and math.isclose(saved["mean_spectral_distance"], own.mean_spectral_distance)
    assert math.isclose(saved["mean_balance_error_db"], own.mean_balance_error_db)
    clip = saved["clips"][0]
    for system in systems:
        assert set(clip[system]) >= {"spectral_distance", "lsd_db", "loudness_error_db", "balance_db",
                                     "balance_error_db"} and len(clip[system]["balance_db"]) == 5
        assert math.isclose(saved["summary"][system]["lsd_db"], own.mean("lsd_db", system))
    assert math.isclose(clip["model"]["ratio_to_sawtooth"],
                        100 * clip["model"]["lsd_db"] / clip["sawtooth"]["lsd_db"])
    assert math.isclose(saved["ratio_to_sawtooth"], own.ratio_to_sawtooth())
    assert saved["summary"]["model"]["ratio_to_sawtooth"] == saved["ratio_to_sawtooth"]
    assert saved["settings"]["lsd_floor_db"] == 60.0


def test_split_all_and_no_baselines(dataset):
    report = evaluate(FIXTURE, dataset, split="all", baselines="none")
    assert [c.name for c in report.clips] == ["train/clip0", "validation/clip0", "validation/clip1"]
    assert report.systems == ["model"] and report.ratio_to_sawtooth() is None
    assert "ratio_to_sawtooth" not in report.to_dict()["summary"]["model"]
    with pytest.raises(ValueError, match="unknown 'square'"):
        evaluate(FIXTURE, dataset, baselines="sawtooth,square")


def test_a_missing_soundfont_is_skipped_with_one_warning(dataset, tmp_path, caplog):
    report = evaluate(FIXTURE, dataset, max_clips=1, soundfont=tmp_path / "none.sf2", out_dir=tmp_path / "out")
    reason = report.skipped["soundfont"]  # the soundfont, or FluidSynth itself where it is not installed
    assert report.systems == ["model", "sawtooth"] and ("none.sf2" in reason or "fluidsynth not found" in reason)
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "soundfont baseline skipped" in warnings[0].getMessage()
    assert "soundfont skipped" in report.summary()
    saved = json.loads((tmp_path / "out" / "report.json").read_text())
    assert "soundfont" not in saved["clips"][0] and saved["skipped"]["soundfont"] == reason


def test_cli(dataset, tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["train", "evaluate", str(FIXTURE), str(dataset), "--split", "train", "--out", str(out),
                 "--baselines", "sawtooth"]) == 0
    printed = capsys.readouterr().out
    assert "clip0" in printed and "mean" in printed and str(out) in printed
    assert "LSD dB" in printed and "sawtooth" in printed and "soundfont" not in printed
    assert "LSD as a percentage of the sawtooth's: model" in printed
    assert (out / "report.json").exists() and len(list(out.glob("*.png"))) == 1

    out = tmp_path / "all"
    assert main(["train", "evaluate", str(FIXTURE), str(dataset), "--split", "all", "--out", str(out),
                 "--baselines", "none", "--max-plots", "2"]) == 0
    printed = capsys.readouterr().out
    assert "validation/clip1" in printed and "sawtooth" not in printed
    assert sorted(p.name for p in out.glob("*.png")) == ["000-train-clip0.png", "001-validation-clip0.png"]
    for bad in (["--baselines", "square"], ["--program", "0"]):
        with pytest.raises(SystemExit) as exit_info:
            main(["train", "evaluate", str(FIXTURE), str(dataset), *bad])
        assert exit_info.value.code == 2


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
