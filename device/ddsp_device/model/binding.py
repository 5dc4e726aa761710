"""Binding a loaded interpreter's tensors to the model contract (``models/README.md``), by name.

Names come first from the model's signature (``serving_default``), then from the tensor names
(exact, or ``serving_default_<name>:0`` as the converter writes them). Never by position. Every
problem found is collected, so that one error lists them all.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from ddsp_device.errors import ModelError

N_HARMONICS = 64
N_NOISE_BANDS = 65
REQUIRED_INPUTS = ("f0_hz", "loudness")
REQUIRED_OUTPUTS = ("harmonic_amps", "harmonic_dist", "noise_mags")
STATE_INPUT, STATE_OUTPUT = "state_in", "state_out"
CONTRACT_INPUTS = (*REQUIRED_INPUTS, STATE_INPUT)
CONTRACT_OUTPUTS = (*REQUIRED_OUTPUTS, STATE_OUTPUT)
SUPPORTED_DTYPES = (np.dtype(np.float32), np.dtype(np.int8))
_LAST_DIM = {"harmonic_amps": N_HARMONICS, "harmonic_dist": N_HARMONICS, "noise_mags": N_NOISE_BANDS}
_SERVING_NAME = re.compile(r"^serving_default_(.+):0$")


@dataclass(frozen=True)
class TensorBinding:
    """One contract tensor: interpreter index, shape, dtype and int8 quantisation.

    For float32 tensors ``scale`` is 1.0 and ``zero_point`` 0.
    """

    name: str
    index: int
    tensor_name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    scale: float
    zero_point: int

    @property
    def quantised(self) -> bool:
        return self.dtype == np.int8


@dataclass(frozen=True)
class Binding:
    """All contract tensors of a model that follows the contract.

    ``window_frames`` is ``T``; ``state_size`` is ``S`` (0 for a window model).
    """

    tensors: dict[str, TensorBinding]
    window_frames: int
    state_size: int
    signature_key: str | None


def _fmt_shape(shape: Any) -> str:
    return "[" + ", ".join(str(int(d)) for d in shape) + "]"


def _names_by_index(details: list[dict[str, Any]], mapping: dict[str, int] | None) -> dict[int, str]:
    """Map tensor index -> contract-side name, from a signature mapping or from tensor names."""
    if mapping is not None:
        return {int(index): name for name, index in mapping.items()}
    names = {}
    for detail in details:
        match = _SERVING_NAME.match(detail["name"])
        names[int(detail["index"])] = match.group(1) if match else detail["name"]
    return names


def _choose_signature(interpreter: Any, problems: list[str]) -> tuple[str | None, dict[str, Any] | None]:
    get_signatures = getattr(interpreter, "_get_full_signature_list", None)
    signatures = get_signatures() if get_signatures is not None else {}
    if not signatures:
        return None, None
    if "serving_default" in signatures:
        key = "serving_default"
    elif len(signatures) == 1:
        key = next(iter(signatures))
    else:
        problems.append(f"several signatures ({', '.join(sorted(signatures))}) and none is serving_default")
        return None, None
    return key, signatures[key]


def bind_tensors(interpreter: Any) -> tuple[Binding | None, list[str]]:
    """Bind the contract tensors of an allocated interpreter.

    Returns ``(binding, problems)``: ``binding`` is None when ``problems`` (one message per
    problem, each naming its tensor) is not empty.
    """
    problems: list[str] = []
    input_details = interpreter.get_input_details()
    output_details = interpreter.get_output_details()
    key, signature = _choose_signature(interpreter, problems)
    if problems:
        return None, problems

    sides = (
        ("input", input_details, signature["inputs"] if signature else None, CONTRACT_INPUTS, REQUIRED_INPUTS),
        ("output", output_details, signature["outputs"] if signature else None, CONTRACT_OUTPUTS, REQUIRED_OUTPUTS),
    )
    found: dict[str, dict[str, Any]] = {}
    listing = []
    for kind, details, mapping, allowed, required in sides:
        by_index = {int(d["index"]): d for d in details}
        names = _names_by_index(details, mapping)
        listing.append(f"{kind}s {sorted(names.values())}")
        unexpected = []
        for index, name in names.items():
            if index not in by_index:
                problems.append(f"signature {kind} '{name}' is not a {kind} of the main subgraph")
            elif name not in allowed:
                unexpected.append(name)
            else:
                found[name] = by_index[index]
        missing = [name for name in required if name not in found]
        if missing:
            problems.append(f"missing {kind} tensor(s) {', '.join(missing)}")
        if unexpected:
            problems.append(f"unexpected {kind} tensor(s) {', '.join(sorted(unexpected))} (not in the contract)")
    if (STATE_INPUT in found) != (STATE_OUTPUT in found):
        have, lacks = (STATE_INPUT, STATE_OUTPUT) if STATE_INPUT in found else (STATE_OUTPUT, STATE_INPUT)
        problems.append(f"{have} without {lacks}: state models need both")
    if problems:
        problems.append("the model has " + " and ".join(listing))
        return None, problems

    tensors = {}
    for name, detail in found.items():
        binding = _check_tensor(name, detail, problems)
        if binding is not None:
            tensors[name] = binding
    if problems:
        return None, problems

    window_frames, state_size = _check_shapes(tensors, problems)
    if problems:
        return None, problems
    return Binding(tensors, window_frames, state_size, key), []


def _check_tensor(name: str, detail: dict[str, Any], problems: list[str]) -> TensorBinding | None:
    dtype = np.dtype(detail["dtype"])
    shape = tuple(int(d) for d in detail["shape"])
    signature = detail.get("shape_signature")
    ok = True
    if signature is not None and any(int(d) < 0 for d in signature):
        problems.append(
            f"{name}: dynamic shape {_fmt_shape(signature)} (-1 in the shape signature); shapes must be fixed"
        )
        ok = False
    if dtype not in SUPPORTED_DTYPES:
        problems.append(f"{name}: dtype {dtype.name} not supported; expected float32 or int8")
        ok = False
    scale, zero_point = 1.0, 0
    if ok and dtype == np.int8:
        params = detail.get("quantization_parameters") or {}
        scales = np.asarray(params.get("scales", ()), dtype=np.float64).ravel()
        zero_points = np.asarray(params.get("zero_points", ()), dtype=np.int64).ravel()
        if scales.size == 0:
            scale, zero_point = detail["quantization"]
            scales, zero_points = np.array([scale]), np.array([zero_point])
        if scales.size != 1 or zero_points.size != 1:
            problems.append(
                f"{name}: per-channel quantisation ({scales.size} scales); expected one scale and zero point"
            )
            ok = False
        else:
            scale, zero_point = float(scales[0]), int(zero_points[0])
            if not (np.isfinite(scale) and scale > 0):
                problems.append(f"{name}: int8 without a valid quantisation scale ({scale})")
                ok = False
            elif not -128 <= zero_point <= 127:
                problems.append(f"{name}: int8 zero point {zero_point} outside -128..127")
                ok = False
    if not ok:
        return None
    return TensorBinding(name, int(detail["index"]), detail["name"], shape, dtype, scale, zero_point)


def _check_shapes(tensors: dict[str, TensorBinding], problems: list[str]) -> tuple[int, int]:
    """Check every shape against the contract; return ``(T, S)``."""
    reference = tensors["f0_hz"]
    if len(reference.shape) == 2 and reference.shape[0] == 1 and reference.shape[1] >= 1:
        window_frames = reference.shape[1]
    else:
        problems.append(f"f0_hz: shape {_fmt_shape(reference.shape)}, expected [1, T] with T >= 1")
        window_frames = None

    windows = {}
    for name in (*REQUIRED_INPUTS, *REQUIRED_OUTPUTS):
        shape = tensors[name].shape
        if len(shape) >= 2:
            windows[name] = shape[1]
    if window_frames is not None and len(set(windows.values())) > 1:
        listed = ", ".join(f"{name} T={t}" for name, t in windows.items())
        problems.append(f"inconsistent window length T across tensors ({listed})")

    if window_frames is not None:
        expected = {"loudness": (1, window_frames)}
        expected.update({name: (1, window_frames, n) for name, n in _LAST_DIM.items()})
        for name, want in expected.items():
            shape = tensors[name].shape
            if shape != want:
                problems.append(f"{name}: shape {_fmt_shape(shape)}, expected {_fmt_shape(want)}")

    state_size = 0
    if STATE_INPUT in tensors:
        shape_in, shape_out = tensors[STATE_INPUT].shape, tensors[STATE_OUTPUT].shape
        for name, shape in ((STATE_INPUT, shape_in), (STATE_OUTPUT, shape_out)):
            if len(shape) != 2 or shape[0] != 1 or shape[1] < 1:
                problems.append(f"{name}: shape {_fmt_shape(shape)}, expected [1, S] with S >= 1")
        if shape_in != shape_out:
            problems.append(
                f"state_in shape {_fmt_shape(shape_in)} differs from state_out shape {_fmt_shape(shape_out)}"
            )
        if window_frames is not None and window_frames != 1:
            problems.append(f"state models need T = 1; f0_hz has T = {window_frames}")
        state_size = shape_in[-1] if shape_in else 0
    return window_frames or 0, state_size


def binding_error(source: str, problems: list[str]) -> ModelError:
    """One :class:`ModelError` for all ``problems`` of the file ``source``.

    The message is ``"<source>: not a ddsp-device model: <problem>; <problem>"``; the list is
    also kept as ``error.problems`` (one line each, for ``models check``).
    """
    error = ModelError(f"{source}: not a ddsp-device model: " + "; ".join(problems))
    error.problems = list(problems)
    return error
