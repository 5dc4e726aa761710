"""The model runtime: load a ddsp-device model (``models/README.md``) and stream it frame by frame.

    from ddsp_device.model import load_model, ModelDefaults

    with load_model("models/Violin.tflite", defaults=ModelDefaults()) as model:
        model.reset(f0_hz=220.0)
        model.step(f0_hz=220.0, loudness=0.8)
        model.harmonic_amps, model.harmonic_dist, model.noise_mags   # float32 [64], [64], [65]

This package is the only part of ddsp-device that imports a TFLite runtime (tflite-runtime or
ai-edge-litert), and it does so only inside :func:`load_model`.
"""

from ddsp_device.model.binding import N_HARMONICS, N_NOISE_BANDS
from ddsp_device.model.loader import Model, ModelDefaults, ModelInfo, load_model
from ddsp_device.model.metadata import append_metadata, read_metadata
from ddsp_device.model.runtime import RUNTIME_ENV, RUNTIMES

__all__ = [
    "N_HARMONICS",
    "N_NOISE_BANDS",
    "RUNTIMES",
    "RUNTIME_ENV",
    "Model",
    "ModelDefaults",
    "ModelInfo",
    "append_metadata",
    "load_model",
    "read_metadata",
]
