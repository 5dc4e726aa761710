"""The model check: is this ``.tflite`` file a model the box can play? Asked in a child process.

:func:`check_model_file` starts a **child process** that reads the file, walks the flatbuffer,
loads it with the TFLite runtime exactly as the daemon does (:func:`ddsp_device.model.load_model`)
and runs inference steps, then prints one JSON report. A crash inside the TFLite library (a
segfault on a hostile file), a hang or a runaway allocation ends the child, never the caller: the
caller reports "the TFLite runtime crashed while loading FILE (signal 11, SIGSEGV)". Files over
:data:`MAX_MODEL_BYTES` are refused before anything reads them. The daemon checks every model
this way before loading it itself; ``ddsp-device models`` (the CLI) shows the report.

By hand: ``python -m ddsp_device.model.check --child FILE`` runs the child's check in this process.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import math
import os
import signal
import stat
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ModelError

__all__ = [
    "MAX_MODEL_BYTES",
    "DEFAULT_TIMEOUT_S",
    "CHILD_MEMORY_LIMIT_BYTES",
    "FAULT_ENV",
    "CheckResult",
    "check_model_file",
    "human_size",
    "jsonable",
]

log = logging.getLogger(__name__)

#: Largest model file checked or installed. Models for the box are a few MB; the limit keeps a
#: stray 300 MB file from being read into memory on a 1 GB Pi.
MAX_MODEL_BYTES = 64 * 1024 * 1024
#: How long one check may take (start the child, import the runtime, load, one step).
DEFAULT_TIMEOUT_S = 10.0
#: Address-space limit of the checking child: a model that declares enormous tensors fails to
#: allocate there instead of pushing the daemon out of memory.
CHILD_MEMORY_LIMIT_BYTES = 1 << 30
#: Test hook, read by the child only: ``crash`` (SIGSEGV), ``hang``, ``exit`` (exit 3, no report).
FAULT_ENV = "DDSP_DEVICE_TEST_CHECK_FAULT"
_F0_PROBE_HZ = 220.0
_STEP_BUDGET_S = 0.2


# -- the check --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckResult:
    """What :func:`check_model_file` found.

    ``ok`` is True when the file plays on this box. ``problems`` holds one line per problem
    (each naming the file). ``info`` is the contract report, as JSON types: ``path``,
    ``file_size_bytes``, ``sha256``, the flatbuffer facts (``schema_version``,
    ``flatbuffer_size_bytes``, ``appended_bytes``, ``n_subgraphs``, ``custom_ops``,
    ``builtin_ops``), ``metadata`` (the ``metadata.json`` found, or ``{}``), ``runtime``
    (``{"name", "version"}``), ``tensors`` (each with ``direction``, ``name``, ``tensor_name``,
    ``index``, ``shape``, ``shape_signature``, ``dtype``, ``quantisation``), ``model`` (the
    :class:`~ddsp_device.model.ModelInfo` fields, when it loaded) and ``inference`` (one step:
    ``step_ms``, output maxima), each present as far as the check got. ``warnings`` are the
    loader's warnings (e.g. ignored trailing bytes).
    """

    ok: bool
    problems: list[str]
    info: dict[str, Any]
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "problems": list(self.problems), "warnings": list(self.warnings), "info": self.info}


def human_size(n_bytes: int) -> str:
    value = float(n_bytes)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024.0 or unit == "GiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024.0
    return f"{n_bytes} B"  # pragma: no cover


def _size_limit_problem(path: str, size: int, limit: int) -> str:
    return (
        f"{path}: {human_size(size)} is over the {human_size(limit)} limit for a model file "
        "(models for the box are a few MB)"
    )


def _defaults_dict(defaults: Any) -> dict[str, Any]:
    if defaults is None:
        return {}
    if dataclasses.is_dataclass(defaults):
        return dataclasses.asdict(defaults)
    return dict(defaults)


def _child_command(request: dict[str, Any]) -> list[str]:
    package_parent = str(Path(__file__).resolve().parents[2])
    bootstrap = (
        "import sys\n"
        "sys.path[:] = [p for p in sys.path if p not in ('', '.')]\n"
        f"sys.path.insert(0, {package_parent!r}) if {package_parent!r} not in sys.path else None\n"
        "from ddsp_device.model.check import _child_main\n"
        "sys.exit(_child_main(sys.argv[1:]))\n"
    )
    return [sys.executable, "-c", bootstrap, "--child-request", json.dumps(request)]


def check_model_file(
    path: str | os.PathLike[str],
    timeout_s: float = DEFAULT_TIMEOUT_S,
    *,
    runtime: str = "auto",
    defaults: Any = None,
    size_limit_bytes: int = MAX_MODEL_BYTES,
    memory_limit_bytes: int | None = CHILD_MEMORY_LIMIT_BYTES,
) -> CheckResult:
    """Check the model file at ``path`` in a child process; never raises for a bad file.

    Args:
        path: the file (shown as given in every message).
        timeout_s: the child is killed after this long and the check fails.
        runtime: ``"auto"``, ``"tflite-runtime"`` or ``"ai-edge-litert"`` (as ``[model] runtime``).
        defaults: a :class:`~ddsp_device.model.ModelDefaults` for bare files (or its fields as
            a dict); None for the packaged defaults.
        size_limit_bytes: larger files are refused before anything reads them.
        memory_limit_bytes: the child's address-space limit; None for none.
    Returns:
        A :class:`CheckResult`; ``ok`` False with one line per problem when the file cannot
        play, the child crashed (the signal is named), timed out, or could not be started.
    """
    shown = os.fspath(path)
    info: dict[str, Any] = {"path": shown}
    try:
        st = os.stat(shown)
    except FileNotFoundError:
        return CheckResult(False, [f"{shown}: no such file"], info)
    except OSError as err:
        return CheckResult(False, [f"{shown}: cannot read: {err.strerror or err}"], info)
    if stat.S_ISDIR(st.st_mode):
        return CheckResult(False, [f"{shown}: is a directory, not a model file"], info)
    if not stat.S_ISREG(st.st_mode):
        return CheckResult(False, [f"{shown}: not a regular file (a device, pipe or socket), not a model file"], info)
    info["file_size_bytes"] = st.st_size
    if st.st_size > size_limit_bytes:
        return CheckResult(False, [_size_limit_problem(shown, st.st_size, size_limit_bytes)], info)

    request = {
        "path": shown,
        "runtime": runtime,
        "defaults": _defaults_dict(defaults),
        "size_limit_bytes": int(size_limit_bytes),
        "memory_limit_bytes": memory_limit_bytes,
    }
    env = dict(os.environ)
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env.setdefault(var, "1")
    started = time.monotonic()
    try:
        proc = subprocess.run(
            _child_command(request), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=env, timeout=timeout_s, check=False,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return CheckResult(False, [f"{shown}: the check did not finish within {timeout_s:g} s; gave up on it"], info)
    except OSError as err:
        return CheckResult(False, [f"{shown}: cannot start the model check ({err.strerror or err})"], info)
    log.debug("checked %s in %.2f s (child exit status %d)", shown, time.monotonic() - started, proc.returncode)

    if proc.returncode < 0:
        signum = -proc.returncode
        try:
            signame = signal.Signals(signum).name
        except ValueError:
            signame = "unknown signal"
        if signum == signal.SIGKILL:
            problem = f"the model check for {shown} was killed (signal {signum}, {signame}), perhaps for memory"
        else:
            problem = f"the TFLite runtime crashed while loading {shown} (signal {signum}, {signame})"
        return CheckResult(False, [problem], info)
    report = _parse_report(proc.stdout)
    if report is None:
        detail = _last_line(proc.stderr)
        problem = f"{shown}: the model check ended without a report (exit status {proc.returncode})"
        return CheckResult(False, [problem + (f": {detail}" if detail else "")], info)
    info.update(report.get("info") or {})
    problems = [str(p) for p in report.get("problems") or []]
    warnings = [str(w) for w in report.get("warnings") or []]
    ok = bool(report.get("ok")) and not problems
    if not ok and not problems:
        problems = [f"{shown}: not playable (no reason given)"]
    return CheckResult(ok, problems, info, warnings)


def _parse_report(stdout: bytes) -> dict[str, Any] | None:
    for line in reversed(stdout.decode("utf-8", "replace").splitlines()):
        line = line.strip()
        if not line:
            continue
        try:
            doc = json.loads(line)
        except ValueError:
            return None
        return doc if isinstance(doc, dict) else None
    return None


def _last_line(data: bytes) -> str:
    lines = [line.strip() for line in data.decode("utf-8", "replace").splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


# -- the child --------------------------------------------------------------------------------------


class _CollectWarnings(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(Exception):
            self.messages.append(" ".join(record.getMessage().split()))


def _child_main(argv: list[str]) -> int:
    """Entry point of the checking child: one JSON report on stdout, exit 0 (or die trying)."""
    if len(argv) == 2 and argv[0] == "--child-request":
        request = json.loads(argv[1])
    elif len(argv) == 2 and argv[0] == "--child":  # by hand: python -m ddsp_device.model.check --child FILE
        request = {"path": argv[1]}
    else:
        print("usage: python -m ddsp_device.model.check --child FILE", file=sys.stderr)
        return 2
    # The report goes to the real stdout; anything a C library prints goes to stderr instead.
    report_fd = os.dup(1)
    os.dup2(2, 1)
    _limit_child(request.get("memory_limit_bytes", CHILD_MEMORY_LIMIT_BYTES))

    fault = os.environ.get(FAULT_ENV, "")
    if fault == "crash":
        os.kill(os.getpid(), signal.SIGSEGV)
    elif fault == "hang":
        time.sleep(3600)
    elif fault == "exit":
        print("simulated failure before the report", file=sys.stderr)
        return 3

    collector = _CollectWarnings()
    logging.getLogger().addHandler(collector)
    logging.getLogger().setLevel(logging.WARNING)
    path = str(request["path"])
    try:
        report = _check_here(
            path,
            runtime=str(request.get("runtime", "auto")),
            defaults=request.get("defaults") or {},
            size_limit_bytes=int(request.get("size_limit_bytes", MAX_MODEL_BYTES)),
        )
    except Exception as err:  # noqa: BLE001 - the child reports anything, the caller decides
        report = {"ok": False, "info": {}, "problems": [f"{path}: unexpected error while checking: "
                                                        f"{type(err).__name__}: {err}"]}
    report["warnings"] = collector.messages
    with os.fdopen(report_fd, "w", encoding="utf-8") as out:
        out.write(json.dumps(jsonable(report), allow_nan=False) + "\n")
    return 0


def _limit_child(memory_limit_bytes: int | None) -> None:
    """No core dump, a lower priority than the daemon, and bounded memory."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not on Linux
        return
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if memory_limit_bytes:
        with contextlib.suppress(ValueError, OSError):
            soft, hard = resource.getrlimit(resource.RLIMIT_AS)
            limit = int(memory_limit_bytes)
            if hard != resource.RLIM_INFINITY:
                limit = min(limit, hard)
            resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    with contextlib.suppress(OSError):
        os.nice(10)


def jsonable(obj: Any) -> Any:
    """``obj`` as plain JSON types (numpy values via ``tolist()``, NaN as None)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if obj is None or isinstance(obj, (str, int, bool)):
        return obj
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    tolist = getattr(obj, "tolist", None)
    if callable(tolist):
        return jsonable(tolist())
    return str(obj)


def _check_here(path: str, runtime: str, defaults: dict[str, Any], size_limit_bytes: int) -> dict[str, Any]:
    """The check itself (in the child): read, walk, report the tensors, load, one step."""
    from .flatbuffer import check_flatbuffer
    from .loader import ModelDefaults, load_model
    from .metadata import metadata_from_bytes

    problems: list[str] = []
    info: dict[str, Any] = {"path": path}
    report = {"ok": False, "problems": problems, "info": info}
    try:
        with open(path, "rb") as file:
            size = os.fstat(file.fileno()).st_size
            if size > size_limit_bytes:
                problems.append(_size_limit_problem(path, size, size_limit_bytes))
                return report
            data = file.read(size_limit_bytes + 1)
    except OSError as err:
        problems.append(f"{path}: cannot read: {err.strerror or err}")
        return report
    if len(data) > size_limit_bytes:
        problems.append(_size_limit_problem(path, len(data), size_limit_bytes))
        return report
    info["file_size_bytes"] = len(data)
    info["sha256"] = hashlib.sha256(data).hexdigest()

    try:
        summary = check_flatbuffer(data, path)
    except ModelError as err:
        problems.append(str(err))
        return report  # never hand such bytes to a runtime
    info.update(
        schema_version=summary.schema_version,
        flatbuffer_size_bytes=summary.size,
        appended_bytes=len(data) - summary.size,
        n_subgraphs=summary.n_subgraphs,
        custom_ops=list(summary.custom_codes),
        builtin_ops=[{"code": code, "version": version} for code, version in summary.builtin_codes],
    )
    with contextlib.suppress(ModelError):  # load_model reports a bad metadata.json below
        info["metadata"] = metadata_from_bytes(data, path, summary.size) or {}
    if not any(code.startswith("Flex") for code in summary.custom_codes):
        _tensor_report(data, runtime, info)

    try:
        model_defaults = ModelDefaults(**defaults)
    except (TypeError, ValueError) as err:
        problems.append(f"{path}: bad model defaults: {err}")
        return report
    try:
        model = load_model(path, defaults=model_defaults, runtime=runtime)
    except ModelError as err:
        problems.extend(_problem_lines(path, err))
        return report
    with model:
        info["model"] = dataclasses.asdict(model.info)
        info["inference"] = _one_step(model, path, problems)
    report["ok"] = not problems
    return report


def _problem_lines(path: str, err: ModelError) -> list[str]:
    listed = getattr(err, "problems", None)
    if listed:
        return [f"{path}: {problem}" for problem in listed]
    return [" ".join(str(err).split())]


def _runtime_version(name: str) -> str | None:
    try:
        from importlib.metadata import PackageNotFoundError, version
    except ImportError:  # pragma: no cover
        return None
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def _tensor_report(data: bytes, runtime: str, info: dict[str, Any]) -> None:
    """Every input and output tensor, by the name the contract binds (report only: best effort)."""
    from .binding import _choose_signature, _names_by_index
    from .runtime import import_interpreter

    try:
        interpreter_class, runtime_name = import_interpreter(runtime)
    except ModelError:
        return  # load_model says why
    info["runtime"] = {"name": runtime_name, "version": _runtime_version(runtime_name)}
    try:
        interpreter = interpreter_class(model_content=data, num_threads=1)
        interpreter.allocate_tensors()
    except (ValueError, RuntimeError):
        return
    signature_problems: list[str] = []
    key, signature = _choose_signature(interpreter, signature_problems)
    info["signature"] = key
    tensors = []
    sides = (("input", interpreter.get_input_details()), ("output", interpreter.get_output_details()))
    for direction, details in sides:
        mapping = signature[f"{direction}s"] if signature else None
        names = _names_by_index(details, mapping)
        for detail in details:
            index = int(detail["index"])
            tensors.append(
                {
                    "direction": direction,
                    "name": names.get(index, detail["name"]),
                    "tensor_name": detail["name"],
                    "index": index,
                    "shape": [int(d) for d in detail["shape"]],
                    "shape_signature": [int(d) for d in detail.get("shape_signature", detail["shape"])],
                    "dtype": _dtype_name(detail["dtype"]),
                    "quantisation": _quantisation(detail),
                }
            )
    info["tensors"] = tensors


def _dtype_name(dtype: Any) -> str:
    import numpy as np

    return np.dtype(dtype).name


def _quantisation(detail: dict[str, Any]) -> dict[str, Any] | None:
    params = detail.get("quantization_parameters") or {}
    scales = [float(s) for s in list(params.get("scales", []))]
    zero_points = [int(z) for z in list(params.get("zero_points", []))]
    if not scales:
        scale, zero_point = detail.get("quantization", (0.0, 0))
        if not scale:
            return None
        scales, zero_points = [float(scale)], [int(zero_point)]
    if len(scales) == 1:
        return {"scale": scales[0], "zero_point": zero_points[0] if zero_points else 0}
    return {"scales": scales, "zero_points": zero_points, "axis": int(params.get("quantized_dimension", 0))}


def _one_step(model: Any, path: str, problems: list[str]) -> dict[str, Any]:
    """Run the model: reset, then steps for up to ~0.2 s; refuse non-finite outputs."""
    import numpy as np

    info = model.info
    f0_hz = min(max(_F0_PROBE_HZ, info.f0_min_hz), info.f0_max_hz)
    loudness = 0.5 * (info.loudness_min + info.loudness_max)
    model.reset(f0_hz=f0_hz)
    times = []
    deadline = time.perf_counter() + _STEP_BUDGET_S
    while True:
        start = time.perf_counter()
        model.step(f0_hz, loudness)
        end = time.perf_counter()
        times.append(end - start)
        if end > deadline or len(times) >= 50:
            break
    outputs = {
        "harmonic_amps": model.harmonic_amps,
        "harmonic_dist": model.harmonic_dist,
        "noise_mags": model.noise_mags,
    }
    for name, values in outputs.items():
        if not np.all(np.isfinite(values)):
            problems.append(f"{path}: one inference step gave non-finite {name} (NaN or infinity)")
    return {
        "f0_hz": f0_hz,
        "loudness": loudness,
        "steps": len(times),
        "first_step_ms": 1000.0 * times[0],
        "step_ms": 1000.0 * float(np.median(times)),
        **{f"{name}_max": float(np.max(values)) for name, values in outputs.items()},
    }


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1:]))
