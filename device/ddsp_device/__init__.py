"""ddsp-device: a neural instrument in a box.

The embedding API, in the spirit of DDSP-VST's ``loadModel`` / ``setF0Hz`` / ``setLoudnessNorm``::

    from ddsp_device import Engine
    with Engine.load("Violin") as engine:           # a model name or a .tflite path
        engine.set_f0_hz(440.0)
        engine.set_loudness(0.8)                    # 0..1 = dB/80 + 1
        audio = engine.render_new(48000)            # one second, float32 at 48 kHz

In a real-time loop call ``engine.render(out)`` with your own preallocated float32 array.
"""

__version__ = "0.1.0"

__all__ = ["Engine", "EngineSettings", "__version__"]


def __getattr__(name: str):
    # Lazy, so that importing the CLI does not import numpy before it has set its threading.
    if name in ("Engine", "EngineSettings"):
        from . import engine

        return getattr(engine, name)
    raise AttributeError(f"module 'ddsp_device' has no attribute {name!r}")
