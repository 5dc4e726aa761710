"""The training toolchain (optional extra ``[train]``: TensorFlow 2.16+ with Keras 3, CPU is enough).

Nothing here is imported by the box. The modules:

- :mod:`~ddsp_device.train.synth_tf`: the harmonic + filtered-noise synthesiser in TensorFlow,
  the same maths as the runtime's numpy synthesiser (``models/README.md``, "Synthesis").
- :mod:`~ddsp_device.train.losses`: multi-scale spectral loss.
- :mod:`~ddsp_device.train.model`: the causal decoder (a sequence form for training, a one-frame
  state form for export).
- :mod:`~ddsp_device.train.data`: the on-disk dataset (one ``.npz`` per clip) and batching.
- :mod:`~ddsp_device.train.fit`: the training loop with checkpoints and resume.
- :mod:`~ddsp_device.train.export`: int8 TFLite export (a state model) with metadata and a
  self-check on the box's runtimes.
- :mod:`~ddsp_device.train.runtime_check`: streams a model through the box's own loader (and
  engine); numpy only, so the exporter runs it in the runtime venvs too.

Importing this package does not import TensorFlow; its modules do (but ``runtime_check``).
"""

#: The project's control frame rate: hop 128 at 48 kHz (models/README.md, "Frame rate and latency").
SAMPLE_RATE_HZ = 48000
FRAME_RATE_HZ = 375.0
HOP = 128
N_HARMONICS = 64
N_NOISE_BANDS = 65
