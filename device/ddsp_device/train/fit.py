"""Training: decoder → TensorFlow synthesiser → multi-scale spectral loss, with checkpoints.

    from ddsp_device.train.fit import FitSettings, fit
    result = fit("DATASET", "RUN_DIR", FitSettings(steps=20000))

``RUN_DIR`` holds ``run.json`` (decoder config, training settings, rates, dataset info),
``checkpoints/`` (``tf.train.CheckpointManager``: model, optimiser, step) and ``metrics.jsonl``
(one JSON line per validation). Calling :func:`fit` again on the same ``RUN_DIR`` resumes from
the latest checkpoint and trains on up to ``steps`` in total; the run's decoder config wins over
the one passed in.

With more than one visible device (GPUs), :class:`tf.distribute.MirroredStrategy` splits each
batch across them; otherwise the default strategy runs on the CPU (or the one GPU).
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional

import keras
import numpy as np
import tensorflow as tf

from ddsp_device.atomicfile import atomic_write_json
from ddsp_device.train import data as data_mod
from ddsp_device.train.losses import FFT_SIZES, multiscale_spectral_loss
from ddsp_device.train.model import DecoderConfig, build_decoder, model_f0
from ddsp_device.train.synth_tf import synthesize

log = logging.getLogger(__name__)

RUN_FILE = "run.json"
CHECKPOINT_DIR = "checkpoints"
METRICS_FILE = "metrics.jsonl"


@dataclass(frozen=True)
class FitSettings:
    """Training settings (units in the names; saved in ``run.json``)."""

    steps: int = 20000
    batch_size: int = 8
    example_frames: int = 375  # 1 s at 375 Hz
    #: 3e-4 (as DDSP), halved every 6000 steps. At 1e-3 the validation loss of the Violin runs
    #: wandered by ±0.5 between checkpoints instead of settling: one unit of the heads' output is
    #: 20 dB, so Adam's steps at 1e-3 move the level by about a dB per step.
    learning_rate: float = 3e-4
    lr_decay_steps: int = 6000
    lr_decay_rate: float = 0.5
    grad_clip_norm: float = 3.0
    #: weight of the mean attenuation outside [0, 6] (keeps training and export identical)
    range_penalty: float = 0.1
    fft_sizes: tuple[int, ...] = FFT_SIZES
    log_every: int = 50
    checkpoint_every: int = 500
    keep_checkpoints: int = 3
    validation_batches: int = 8  # validation crops = batches × batch_size (at most)
    seed: int = 0


@dataclass
class FitResult:
    """What :func:`fit` did: the final step, the last training and validation losses, wall time."""

    run_dir: str
    step: int
    train_loss: float
    validation_loss: Optional[float]
    wall_s: float
    resumed_from: int = 0
    history: list = field(default_factory=list)


def pick_strategy() -> tf.distribute.Strategy:
    """MirroredStrategy over the GPUs when there are several, else the default strategy."""
    gpus = tf.config.list_logical_devices("GPU")
    if len(gpus) > 1:
        log.info("training on %d GPUs with MirroredStrategy", len(gpus))
        return tf.distribute.MirroredStrategy()
    log.info("training on %s", gpus[0].name if gpus else "the CPU")
    return tf.distribute.get_strategy()


def read_run(run_dir) -> dict:
    """``RUN_DIR/run.json``: ``decoder`` (config), ``settings``, ``sample_rate``, ``frame_rate_hz``,
    ``hop``, ``dataset`` (path and ``dataset.json``)."""
    path = Path(run_dir) / RUN_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise data_mod.DatasetError(f"{run_dir}: not a training run (no {RUN_FILE})") from err


def make_checkpoint(model, optimizer=None, step=None) -> tf.train.Checkpoint:
    parts = {"model": model}
    if optimizer is not None:
        parts["optimizer"] = optimizer
    if step is not None:
        parts["step"] = step
    return tf.train.Checkpoint(**parts)


def restore_decoder(run_dir, checkpoint: Optional[str] = None):
    """Rebuild the decoder of a run and load its latest (or the given) checkpoint's weights.

    Returns ``(model, run)``; ``run`` is :func:`read_run`'s dict plus ``checkpoint`` (the path).
    """
    run = read_run(run_dir)
    config = DecoderConfig.from_dict(run["decoder"])
    model = build_decoder(config)
    path = checkpoint or tf.train.latest_checkpoint(str(Path(run_dir) / CHECKPOINT_DIR))
    if path is None:
        raise data_mod.DatasetError(f"{run_dir}: no checkpoint yet")
    make_checkpoint(model).read(path).expect_partial()
    run["checkpoint"] = path
    return model, run


def render(model, f0_hz, loudness, hop: int, sample_rate: int, config: DecoderConfig, noise=None):
    """Decoder + synthesiser over batches: ``f0_hz``, ``loudness`` ``[B, F]`` → (audio dict, outputs)."""
    outputs = model({"f0_hz": model_f0(f0_hz, config), "loudness": loudness}, training=False)
    audio = synthesize(
        f0_hz,
        loudness,
        outputs["harmonic_amps"],
        outputs["harmonic_dist"],
        outputs["noise_mags"],
        hop,
        sample_rate,
        noise=noise,
    )
    return audio, outputs


def weighted_datasets(dataset_dir) -> list[tuple[str, float]]:
    """``dataset_dir`` as ``[(path, weight)]``: one path, or a list of paths and/or
    ``(path, weight)`` pairs and ``"PATH@WEIGHT"`` strings (:func:`ddsp_device.train.data.parse_weighted`)."""
    if isinstance(dataset_dir, (str, os.PathLike)):
        dataset_dir = [dataset_dir]
    out = []
    for item in dataset_dir:
        if isinstance(item, (tuple, list)):
            out.append((str(item[0]), float(item[1])))
        else:
            out.append(data_mod.parse_weighted(os.fspath(item)))
    if not out:
        raise data_mod.DatasetError("no dataset given")
    return out


def fit(
    dataset_dir,
    run_dir,
    settings: FitSettings = FitSettings(),
    config: Optional[DecoderConfig] = None,
    on_step: Optional[Callable[[int, float], None]] = None,
    strategy: Optional[tf.distribute.Strategy] = None,
    sizes: Optional[dict] = None,
) -> FitResult:
    """Train (or resume) a decoder on ``dataset_dir``; write checkpoints to ``run_dir``.

    Args:
        dataset_dir: a dataset as :mod:`ddsp_device.train.data` describes, or several, each
            with a weight: its share of the training crops (:func:`weighted_datasets`); the
            validation clips of all of them are pooled.
        run_dir: created if missing; resumed if it holds a run.
        settings: training settings (``steps`` is the total, counting resumed steps).
        config: decoder sizes; ``f0_min_hz`` / ``f0_max_hz`` default to the training data's
            voiced pitch range ± 5 %. Ignored when resuming (the run's own config is used).
        on_step: called after every step with ``(step, loss)`` (progress bars).
        strategy: a ``tf.distribute`` strategy (default: :func:`pick_strategy`). The batch is
            split across its replicas, so ``batch_size`` must be a multiple of their number.
        sizes: ``DecoderConfig`` size fields (``gru_units``, ``hidden_units``, …) for a new run
            whose ``config`` is not given; ignored when resuming.
    """
    started = time.monotonic()
    run_dir = Path(run_dir)
    run_path = run_dir / RUN_FILE
    sources = weighted_datasets(dataset_dir)
    train_sets = [data_mod.load_split(path, "train") for path, _ in sources]
    train_clips = [clip for clips in train_sets for clip in clips]
    if len({(clip.sample_rate, clip.frame_rate_hz) for clip in train_clips}) > 1:
        raise data_mod.DatasetError(f"{', '.join(p for p, _ in sources)}: the datasets differ in sample or frame rate")
    validation_clips = []
    for path, _ in sources:
        try:
            validation_clips += data_mod.load_split(path, "validation")
        except data_mod.DatasetError as err:
            log.warning("no validation: %s", err)
    sample_rate = train_clips[0].sample_rate
    frame_rate_hz = train_clips[0].frame_rate_hz
    hop = train_clips[0].hop

    if run_path.exists():
        run = read_run(run_dir)
        config = DecoderConfig.from_dict(run["decoder"])
        if (run["sample_rate"], run["frame_rate_hz"]) != (sample_rate, frame_rate_hz):
            raise data_mod.DatasetError(
                f"{run_dir}: trained at {run['sample_rate']} Hz / {run['frame_rate_hz']} fps, "
                f"the dataset is {sample_rate} Hz / {frame_rate_hz} fps"
            )
    else:
        if config is None:
            f0_min_hz, f0_max_hz = data_mod.f0_range(train_clips)
            config = DecoderConfig(f0_min_hz=f0_min_hz, f0_max_hz=f0_max_hz, **(sizes or {}))
        run = {
            "decoder": config.to_dict(),
            "sample_rate": sample_rate,
            "frame_rate_hz": frame_rate_hz,
            "hop": hop,
        }
        run["datasets"] = [{"path": os.path.abspath(path), "weight": weight, "info": data_mod.read_dataset_info(path)}
                           for path, weight in sources]
        run["dataset"] = run["datasets"][0]  # as runs with one dataset wrote it
    run["settings"] = {**asdict(settings), "fft_sizes": list(settings.fft_sizes)}
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(run_path, run)

    tf.random.set_seed(settings.seed)
    strategy = strategy or pick_strategy()
    replicas = strategy.num_replicas_in_sync
    if settings.batch_size % replicas:
        raise ValueError(f"batch_size {settings.batch_size} is not a multiple of the {replicas} replicas")
    with strategy.scope():
        model = build_decoder(config)
        schedule = settings.learning_rate
        if settings.lr_decay_steps:
            schedule = keras.optimizers.schedules.ExponentialDecay(
                settings.learning_rate, settings.lr_decay_steps, settings.lr_decay_rate
            )
        optimizer = keras.optimizers.Adam(learning_rate=schedule, global_clipnorm=settings.grad_clip_norm)
        optimizer.build(model.trainable_variables)
        step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
    checkpoint = make_checkpoint(model, optimizer, step)
    manager = tf.train.CheckpointManager(checkpoint, str(run_dir / CHECKPOINT_DIR), settings.keep_checkpoints)
    resumed_from = 0
    if manager.latest_checkpoint:
        checkpoint.restore(manager.latest_checkpoint).assert_existing_objects_matched()
        resumed_from = int(step.numpy())
        log.info("resuming %s from step %d", run_dir, resumed_from)

    seed = settings.seed + resumed_from
    if len(train_sets) == 1:
        crops = data_mod.Crops(train_clips, settings.example_frames, seed=seed)
    else:
        crops = data_mod.MixedCrops([data_mod.Crops(clips, settings.example_frames, seed=[seed, i])
                                     for i, clips in enumerate(train_sets)], [w for _, w in sources], seed=seed)
    dataset = data_mod.tf_dataset(crops, settings.batch_size)
    iterator = iter(strategy.experimental_distribute_dataset(dataset))

    def loss_fn(batch):
        audio, outputs = render(model, batch["f0_hz"], batch["loudness"], hop, sample_rate, config)
        loss = multiscale_spectral_loss(batch["audio"], audio["audio"], settings.fft_sizes)
        if settings.range_penalty:
            loss += settings.range_penalty * tf.reduce_mean(outputs["attenuation_excess"])
        return loss

    def replica_step(batch):
        with tf.GradientTape() as tape:
            loss = loss_fn(batch)
            scaled = loss / replicas
        grads = tape.gradient(scaled, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return scaled

    @tf.function
    def train_step(batch):
        per_replica = strategy.run(replica_step, args=(batch,))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)

    validation = None
    if validation_clips:
        try:
            validation = data_mod.Crops(validation_clips, settings.example_frames).fixed(
                settings.validation_batches * settings.batch_size
            )
        except data_mod.DatasetError as err:
            log.warning("no validation: %s", err)

    @tf.function
    def validation_loss_fn(audio, f0_hz, loudness):
        rendered, _ = render(model, f0_hz, loudness, hop, sample_rate, config)
        return multiscale_spectral_loss(audio, rendered["audio"], settings.fft_sizes)

    def validate() -> Optional[float]:
        if validation is None:
            return None
        audio, f0, loudness = validation
        losses = [
            float(
                validation_loss_fn(
                    audio[i : i + settings.batch_size],
                    f0[i : i + settings.batch_size],
                    loudness[i : i + settings.batch_size],
                )
            )
            for i in range(0, len(audio), settings.batch_size)
        ]
        return float(np.mean(losses))

    history = []
    loss_value = float("nan")
    validation_value = None
    window_start, window_losses = time.monotonic(), []
    current = int(step.numpy())
    while current < settings.steps:
        loss_value = float(train_step(next(iterator)))
        step.assign_add(1)
        current += 1
        window_losses.append(loss_value)
        if on_step is not None:
            on_step(current, loss_value)
        if not np.isfinite(loss_value):
            raise FloatingPointError(
                f"step {current}: loss is {loss_value}; last checkpoint {manager.latest_checkpoint}"
            )
        last = current == settings.steps
        if current % settings.log_every == 0 or last:
            elapsed = time.monotonic() - window_start
            log.info(
                "step %d  loss %.4f  %.2f s/step",
                current,
                float(np.mean(window_losses)),
                elapsed / max(1, len(window_losses)),
            )
            window_start, window_losses = time.monotonic(), []
        if current % settings.checkpoint_every == 0 or last:
            manager.save(checkpoint_number=current)
            validation_value = validate()
            record = {
                "step": current,
                "train_loss": loss_value,
                "validation_loss": validation_value,
                "wall_s": round(time.monotonic() - started, 2),
            }
            history.append(record)
            with open(run_dir / METRICS_FILE, "a", encoding="utf-8") as metrics:
                metrics.write(json.dumps(record) + "\n")
            if validation_value is not None:
                log.info("step %d  validation loss %.4f  (checkpoint saved)", current, validation_value)
    if resumed_from >= settings.steps:
        log.info("%s already has %d steps (asked for %d); nothing to do", run_dir, resumed_from, settings.steps)
    return FitResult(
        str(run_dir), current, loss_value, validation_value, time.monotonic() - started, resumed_from, history
    )
