"""Small end-to-end run of the toolchain: synthetic clips → fit (and resume) → int8 export → the
box loads the model, the contract holds, and the engine plays it.

Needs TensorFlow (skipped without). The exported model is loaded by the box's own loader in this
environment when it has a TFLite runtime, and in every Python listed in
``$DDSP_DEVICE_TEST_PYTHONS`` (``os.pathsep``-separated; default: the repository's ``.venv`` and
``.venv-litert`` where they exist), so both tflite-runtime 2.14 and ai-edge-litert get to say no.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
pytest.importorskip("keras")

from ddsp_device.model.metadata import read_metadata  # noqa: E402
from ddsp_device.train import data, export, fit, model  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SR, FRAME_RATE, HOP = 48000, 375.0, 128
UNITS = 16


def synthetic_clip(rng, seconds):
    """A band-limited 1/k² harmonic tone with a glide, vibrato and a swelling loudness."""
    n_frames = int(seconds * FRAME_RATE)
    t = np.arange(n_frames) / FRAME_RATE
    f0 = rng.uniform(200.0, 400.0) * 2.0 ** (t / seconds) * (1.0 + 0.01 * np.sin(2 * np.pi * 5.0 * t))
    loudness = np.clip(0.45 + 0.35 * np.sin(2 * np.pi * t / seconds - 1.0), 0.0, 1.0)
    loudness[: int(0.05 * FRAME_RATE)] = 0.0
    s = np.arange(n_frames * HOP)
    f0_s = np.interp(s, np.arange(n_frames) * HOP, f0)
    gain = 10.0 ** ((np.interp(s, np.arange(n_frames) * HOP, loudness) - 1.0) * 80.0 / 20.0)
    phase = np.cumsum(2 * np.pi * f0_s / SR)
    audio = np.zeros_like(phase)
    for k in range(1, 40):
        audio += np.where(k * f0_s < SR / 2, np.sin(k * phase) / k**2, 0.0)
    audio = 0.5 * gain * audio + 1e-3 * gain * rng.uniform(-1, 1, audio.shape)
    return audio.astype(np.float32), f0.astype(np.float32), loudness.astype(np.float32)


def check_pythons():
    listed = os.environ.get("DDSP_DEVICE_TEST_PYTHONS")
    if listed is not None:
        candidates = [p for p in listed.split(os.pathsep) if p]
    else:
        candidates = [str(ROOT / venv / "bin" / "python") for venv in (".venv", ".venv-litert")]
    # a venv's python is a symlink to the base interpreter: compare the environments, not the files
    here = os.path.realpath(sys.prefix)
    return [p for p in candidates if os.path.exists(p) and os.path.realpath(Path(p).parent.parent) != here]


def runtime_here() -> bool:
    from ddsp_device.model.runtime import import_interpreter

    try:
        import_interpreter("auto")
        return True
    except Exception:  # noqa: BLE001 - any failure means: not here
        return False


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    started = time.monotonic()
    root = tmp_path_factory.mktemp("train")
    dataset = root / "dataset"
    rng = np.random.default_rng(0)
    for split, seconds in (("train", (1.5, 1.5)), ("validation", (1.0,))):
        (dataset / split).mkdir(parents=True)
        for i, length in enumerate(seconds):
            data.save_clip(dataset / split / f"clip{i}.npz", *synthetic_clip(rng, length), SR, FRAME_RATE)
    (dataset / "dataset.json").write_text(json.dumps({"provenance": "synthetic test tones", "licence": "CC0-1.0"}))
    second_source = root / "second"  # a second source mixed in by weight, as the Violin's recipe does
    (second_source / "train").mkdir(parents=True)
    data.save_clip(second_source / "train" / "clip0.npz", *synthetic_clip(rng, 1.5), SR, FRAME_RATE)
    (second_source / "dataset.json").write_text(json.dumps({"provenance": "more tones", "licence": "CC-BY-3.0"}))

    config = model.DecoderConfig(hidden_units=16, gru_units=UNITS, input_layers=1, output_layers=1)
    settings = dict(batch_size=2, example_frames=128, log_every=2, checkpoint_every=3, fft_sizes=(1024, 256, 64))
    sources = [dataset, f"{second_source}@0.5"]
    first = fit.fit(sources, root / "run", fit.FitSettings(steps=3, **settings), config=config)
    second = fit.fit(sources, root / "run", fit.FitSettings(steps=6, **settings))
    pythons = check_pythons()
    if not pythons and not runtime_here():
        pytest.skip("no TFLite runtime here and no other Python to check the model with")
    report = export.export(root / "run", root / "Tiny.tflite", check_pythons=pythons, validation_frames=300)
    return {
        "root": root,
        "dataset": dataset,
        "first": first,
        "second": second,
        "report": report,
        "path": root / "Tiny.tflite",
        "pythons": pythons,
        "setup_s": time.monotonic() - started,
    }


def test_fit_trains_checkpoints_and_resumes(run):
    first, second = run["first"], run["second"]
    assert first.step == 3 and first.resumed_from == 0
    assert second.step == 6 and second.resumed_from == 3
    assert math.isfinite(second.train_loss) and math.isfinite(second.validation_loss)
    assert [r["step"] for r in second.history] == [6]
    run_json = json.loads((run["root"] / "run" / "run.json").read_text())
    assert run_json["decoder"]["gru_units"] == UNITS
    assert (run_json["sample_rate"], run_json["frame_rate_hz"], run_json["hop"]) == (SR, FRAME_RATE, HOP)
    assert [(Path(d["path"]).name, d["weight"]) for d in run_json["datasets"]] == [("dataset", 1.0), ("second", 0.5)]


def test_export_is_a_state_model_with_metadata(run):
    report = run["report"]
    assert report.checks and all(check.ok for check in report.checks), report.summary()
    assert report.float_ops == ["POW"], report.float_ops  # everything else runs in int8
    assert not any(op.startswith(("WHILE", "LOG ", "EXP ")) for op in report.ops), report.ops
    assert report.size_bytes < 2 * 1024 * 1024
    meta = read_metadata(run["path"])
    assert meta["name"] == "Tiny"
    assert (meta["sample_rate_hz"], meta["frame_rate_hz"], meta["window_frames"]) == (SR, FRAME_RATE, 1)
    assert meta["licence"] == "CC0-1.0; CC-BY-3.0"
    assert meta["provenance"] == "[1 of the training crops] synthetic test tones [0.5 of the training crops] more tones"
    assert meta["f0_min_hz"] < 200.0 and meta["f0_max_hz"] > 400.0
    assert meta["exported_at"].endswith("+00:00")
    for check in report.checks:
        # the quantised model follows the float one (a barely trained model: loose bounds)
        assert check.rel_rms["harmonic_amps"] < 0.1, check
        assert check.rel_rms["harmonic_dist"] < 0.1, check


def _load_and_play(python, path, f0_hz, loudness, tmp_path):
    """Run the runtime check (contract + 1 s through the Engine) here or in another Python."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    inputs, outputs = tmp_path / "in.npz", tmp_path / "out.npz"
    np.savez(inputs, f0_hz=f0_hz, loudness=loudness)
    args = [str(path), str(inputs), str(outputs), "--engine-seconds", "1.0"]
    if python is None:
        from ddsp_device.train import runtime_check

        assert runtime_check.main(args) == 0
    else:
        env = dict(os.environ, PYTHONPATH=str(ROOT / "device"))
        env.pop("DDSP_DEVICE_RUNTIME", None)  # each environment uses the runtime it has
        done = subprocess.run(
            [python, "-m", "ddsp_device.train.runtime_check", *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
            check=False,
        )
        assert done.returncode == 0, done.stderr
    with np.load(outputs) as result:
        return {key: result[key] for key in result.files}


def test_the_box_loads_and_plays_it(run, tmp_path):
    places = [None] if runtime_here() else []
    places += run["pythons"]
    clip = data.load_clip(run["dataset"] / "validation" / "clip0.npz")
    runtimes = set()
    for i, python in enumerate(places):
        result = _load_and_play(python, run["path"], clip.f0_hz, clip.loudness, tmp_path / f"p{i}")
        runtimes.add(str(result["runtime"]))
        assert int(result["window_frames"]) == 1 and int(result["state_size"]) == UNITS
        dtypes = dict(item.split(":") for item in result["tensor_dtypes"])
        assert set(dtypes) == {
            "f0_hz",
            "loudness",
            "state_in",
            "harmonic_amps",
            "harmonic_dist",
            "noise_mags",
            "state_out",
        }
        n = clip.n_frames
        assert result["harmonic_amps"].shape == (n, 64) and result["noise_mags"].shape == (n, 65)
        audio = result["engine_audio"]
        assert audio.shape == (SR,)
        assert np.all(np.isfinite(audio))
        assert np.sqrt(np.mean(audio**2)) > 1e-3  # not silent
        assert np.max(np.abs(audio)) <= 10 ** (-0.3 / 20) + 1e-6  # the limiter's ceiling
    assert runtimes, "no runtime loaded the model"
    print("runtimes checked:", sorted(runtimes), places)


def test_setup_is_quick(run):
    """The whole pipeline above (data, 6 steps, export, checks) stays a small test."""
    assert run["setup_s"] < 120, run["setup_s"]
