"""Stream a control sequence through a model file with the box's own loader (no TensorFlow).

The exporter runs this in other Python environments (e.g. the tflite-runtime 2.14 venv) to prove
that they load the model and to collect their outputs::

    python -m ddsp_device.train.runtime_check MODEL.tflite IN.npz OUT.npz [--runtime NAME] [--engine-seconds S]

``IN.npz`` holds ``f0_hz`` and ``loudness`` ``[F]``; ``OUT.npz`` receives ``harmonic_amps``,
``harmonic_dist`` ``[F, 64]``, ``noise_mags`` ``[F, 65]`` (as the engine reads them: dequantised,
negatives clamped), ``runtime`` and ``window_frames`` / ``state_size``, the contract tensors'
dtypes; with ``--engine-seconds``, also ``engine_audio``: that long a render of the input's
controls through :class:`ddsp_device.engine.Engine` (the whole box: model, synthesiser, output
stage). Numpy and the box's own modules only.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

OUTPUTS = ("harmonic_amps", "harmonic_dist", "noise_mags")


def stream_outputs(path: str, f0_hz: np.ndarray, loudness: np.ndarray, runtime: str = "auto") -> dict:
    """Run the model frame by frame as the engine does (reset, then one step per frame).

    ``f0_hz`` is clamped to the model's pitch range first, as the engine does.
    Returns the outputs ``[F, n]`` and facts about the loaded model.
    """
    from ddsp_device.model import load_model

    with load_model(path, runtime=runtime) as model:
        info = model.info
        f0 = np.clip(np.asarray(f0_hz, np.float64), info.f0_min_hz, info.f0_max_hz)
        levels = np.clip(np.asarray(loudness, np.float64), info.loudness_min, info.loudness_max)
        results = {name: np.zeros((len(f0), getattr(model, name).shape[0]), np.float32) for name in OUTPUTS}
        model.reset(float(f0[0]), 0.0)
        for n, (value, level) in enumerate(zip(f0, levels)):
            model.step(float(value), float(level))
            for name in OUTPUTS:
                results[name][n] = getattr(model, name)
        results.update(
            runtime=np.array(info.runtime_name),
            window_frames=np.int64(info.window_frames),
            state_size=np.int64(info.state_size),
            tensor_dtypes=np.array(sorted(f"{k}:{v}" for k, v in info.tensor_dtypes.items())),
        )
        return results


def engine_render(
    path: str, f0_hz: np.ndarray, loudness: np.ndarray, seconds: float, runtime: str = "auto"
) -> np.ndarray:
    """``seconds`` of audio from :class:`ddsp_device.engine.Engine` playing the controls (looped)."""
    from ddsp_device.engine import Engine, EngineSettings
    from ddsp_device.model import load_model

    f0_hz = np.asarray(f0_hz, np.float64)
    loudness = np.asarray(loudness, np.float64)
    model = load_model(path, runtime=runtime)
    with Engine(model, EngineSettings()) as engine:

        def controls(frame: int):
            i = frame % len(f0_hz)
            return float(f0_hz[i]), float(loudness[i])

        return engine.render_new(int(seconds * engine.sample_rate), controls)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("inputs")
    parser.add_argument("outputs")
    parser.add_argument("--runtime", default="auto")
    parser.add_argument("--engine-seconds", type=float, default=0.0)
    args = parser.parse_args(argv)
    with np.load(args.inputs) as data:
        f0_hz, loudness = data["f0_hz"], data["loudness"]
    try:
        results = stream_outputs(args.model, f0_hz, loudness, args.runtime)
        if args.engine_seconds > 0:
            results["engine_audio"] = engine_render(args.model, f0_hz, loudness, args.engine_seconds, args.runtime)
    except Exception as err:  # noqa: BLE001 - reported to the exporter, one line
        print(f"{type(err).__name__}: {err}", file=sys.stderr)
        return 1
    np.savez(args.outputs, **results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
