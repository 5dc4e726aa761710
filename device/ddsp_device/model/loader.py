"""Loading a ddsp-device model and streaming it one control frame at a time.

:func:`load_model` checks the file against the contract in ``models/README.md`` and returns a
:class:`Model`. :meth:`Model.step` is the hot path: it allocates nothing, logs nothing and is
single-threaded. Only :mod:`ddsp_device.model.runtime` imports a TFLite runtime, and only when
:func:`load_model` runs.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ddsp_device.errors import ModelError
from ddsp_device.model.binding import (
    N_HARMONICS,
    N_NOISE_BANDS,
    STATE_INPUT,
    STATE_OUTPUT,
    Binding,
    TensorBinding,
    bind_tensors,
    binding_error,
)
from ddsp_device.model.flatbuffer import check_flatbuffer
from ddsp_device.model.metadata import KNOWN_KEYS, METADATA_MEMBER, metadata_from_bytes
from ddsp_device.model.runtime import RUNTIME_CHOICES, import_interpreter, quiet_native_stderr

log = logging.getLogger(__name__)

_INT8_MIN, _INT8_MAX = -128, 127
# All 256 int8 codes, in the order of their uint8 bit patterns (0..127, then -128..-1): a
# lookup table indexed by ``q.view(np.uint8)`` maps each int8 code to a value in one call.
_INT8_CODES = np.arange(256, dtype=np.uint8).view(np.int8).astype(np.float64)


@dataclass(frozen=True)
class ModelDefaults:
    """Values a bare model file (no ``metadata.json``) takes; ``[model]`` in the config overrides."""

    sample_rate_hz: int = 48000
    frame_rate_hz: float = 250.0
    f0_min_hz: float = 30.0
    f0_max_hz: float = 4200.0

    def __post_init__(self):
        if self.sample_rate_hz <= 0 or self.frame_rate_hz <= 0:
            raise ValueError(f"ModelDefaults: rates must be > 0 ({self.sample_rate_hz}, {self.frame_rate_hz})")
        if not 0 < self.f0_min_hz < self.f0_max_hz:
            raise ValueError(f"ModelDefaults: need 0 < f0_min_hz < f0_max_hz ({self.f0_min_hz}, {self.f0_max_hz})")


@dataclass(frozen=True)
class ModelInfo:
    """What the box knows about a loaded model: metadata (or defaults) and tensor facts.

    ``window_frames`` (T), ``n_harmonics``, ``n_noise_bands`` and ``state_size`` (S, 0 for a
    window model) come from the tensor shapes. ``quantised_inputs`` / ``quantised_outputs`` are
    True when any contract input / output is int8; ``tensor_dtypes`` gives each tensor's dtype.
    ``metadata_source`` is ``"metadata.json"`` or ``"defaults"``; ``extra`` holds metadata keys
    the contract does not define.
    """

    path: str
    name: str
    sample_rate_hz: int
    frame_rate_hz: float
    f0_min_hz: float
    f0_max_hz: float
    loudness_min: float
    loudness_max: float
    licence: str
    provenance: str
    exported_at: str
    window_frames: int
    n_harmonics: int
    n_noise_bands: int
    state_size: int
    quantised_inputs: bool
    quantised_outputs: bool
    metadata_source: str
    runtime_name: str
    extra: dict[str, Any] = field(default_factory=dict)
    tensor_dtypes: dict[str, str] = field(default_factory=dict)


def _make_info(
    path: str, metadata: dict[str, Any] | None, defaults: ModelDefaults, binding: Binding, runtime_name: str
) -> ModelInfo:
    meta = metadata or {}
    stem = Path(path).name
    if stem.lower().endswith(".tflite"):
        stem = stem[: -len(".tflite")]
    window_frames = binding.window_frames
    declared = meta.get("window_frames")
    if declared is not None and declared != window_frames:
        log.warning(
            "%s: metadata says window_frames=%s, tensors say %d; using the tensors", path, declared, window_frames
        )
    tensors = binding.tensors
    inputs = [t for t in tensors.values() if t.name in ("f0_hz", "loudness", STATE_INPUT)]
    outputs = [t for t in tensors.values() if t not in inputs]
    return ModelInfo(
        path=path,
        name=meta.get("name", stem),
        sample_rate_hz=int(meta.get("sample_rate_hz", defaults.sample_rate_hz)),
        frame_rate_hz=float(meta.get("frame_rate_hz", defaults.frame_rate_hz)),
        f0_min_hz=float(meta.get("f0_min_hz", defaults.f0_min_hz)),
        f0_max_hz=float(meta.get("f0_max_hz", defaults.f0_max_hz)),
        loudness_min=float(meta.get("loudness_min", 0.0)),
        loudness_max=float(meta.get("loudness_max", 1.0)),
        licence=meta.get("licence", "unknown"),
        provenance=meta.get("provenance", ""),
        exported_at=meta.get("exported_at", ""),
        window_frames=window_frames,
        n_harmonics=N_HARMONICS,
        n_noise_bands=N_NOISE_BANDS,
        state_size=binding.state_size,
        quantised_inputs=any(t.quantised for t in inputs),
        quantised_outputs=any(t.quantised for t in outputs),
        metadata_source=METADATA_MEMBER if metadata is not None else "defaults",
        runtime_name=runtime_name,
        extra={key: value for key, value in meta.items() if key not in KNOWN_KEYS},
        tensor_dtypes={t.name: t.dtype.name for t in tensors.values()},
    )


class _InputRing:
    """The last T values of one scalar control, kept quantised, readable as a [1, T] window.

    The ring is written twice (at ``p`` and ``p + T``) so that the window, oldest first, is
    always the contiguous slice ``ring[p : p + T]``; the T views are made once.
    """

    def __init__(self, tensor: TensorBinding, window_frames: int):
        self.index = tensor.index
        self.quantised = tensor.quantised
        self.scale = tensor.scale
        self.zero_point = tensor.zero_point
        self.window_frames = window_frames
        self.ring = np.zeros(2 * window_frames, dtype=tensor.dtype)
        self.windows = [self.ring[i : i + window_frames].reshape(1, window_frames) for i in range(window_frames)]
        self.position = 0

    def code(self, value: float) -> float | int:
        """The value as stored in the tensor: int8 code ``clip(round(v / scale) + zp)`` or float."""
        if not self.quantised:
            return value
        real = value / self.scale
        if real != real:  # NaN: feed real 0 rather than stop the audio thread
            real = 0.0
        elif real > 512.0:
            real = 512.0
        elif real < -512.0:
            real = -512.0
        q = round(real) + self.zero_point
        return _INT8_MAX if q > _INT8_MAX else (_INT8_MIN if q < _INT8_MIN else q)

    def push(self, value: float) -> np.ndarray:
        """Append the newest value; return the window [1, T] (a view, oldest first)."""
        code = self.code(value)
        position = self.position
        ring = self.ring
        ring[position] = code
        ring[position + self.window_frames] = code
        position += 1
        if position == self.window_frames:
            position = 0
        self.position = position
        return self.windows[position]

    def values(self) -> np.ndarray:
        """The window as real values [T], oldest first (a new float64 array)."""
        window = self.windows[self.position][0].astype(np.float64)
        return self.scale * (window - self.zero_point) if self.quantised else window

    def fill(self, value: float) -> None:
        self.ring[:] = self.code(value)
        self.position = 0


def _dequantise_table(tensor: TensorBinding) -> np.ndarray:
    """float32 [256]: ``max(scale * (q - zero_point), 0)`` for every int8 code, by uint8 pattern."""
    return np.maximum(tensor.scale * (_INT8_CODES - tensor.zero_point), 0.0).astype(np.float32)


class Model:
    """A loaded model, streamed one control frame per :meth:`step` (single-threaded).

    After each step the newest frame's outputs are in the preallocated float32 arrays
    ``harmonic_amps`` [64], ``harmonic_dist`` [64] and ``noise_mags`` [65] (overwritten in
    place, negatives clamped to 0). Use :func:`load_model` to make one.
    """

    def __init__(self, interpreter: Any, binding: Binding, info: ModelInfo, model_bytes: bytes):
        self.info = info
        self._interpreter = interpreter
        self._model_bytes = model_bytes  # the runtime reads the buffer it was given: keep it alive
        self._set_tensor = interpreter.set_tensor
        self._invoke = interpreter.invoke
        self._get_tensor = interpreter.get_tensor
        tensors = binding.tensors
        window_frames = binding.window_frames
        self._newest = window_frames - 1
        self._f0 = _InputRing(tensors["f0_hz"], window_frames)
        self._loudness = _InputRing(tensors["loudness"], window_frames)

        self.harmonic_amps = np.zeros(N_HARMONICS, dtype=np.float32)
        self.harmonic_dist = np.zeros(N_HARMONICS, dtype=np.float32)
        self.noise_mags = np.zeros(N_NOISE_BANDS, dtype=np.float32)
        # (tensor index, destination, bound ``take`` of its dequantisation table, or None for
        # float32 outputs). ``table.take(codes.view(np.uint8), out=dest, mode="clip")`` is the
        # fastest in-place dequantise-and-clamp numpy offers (one C call, ~0.5 us for 64 values).
        self._outputs = tuple(
            (
                tensors[name].index,
                dest,
                _dequantise_table(tensors[name]).take if tensors[name].quantised else None,
            )
            for name, dest in (
                ("harmonic_amps", self.harmonic_amps),
                ("harmonic_dist", self.harmonic_dist),
                ("noise_mags", self.noise_mags),
            )
        )
        self._has_state = binding.state_size > 0
        if self._has_state:
            self._init_state(tensors[STATE_INPUT], tensors[STATE_OUTPUT])
        self._needs_reset = True
        self._closed = False

    # -- state models -------------------------------------------------------------------------

    def _init_state(self, state_in: TensorBinding, state_out: TensorBinding) -> None:
        self._state_in_index = state_in.index
        self._state_out_index = state_out.index
        self._state = np.zeros(state_in.shape, dtype=state_in.dtype)
        self._state_zero = state_in.zero_point if state_in.quantised else 0.0
        self._state_table = None  # int8 state_out -> state_in lookup, when a conversion is needed
        self._state_scratch = None  # float32 scratch for float32 state_out -> int8 state_in
        same_params = state_in.scale == state_out.scale and state_in.zero_point == state_out.zero_point
        if state_in.dtype == state_out.dtype and (same_params or not state_in.quantised):
            self._state_mode = "copy"
        elif state_out.quantised:
            real = state_out.scale * (_INT8_CODES - state_out.zero_point)
            if state_in.quantised:
                codes = np.clip(np.round(real / state_in.scale) + state_in.zero_point, _INT8_MIN, _INT8_MAX)
                self._state_table = codes.astype(np.int8)
            else:
                self._state_table = real.astype(np.float32)
            self._state_take = self._state_table.take
            self._state_mode = "table"
        else:  # float32 state_out -> int8 state_in
            self._state_scratch = np.zeros(state_in.shape, dtype=np.float32)
            self._state_in_scale = np.float32(state_in.scale)
            self._state_in_zero_point = np.float32(state_in.zero_point)
            self._state_mode = "quantise"

    def _carry_state(self) -> None:
        state_out = self._get_tensor(self._state_out_index)
        mode = self._state_mode
        if mode == "copy":
            np.copyto(self._state, state_out)
        elif mode == "table":
            self._state_take(state_out.view(np.uint8), out=self._state, mode="clip")
        else:
            scratch = self._state_scratch
            np.divide(state_out, self._state_in_scale, out=scratch)
            np.rint(scratch, out=scratch)
            np.add(scratch, self._state_in_zero_point, out=scratch)
            np.clip(scratch, _INT8_MIN, _INT8_MAX, out=scratch)
            np.copyto(self._state, scratch, casting="unsafe")

    # -- streaming ----------------------------------------------------------------------------

    def reset(self, f0_hz: float, loudness: float = 0.0) -> None:
        """Fill the window with the frame ``(f0_hz, loudness)`` and zero any recurrent state.

        The output arrays are zeroed. Call at start and whenever the sound restarts; the first
        :meth:`step` without a reset does ``reset(f0_hz)`` itself.
        """
        self._f0.fill(f0_hz)
        self._loudness.fill(loudness)
        if self._has_state:
            self._state.fill(self._state_zero)
        self.harmonic_amps.fill(0.0)
        self.harmonic_dist.fill(0.0)
        self.noise_mags.fill(0.0)
        self._needs_reset = False

    def step(self, f0_hz: float, loudness: float) -> None:
        """Push one control frame (the newest), run the model, write its newest-frame outputs.

        ``f0_hz`` in Hz, ``loudness`` 0..1 (python floats). Results land in
        ``harmonic_amps`` [64], ``harmonic_dist`` [64], ``noise_mags`` [65]. Allocates no arrays
        of its own (``get_tensor`` returns a copy of each output, at most a few hundred bytes) and
        never logs. NaN or infinite controls are fed to int8 models as 0 / the end of the range.
        """
        if self._needs_reset:
            self.reset(f0_hz)
        set_tensor = self._set_tensor
        f0, level = self._f0, self._loudness
        set_tensor(f0.index, f0.push(f0_hz))
        set_tensor(level.index, level.push(loudness))
        if self._has_state:
            set_tensor(self._state_in_index, self._state)
        self._invoke()
        newest = self._newest
        get_tensor = self._get_tensor
        for index, dest, take in self._outputs:
            frame = get_tensor(index)[0, newest]
            if take is None:
                np.maximum(frame, 0.0, out=dest)
            else:
                take(frame.view(np.uint8), out=dest, mode="clip")
        if self._has_state:
            self._carry_state()

    def window(self) -> tuple[np.ndarray, np.ndarray]:
        """The controls the model sees now, oldest first: ``(f0_hz [T], loudness [T])``.

        Real values (int8 codes dequantised), as new float64 arrays; for tests and diagnostics,
        not the hot path.
        """
        return self._f0.values(), self._loudness.values()

    # -- lifecycle ----------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Release the interpreter. Harmless to call twice; :meth:`step` afterwards raises."""
        if self._closed:
            return
        self._closed = True
        self._set_tensor = self._invoke = self._get_tensor = _closed_call
        self._interpreter = None
        self._model_bytes = b""
        log.debug("closed model %s", self.info.path)

    def __enter__(self) -> Model:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else self.info.runtime_name
        return f"<Model {self.info.name!r} T={self.info.window_frames} S={self.info.state_size} {state}>"


def _closed_call(*args: Any, **kwargs: Any) -> Any:
    raise ModelError("the model is closed")


def _read_file(path: str) -> bytes:
    try:
        with open(path, "rb") as file:
            return file.read()
    except FileNotFoundError as err:
        raise ModelError(f"{path}: no such model file") from err
    except IsADirectoryError as err:
        raise ModelError(f"{path}: is a directory, not a model file") from err
    except OSError as err:
        raise ModelError(f"{path}: cannot read model file: {err.strerror or err}") from err


def load_model(
    path: str | os.PathLike[str],
    defaults: ModelDefaults = ModelDefaults(),
    runtime: str = "auto",
    num_threads: int = 1,
) -> Model:
    """Load, check and prepare the model at ``path``.

    ``defaults`` fill what a bare file (no ``metadata.json``) lacks. ``runtime`` is ``"auto"``,
    ``"tflite-runtime"`` or ``"ai-edge-litert"`` (``$DDSP_DEVICE_RUNTIME`` may force one under
    ``"auto"``). Raises :class:`ModelError` naming the file and each problem (unreadable, not a
    TFLite flatbuffer, truncated, Flex ops, tensors not as the contract says, bad metadata,
    runtime refusal) and :class:`RuntimeUnavailableError` when no runtime can be imported.
    """
    path = os.fspath(path)
    if runtime not in RUNTIME_CHOICES:
        raise ModelError(f"runtime: unknown runtime {runtime!r}; choose one of {', '.join(RUNTIME_CHOICES)}")
    if isinstance(num_threads, bool) or not isinstance(num_threads, int) or num_threads < 1:
        raise ValueError(f"num_threads: must be an integer >= 1, not {num_threads!r}")

    data = _read_file(path)
    summary = check_flatbuffer(data, path)
    flex = sorted({code for code in summary.custom_codes if code.startswith("Flex")})
    if flex:
        raise ModelError(f"{path}: needs Flex (SELECT_TF_OPS) ops: {', '.join(flex)}; not supported")
    metadata = metadata_from_bytes(data, path, summary.size)

    interpreter_class, runtime_name = import_interpreter(runtime)
    with quiet_native_stderr():  # the runtimes announce their XNNPACK delegate on fd 2
        try:
            interpreter = interpreter_class(model_content=data, num_threads=num_threads)
        except (ValueError, RuntimeError) as err:
            raise ModelError(f"{path}: {runtime_name} cannot load the model: {_one_line(err)}") from err
        try:
            interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as err:
            raise ModelError(f"{path}: {runtime_name} cannot prepare the model: {_one_line(err)}") from err

    binding, problems = bind_tensors(interpreter)
    if problems:
        raise binding_error(path, problems)
    info = _make_info(path, metadata, defaults, binding, runtime_name)
    log.info(
        "loaded model %s (%s): T=%d, S=%d, %s in / %s out, %s Hz frames, via %s",
        info.name, path, info.window_frames, info.state_size,
        "int8" if info.quantised_inputs else "float32", "int8" if info.quantised_outputs else "float32",
        info.frame_rate_hz, runtime_name,
    )  # fmt: skip
    return Model(interpreter, binding, info, data)


def _one_line(err: BaseException) -> str:
    """A runtime's (often multi-line) error message as one line."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return " | ".join(lines) or type(err).__name__
