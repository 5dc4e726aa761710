"""Export a trained run to a ddsp-device model file (``models/README.md``) and check it.

    from ddsp_device.train.export import export
    report = export("RUN_DIR", "models/Violin.tflite", check_pythons=[".venv/bin/python"])
    print(report.summary())

What it writes: a **state model** (``T = 1``, ``state_in`` / ``state_out`` ``[1, units]``), fixed
shapes, the contract's tensor names, only TFLite builtins, with ``metadata.json`` appended
(:func:`ddsp_device.model.metadata.append_metadata`).

Quantisation (``int8=True``, the default): post-training integer quantisation calibrated on the
training data's frames — ``f0_hz``, ``loudness`` and the GRU states the sequence model reaches
on them. Every dense layer and GRU gate runs in int8. The ``POW`` ops at the edges of the graph
(``f0_hz^(1/3)`` at the input, ``0.1^attenuation`` at each output, see
:mod:`ddsp_device.train.model`) have no int8 kernel and stay float, so the model's inputs and
outputs are float32 (the contract allows either): this keeps pitch resolution at the input and
120 dB of dynamic range in ≈ 0.5 dB steps at the outputs, where int8 tensors would give
≈ 12 Hz steps and ≈ 48 dB. ``state_in`` / ``state_out`` are float32 too (quantised inside).

The export verifies itself before the file lands: it streams a validation clip through the box's
own loader (:func:`ddsp_device.model.load_model`) in this environment, when a TFLite runtime is
importable here, and in each Python of ``check_pythons`` (e.g. the tflite-runtime 2.14 venv), and
reports the quantised-versus-float error. A runtime that refuses the model fails the export.
"""

from __future__ import annotations

import datetime
import logging
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import tensorflow as tf

import ddsp_device
from ddsp_device.atomicfile import atomic_write_bytes
from ddsp_device.errors import ModelError, RuntimeUnavailableError
from ddsp_device.model.flatbuffer import check_flatbuffer
from ddsp_device.model.metadata import append_metadata
from ddsp_device.train import data as data_mod
from ddsp_device.train.fit import restore_decoder
from ddsp_device.train.losses import multiscale_spectral_loss
from ddsp_device.train.model import DecoderConfig, build_state_model, model_f0
from ddsp_device.train.runtime_check import OUTPUTS, stream_outputs
from ddsp_device.train.synth_tf import synthesize

log = logging.getLogger(__name__)

CALIBRATION_FRAMES = 2000
#: Clips the calibration runs the sequence model over (drawn at random when there are more).
CALIBRATION_CLIPS = 64
VALIDATION_FRAMES = 1500  # 4 s at 375 Hz
MODEL_FILE_MODE = 0o644


#: The runtime checked inside the exporting (TensorFlow) process.
IN_PROCESS_RUNTIME = "ai-edge-litert"


class ExportError(ModelError):
    """The exported model failed its own checks (a runtime refused it, Flex ops, …)."""


@dataclass
class RuntimeCheck:
    """One environment's verdict: loaded or not, and its outputs' error against float."""

    where: str  # "this environment" or the Python executable
    runtime: str = ""
    ok: bool = False
    error: str = ""
    rel_rms: dict = field(default_factory=dict)  # output -> RMS(q − f) / RMS(f)
    max_abs: dict = field(default_factory=dict)  # output -> max |q − f|
    spectral_distance: Optional[float] = None  # int8 audio vs float audio (same noise)


@dataclass
class ExportReport:
    path: str
    size_bytes: int
    int8: bool
    ops: list  # ["FULLY_CONNECTED v5", ...]
    float_ops: list  # builtin ops that compute in float32 (for int8 models)
    metadata: dict
    validation_frames: int
    float_spectral_distance: Optional[float]  # float model audio vs the clip's own audio
    checks: list = field(default_factory=list)

    def summary(self) -> str:
        lines = [
            (
                f"{self.path}: {self.size_bytes / 1024:.0f} KiB, {'int8' if self.int8 else 'float32'}, "
                f"state model T=1, S={self.metadata.get('state_size', '?')}"
            ),
            f"  ops: {', '.join(self.ops)}",
        ]
        if self.float_ops:
            lines.append(f"  float ops: {', '.join(self.float_ops)}")
        if self.float_spectral_distance is not None:
            lines.append(
                f"  validation ({self.validation_frames} frames): float model vs recording, "
                f"spectral distance {self.float_spectral_distance:.3f}"
            )
        for check in self.checks:
            if not check.ok:
                lines.append(f"  {check.where}: FAILED: {check.error}")
                continue
            errors = ", ".join(f"{name} {100 * value:.2f}%" for name, value in check.rel_rms.items())
            distance = (
                "" if check.spectral_distance is None else f"; spectral distance to float {check.spectral_distance:.4f}"
            )
            lines.append(f"  {check.where} ({check.runtime}): loads; RMS error vs float: {errors}{distance}")
        return "\n".join(lines)


def _op_names() -> dict:
    try:
        from tensorflow.lite.python import schema_py_generated as schema

        return {value: name for name, value in vars(schema.BuiltinOperator).items() if not name.startswith("_")}
    except ImportError:  # pragma: no cover - private module moved
        return {}


def calibration_frames(model, clips, config: DecoderConfig, n_frames: int = CALIBRATION_FRAMES, seed: int = 0,
                       max_clips: int = CALIBRATION_CLIPS):
    """Frames to calibrate the state model on: ``(f0_hz, loudness, state_in)`` arrays.

    Runs the sequence model over up to ``max_clips`` clips drawn at random (from zero state, as
    the box starts) and pairs each frame's controls with the GRU state *before* it. Adds the ends
    of the pitch and loudness ranges, so that the quantised ranges cover everything the engine
    may feed.
    """
    rng = np.random.default_rng(seed)
    if len(clips) > max_clips:  # a full dataset is hours of audio: a sample calibrates as well
        clips = [clips[i] for i in sorted(rng.choice(len(clips), size=max_clips, replace=False))]
    f0_list, loud_list, state_list = [], [], []
    for clip in clips:
        f0 = model_f0(clip.f0_hz[None], config)
        loud = clip.loudness[None]
        states = np.asarray(model({"f0_hz": f0, "loudness": loud})["gru_state"])[0]
        state_in = np.concatenate([np.zeros_like(states[:1]), states[:-1]])
        f0_list.append(np.asarray(f0)[0])
        loud_list.append(clip.loudness)
        state_list.append(state_in)
    f0 = np.concatenate(f0_list)
    loud = np.concatenate(loud_list)
    state = np.concatenate(state_list)
    pick = rng.choice(len(f0), size=min(n_frames, len(f0)), replace=False)
    f0, loud, state = f0[pick], loud[pick], state[pick]
    ends = np.array(
        [[config.f0_min_hz, 0.0], [config.f0_max_hz, 1.0], [config.f0_min_hz, 1.0], [config.f0_max_hz, 0.0]]
    )
    f0 = np.concatenate([ends[:, 0], f0]).astype(np.float32)
    loud = np.concatenate([ends[:, 1], loud]).astype(np.float32)
    state = np.concatenate([state[rng.integers(0, len(state), 4)], state]).astype(np.float32)
    return f0, loud, state


def convert(state_model, int8: bool = True, calibration=None) -> bytes:
    """TFLite flatbuffer of the state model; ``calibration`` from :func:`calibration_frames`."""
    converter = tf.lite.TFLiteConverter.from_keras_model(state_model)
    if int8:
        f0, loud, state = calibration

        def representative():
            for i in range(len(f0)):
                yield {
                    "f0_hz": f0[i].reshape(1, 1),
                    "loudness": loud[i].reshape(1, 1),
                    "state_in": state[i].reshape(1, -1),
                }

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        # int8 wherever an op has an int8 kernel; POW (no int8 kernel) stays float
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS]
    return converter.convert()


def _float_compute_ops(model_bytes: bytes) -> list:
    """Ops whose outputs are float32, other than (de)quantisation and reshapes (diagnostics)."""
    try:
        interpreter = tf.lite.Interpreter(model_content=model_bytes)
        tensors = interpreter.get_tensor_details()
        names = set()
        for op in interpreter._get_ops_details():  # private, but the only per-op view
            if op["op_name"] in ("DEQUANTIZE", "QUANTIZE", "RESHAPE"):
                continue
            if any(tensors[i]["dtype"] == np.float32 for i in op["outputs"]):
                names.add(op["op_name"])
        return sorted(names)
    except Exception as err:  # noqa: BLE001 - diagnostics only
        log.debug("cannot list float ops: %s", err)
        return []


def _subprocess_check(python: str, path: str, f0_hz, loudness) -> dict:
    package_root = str(Path(ddsp_device.__file__).resolve().parents[1])
    with tempfile.TemporaryDirectory() as tmp:
        inputs, outputs = os.path.join(tmp, "in.npz"), os.path.join(tmp, "out.npz")
        np.savez(inputs, f0_hz=f0_hz, loudness=loudness)
        env = dict(os.environ, PYTHONPATH=package_root + os.pathsep + os.environ.get("PYTHONPATH", ""))
        env.pop("DDSP_DEVICE_RUNTIME", None)  # each environment checks the runtime it has
        done = subprocess.run(
            [python, "-m", "ddsp_device.train.runtime_check", path, inputs, outputs],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
            check=False,
        )
        if done.returncode != 0:
            message = done.stderr.strip().splitlines()
            raise ExportError(message[-1] if message else f"exit status {done.returncode}")
        with np.load(outputs) as data:
            return {key: data[key] for key in data.files}


def _compare(check: RuntimeCheck, results: dict, reference: dict) -> None:
    check.runtime = str(results.get("runtime", ""))
    for name in OUTPUTS:
        q, f = np.asarray(results[name], np.float64), np.asarray(reference[name], np.float64)
        check.rel_rms[name] = float(np.sqrt(np.mean((q - f) ** 2)) / max(np.sqrt(np.mean(f**2)), 1e-12))
        check.max_abs[name] = float(np.max(np.abs(q - f)))
    check.ok = True


def export(
    run_dir,
    out_path,
    *,
    name: Optional[str] = None,
    int8: bool = True,
    licence: Optional[str] = None,
    provenance: Optional[str] = None,
    check_pythons: Sequence[str] = (),
    check_here: bool = True,
    checkpoint: Optional[str] = None,
    calibration_frames_n: int = CALIBRATION_FRAMES,
    validation_frames: int = VALIDATION_FRAMES,
) -> ExportReport:
    """Export ``run_dir``'s latest checkpoint to ``out_path`` and verify it.

    Args:
        run_dir: a run written by :func:`ddsp_device.train.fit.fit`.
        out_path: the ``.tflite`` to write (atomically, only once verified).
        name: display name (default: the file name without ``.tflite``).
        int8: integer-quantised body (default) or an all-float model.
        licence, provenance: for the metadata (default: the dataset's ``dataset.json``).
        check_pythons: other Python executables whose environment must load the model too
            (each needs numpy and a TFLite runtime; ``ddsp_device`` is put on their path).
        check_here: also load it in this environment, when a TFLite runtime is importable here.
        checkpoint: a specific checkpoint instead of the latest.

    Raises:
        ExportError: a runtime refused the model, or it needs Flex ops.
    """
    out_path = Path(out_path)
    model, run = restore_decoder(run_dir, checkpoint)
    config = DecoderConfig.from_dict(run["decoder"])
    datasets = run.get("datasets") or [run["dataset"]]
    dataset_dir = datasets[0]["path"]
    infos = [d.get("info", {}) for d in datasets]
    train_clips = [clip for d in datasets for clip in data_mod.load_split(d["path"], "train")]
    validation_clips = []
    for d in datasets:
        try:
            validation_clips += data_mod.load_split(d["path"], "validation")
        except data_mod.DatasetError:
            pass
    if not validation_clips:
        log.warning("%s: no validation clips; verifying on a training clip", dataset_dir)
        validation_clips = train_clips
    dataset_licence = "; ".join(dict.fromkeys(str(i.get("licence", "unknown")) for i in infos))
    dataset_provenance = " ".join(
        (f"[{d.get('weight', 1.0):g} of the training crops] " if len(datasets) > 1 else "")
        + str(i.get("provenance", f"trained on {os.path.basename(d['path'])}")) for d, i in zip(datasets, infos))

    state_model = build_state_model(model)
    calibration = calibration_frames(model, train_clips, config, calibration_frames_n) if int8 else None
    bare = convert(state_model, int8, calibration)
    summary = check_flatbuffer(bare, str(out_path))
    if summary.custom_codes:
        raise ExportError(f"{out_path}: the converter emitted custom ops {sorted(summary.custom_codes)}")
    op_names = _op_names()
    ops = sorted({f"{op_names.get(code, code)} v{version}" for code, version in summary.builtin_codes})

    suffix = os.path.basename(run.get("checkpoint", "")).rsplit("-", 1)[-1]
    steps = int(suffix) if suffix.isdigit() else 0
    metadata = {
        "name": name or out_path.name.removesuffix(".tflite"),
        "sample_rate_hz": int(run["sample_rate"]),
        "frame_rate_hz": float(run["frame_rate_hz"]),
        "window_frames": 1,
        "f0_min_hz": float(config.f0_min_hz),
        "f0_max_hz": float(config.f0_max_hz),
        "loudness_min": 0.0,
        "loudness_max": 1.0,
        "licence": licence or dataset_licence,
        "provenance": provenance or dataset_provenance,
        "exported_at": datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat(),
        "state_size": int(config.gru_units),
        "training_steps": steps,
        "quantisation": "int8 body, float32 inputs and outputs" if int8 else "none (float32)",
    }
    model_bytes = append_metadata(bare, metadata)

    # validation sequence: the first validation clip(s), up to validation_frames
    clip = validation_clips[0]
    n = min(validation_frames, clip.n_frames)
    f0_hz, loudness, audio = clip.f0_hz[:n], clip.loudness[:n], clip.audio[: n * clip.hop]
    reference = model({"f0_hz": model_f0(f0_hz[None], config), "loudness": loudness[None]})
    reference = {key: np.asarray(reference[key])[0] for key in OUTPUTS}
    hop, sample_rate = clip.hop, clip.sample_rate
    noise = tf.random.stateless_uniform([1, n * hop], seed=(1, 2), minval=-1.0, maxval=1.0)

    def render(outputs):
        return synthesize(
            f0_hz[None],
            loudness[None],
            outputs["harmonic_amps"][None],
            outputs["harmonic_dist"][None],
            outputs["noise_mags"][None],
            hop,
            sample_rate,
            noise=noise,
        )["audio"]

    float_audio = render(reference)
    report = ExportReport(
        path=str(out_path),
        size_bytes=len(model_bytes),
        int8=int8,
        ops=ops,
        float_ops=_float_compute_ops(bare) if int8 else [],
        metadata=metadata,
        validation_frames=n,
        float_spectral_distance=float(multiscale_spectral_loss(audio[None], float_audio)),
    )

    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_path.parent) as tmp:
        candidate = os.path.join(tmp, out_path.name)
        with open(candidate, "wb") as file:
            file.write(model_bytes)
        places = ([("this environment", None)] if check_here else []) + [(python, python) for python in check_pythons]
        for where, python in places:
            check = RuntimeCheck(where)
            try:
                if python is None:
                    # TensorFlow is loaded in this process, and tflite-runtime 2.14 cannot share
                    # a process with it ("vector::reserve"): check LiteRT here, 2.14 in a child.
                    results = stream_outputs(candidate, f0_hz, loudness, runtime=IN_PROCESS_RUNTIME)
                else:
                    results = _subprocess_check(python, candidate, f0_hz, loudness)
                _compare(check, results, reference)
                check.spectral_distance = float(multiscale_spectral_loss(float_audio, render(results)))
            except Exception as err:  # noqa: BLE001 - every failure is reported
                check.error = f"{type(err).__name__}: {err}"
                if python is None and isinstance(err, RuntimeUnavailableError):
                    log.info("no TFLite runtime in this environment; not checked here")
                    continue
            report.checks.append(check)
        failed = [check for check in report.checks if not check.ok]
        if failed:
            raise ExportError(f"{out_path}: " + "; ".join(f"{check.where}: {check.error}" for check in failed))
    atomic_write_bytes(out_path, model_bytes, mode=MODEL_FILE_MODE)
    log.info("%s", report.summary())
    return report


def main(argv=None) -> int:  # pragma: no cover - the CLI wires this properly
    import argparse

    parser = argparse.ArgumentParser(description="export a training run to a .tflite model")
    parser.add_argument("run_dir")
    parser.add_argument("--out", required=True)
    parser.add_argument("--float", dest="int8", action="store_false")
    parser.add_argument("--check-python", action="append", default=[])
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    report = export(args.run_dir, args.out, int8=args.int8, check_pythons=args.check_python)
    print(report.summary())
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
