"""``ddsp-device models``: list, check, add, select and remove models (over SSH, say).

    ddsp-device models list [--json]
    ddsp-device models check FILE [--json]
    ddsp-device models add FILE [--name NAME] [--force]
    ddsp-device models use NAME
    ddsp-device models remove NAME [--yes]

Every model file is checked in a **child process** (:func:`check_model_file`): the child reads the
file, walks the flatbuffer, loads it with the TFLite runtime exactly as the daemon does
(:func:`ddsp_device.model.load_model`) and runs one inference step, then prints one JSON report.
A crash inside the TFLite library (a segfault on a hostile file), a hang or a runaway allocation
ends the child, never the caller: the caller reports "the TFLite runtime crashed while loading
FILE (signal 11, SIGSEGV)". Files over :data:`MAX_MODEL_BYTES` are refused before anything reads
them. The daemon's reload path can call :func:`check_model_file` before loading a model itself.

The command functions (:func:`models_list`, :func:`models_check`, :func:`models_add`,
:func:`models_use`, :func:`models_remove`, or :func:`run` for any of them) take the parsed
arguments (see :func:`add_parser`) and two text streams, print one ``error: …`` line per problem
and return the exit status: 0 done, 1 a problem (a model that does not play, a refused name, a
file that cannot be written), 2 a configuration error (as every other command).

``models use`` writes the selection to the state directory (``state.json``) and sends SIGHUP to
the daemon whose pid the status socket reports; the daemon re-reads the selection on SIGHUP.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import errno
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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from .atomicfile import fsync_dir
from .errors import ConfigError, DdspDeviceError, ModelError
from .library import (
    MODEL_SUFFIX,
    bundled_models_dir,
    is_path,
    resolve_model,
    search_path,
    state_dir,
    validate_model_name,
)

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
#: The model's frame rate for bare files comes from ``[model] fallback_*``; see ``_defaults``.
_F0_PROBE_HZ = 220.0
_STEP_BUDGET_S = 0.2
_STATUS_TIMEOUT_S = 2.0
_POLL_INTERVAL_S = 0.1
_PERMISSION_HINT = "run it with sudo, or as a member of the service's group"

EXIT_OK = 0
EXIT_PROBLEM = 1
EXIT_CONFIG = 2


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


def _human_size(n_bytes: int) -> str:
    value = float(n_bytes)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024.0 or unit == "GiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024.0
    return f"{n_bytes} B"  # pragma: no cover


def _size_limit_problem(path: str, size: int, limit: int) -> str:
    return (
        f"{path}: {_human_size(size)} is over the {_human_size(limit)} limit for a model file "
        "(models for the box are a few MB)"
    )


def _defaults_dict(defaults: Any) -> dict[str, Any]:
    if defaults is None:
        return {}
    if dataclasses.is_dataclass(defaults):
        return dataclasses.asdict(defaults)
    return dict(defaults)


def _child_command(request: dict[str, Any]) -> list[str]:
    package_parent = str(Path(__file__).resolve().parents[1])
    bootstrap = (
        "import sys\n"
        "sys.path[:] = [p for p in sys.path if p not in ('', '.')]\n"
        f"sys.path.insert(0, {package_parent!r}) if {package_parent!r} not in sys.path else None\n"
        "from ddsp_device.models_cli import _child_main\n"
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
    elif len(argv) == 2 and argv[0] == "--child":  # by hand: python -m ddsp_device.models_cli --child FILE
        request = {"path": argv[1]}
    else:
        print("usage: python -m ddsp_device.models_cli --child FILE", file=sys.stderr)
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
        out.write(json.dumps(_jsonable(report), allow_nan=False) + "\n")
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


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if obj is None or isinstance(obj, (str, int, bool)):
        return obj
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    tolist = getattr(obj, "tolist", None)
    if callable(tolist):
        return _jsonable(tolist())
    return str(obj)


def _check_here(path: str, runtime: str, defaults: dict[str, Any], size_limit_bytes: int) -> dict[str, Any]:
    """The check itself (in the child): read, walk, report the tensors, load, one step."""
    from .model import ModelDefaults, load_model
    from .model.flatbuffer import check_flatbuffer
    from .model.metadata import metadata_from_bytes

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
    from .model.binding import _choose_signature, _names_by_index
    from .model.runtime import import_interpreter

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


# -- formatting -------------------------------------------------------------------------------------


def _fmt_shape(shape: Any) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]" if isinstance(shape, list) else "-"


def _fmt_quant(q: Any) -> str:
    if not isinstance(q, dict):
        return ""
    if "scale" in q:
        return f"scale {q['scale']:.6g}, zero point {q['zero_point']}"
    return f"per-channel ({len(q.get('scales', []))} scales, axis {q.get('axis')})"


def _io_text(quantised_in: Any, quantised_out: Any) -> str:
    return f"{'int8' if quantised_in else 'float'}/{'int8' if quantised_out else 'float'}"


def format_check(result: CheckResult) -> str:
    """The contract report of one file, for a terminal (problems are printed separately)."""
    info = result.info
    path = info.get("path", "?")
    lines = [f"{path}: {'playable' if result.ok else 'NOT playable'}"]

    def row(label: str, value: str) -> None:
        lines.append(f"  {label:<14}{value}")

    if "file_size_bytes" in info:
        size = f"{_human_size(info['file_size_bytes'])} ({info['file_size_bytes']} bytes)"
        if "flatbuffer_size_bytes" in info:
            size += f"; flatbuffer {info['flatbuffer_size_bytes']} bytes + {info['appended_bytes']} appended"
        row("file", size)
    if "sha256" in info:
        row("sha256", info["sha256"])
    runtime = info.get("runtime")
    if isinstance(runtime, dict):
        row("runtime", f"{runtime.get('name')} {runtime.get('version') or ''}".rstrip())
    if "schema_version" in info:
        ops = (f"schema {info['schema_version']}, {info['n_subgraphs']} subgraph(s), "
               f"{len(info['builtin_ops'])} builtin op code(s)")
        if info.get("custom_ops"):
            ops += f", custom: {', '.join(info['custom_ops'])}"
        row("flatbuffer", ops)
    model = info.get("model")
    if isinstance(model, dict):
        kind = f"state model, S = {model['state_size']}" if model["state_size"] else "window model (no state)"
        row("name", str(model["name"]))
        row("window", f"T = {model['window_frames']} frame(s), {kind}")
        row("quantisation", f"inputs {'int8' if model['quantised_inputs'] else 'float32'}, "
                            f"outputs {'int8' if model['quantised_outputs'] else 'float32'}")
        row("sample rate", f"{model['sample_rate_hz']} Hz")
        row("frame rate", f"{model['frame_rate_hz']:g} Hz")
        row("f0 range", f"{model['f0_min_hz']:g} .. {model['f0_max_hz']:g} Hz")
        row("loudness", f"{model['loudness_min']:g} .. {model['loudness_max']:g}")
        row("licence", str(model["licence"]))
        row("provenance", str(model["provenance"] or "-"))
        row("exported at", str(model["exported_at"] or "-"))
        bare = "none (bare file: [model] fallback_* values)"
        row("metadata", "metadata.json" if model["metadata_source"] == "metadata.json" else bare)
        if model.get("extra"):
            row("other keys", ", ".join(sorted(model["extra"])))
    elif isinstance(info.get("metadata"), dict):
        row("metadata", json.dumps(info["metadata"], sort_keys=True) if info["metadata"] else "none")
    tensors = info.get("tensors")
    if isinstance(tensors, list) and tensors:
        lines.append("  tensors" + (f" (signature {info['signature']})" if info.get("signature") else ""))
        table = [
            (t["direction"], t["name"], _fmt_shape(t["shape_signature"]), t["dtype"], _fmt_quant(t["quantisation"]),
             t["tensor_name"] if t["tensor_name"] != t["name"] else "")
            for t in tensors
        ]
        widths = [max(len(r[i]) for r in table) for i in range(5)]
        for r in table:
            cells = [r[i].ljust(widths[i]) for i in range(5)] + ([f"({r[5]})"] if r[5] else [])
            lines.append("    " + "  ".join(cells).rstrip())
    inference = info.get("inference")
    if isinstance(inference, dict):
        row("inference", f"{inference['steps']} step(s), {inference['step_ms']:.3f} ms per step (median); "
                         f"at f0 {inference['f0_hz']:g} Hz, loudness {inference['loudness']:g}: max amplitude "
                         f"{inference['harmonic_amps_max']:.3g}, max noise {inference['noise_mags_max']:.3g}")
    for warning in result.warnings:
        row("warning", warning)
    return "\n".join(lines)


# -- shared plumbing for the commands ---------------------------------------------------------------


class _Failed(Exception):
    """A command ends with these problems (one ``error:`` line each) and this status."""

    def __init__(self, problems: list[str] | str, status: int = EXIT_PROBLEM):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        self.status = status
        super().__init__("; ".join(self.problems))


def _os_problem(err: OSError, doing: str) -> str:
    where = f" {err.filename}" if err.filename else ""
    text = f"{doing}{where}: {err.strerror or err}"
    if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        text += f" ({_PERMISSION_HINT})"
    return text


def _guard(command: Callable[..., int]) -> Callable[..., int]:
    """Turn every expected failure into ``error:`` lines and an exit status; never a traceback.

    The wrapped command is called as ``command(args, stdout=None, stderr=None, stdin=None)``
    (None: the ``sys`` stream).
    """

    def wrapper(
        args: argparse.Namespace,
        stdout: TextIO | None = None,
        stderr: TextIO | None = None,
        stdin: TextIO | None = None,
    ) -> int:
        out = stdout if stdout is not None else sys.stdout
        err = stderr if stderr is not None else sys.stderr
        try:
            return command(args, out, err, stdin if stdin is not None else sys.stdin)
        except _Failed as failed:
            problems, status = failed.problems, failed.status
        except ConfigError as error:
            problems, status = error.problems, EXIT_CONFIG
        except DdspDeviceError as error:
            problems, status = [" ".join(str(error).split())], EXIT_PROBLEM
        except OSError as error:
            problems, status = [_os_problem(error, "cannot access")], EXIT_PROBLEM
        for problem in problems:
            print(f"error: {problem}", file=err)
        return status

    wrapper.__name__ = command.__name__
    wrapper.__qualname__ = command.__qualname__
    wrapper.__doc__ = command.__doc__
    return wrapper


@dataclass(frozen=True)
class _Settings:
    directory: str | None
    config_name: str
    runtime: str
    defaults: Any


def _settings(args: argparse.Namespace) -> _Settings:
    from .config import load_config
    from .library import model_defaults

    cfg = load_config(getattr(args, "config", None), getattr(args, "overrides", None) or [])
    return _Settings(cfg.model.directory or None, cfg.model.name, cfg.model.runtime, model_defaults(cfg))


def _check(path: str | os.PathLike[str], settings: _Settings, args: argparse.Namespace) -> CheckResult:
    timeout_s = getattr(args, "timeout", None) or DEFAULT_TIMEOUT_S
    return check_model_file(path, timeout_s, runtime=settings.runtime, defaults=settings.defaults)


def _selection() -> tuple[str | None, Path]:
    """The model chosen with ``models use`` (None when none) and the state file, read without
    creating anything when the state directory does not exist yet."""
    from .daemon.state import STATE_FILENAME, StateStore

    directory = state_dir()
    path = directory / STATE_FILENAME
    if not path.exists():
        return None, path
    return StateStore(directory).selected_model, path


def _active(settings: _Settings) -> tuple[str, str]:
    """``(name, why)``: the model the daemon plays, as the daemon decides it."""
    selected, _ = _selection()
    if selected:
        return selected, "chosen with 'models use'"
    return settings.config_name, "[model] name in the config"


def _resolve_quietly(name: str, directory: str | None) -> Path | None:
    try:
        return resolve_model(name, directory)
    except ModelError:
        return None


def _same_file(a: Path | None, b: Path | None) -> bool:
    if a is None or b is None:
        return False
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _role(directory: Path, settings: _Settings) -> str:
    if settings.directory and directory == Path(settings.directory):
        return "[model] directory"
    if directory == state_dir() / "models":
        return "models directory"
    bundled = bundled_models_dir()
    if bundled is not None and directory == bundled:
        return "bundled"
    return "other"  # pragma: no cover


def _match_owner(path: Path, directory: Path) -> None:
    """As root, give ``path`` the owner of ``directory`` so that the service user can use it."""
    if os.geteuid() != 0:
        return
    with contextlib.suppress(OSError):
        st = os.stat(directory)
        os.chown(path, st.st_uid, st.st_gid)


def _daemon_status(socket_path: str | None) -> dict[str, Any] | None:
    """The daemon's status, or None when none answers (for notes, never an error)."""
    from .daemon.status import StatusError, query_status

    try:
        return query_status(socket_path, timeout_s=0.5)
    except StatusError:
        return None


# -- models check -----------------------------------------------------------------------------------


@_guard
def models_check(args: argparse.Namespace, stdout: TextIO, stderr: TextIO, stdin: TextIO) -> int:
    """``models check FILE [--json]``: the contract report; 0 if the file plays here."""
    settings = _settings(args)
    result = _check(args.file, settings, args)
    if getattr(args, "json", False):
        print(json.dumps(_jsonable(result.to_dict()), indent=2, allow_nan=False), file=stdout)
    else:
        print(format_check(result), file=stdout)
    if result.ok:
        return EXIT_OK
    raise _Failed(result.problems)


# -- models list ------------------------------------------------------------------------------------


def _list_entries(settings: _Settings, args: argparse.Namespace) -> list[dict[str, Any]]:
    entries: dict[str, dict[str, Any]] = {}
    for directory in search_path(settings.directory):
        try:
            files = sorted(p for p in directory.iterdir() if p.name.endswith(MODEL_SUFFIX))
        except OSError:
            continue  # missing or unreadable: nothing to list there
        for path in files:
            name = path.name[: -len(MODEL_SUFFIX)]
            if not name or name.startswith(".") or not path.is_file():
                continue
            if name in entries:
                entries[name]["shadows"].append(str(path))
                continue
            entries[name] = {"name": name, "path": str(path), "directory": str(directory),
                             "source": _role(directory, settings), "shadows": []}
    for entry in entries.values():
        result = _check(entry["path"], settings, args)
        model = result.info.get("model") or {}
        entry.update(
            size_bytes=result.info.get("file_size_bytes"),
            ok=result.ok,
            problems=result.problems,
            display_name=model.get("name"),
            sample_rate_hz=model.get("sample_rate_hz"),
            frame_rate_hz=model.get("frame_rate_hz"),
            window_frames=model.get("window_frames"),
            state_size=model.get("state_size"),
            quantised_inputs=model.get("quantised_inputs"),
            quantised_outputs=model.get("quantised_outputs"),
            licence=model.get("licence"),
        )
    return list(entries.values())


def _strip_path(problem: str, path: str) -> str:
    prefix = f"{path}: "
    return problem[len(prefix):] if problem.startswith(prefix) else problem


def _format_list(doc: dict[str, Any]) -> str:
    models = doc["models"]
    if not models:
        return f"no models in {', '.join(doc['search_path'])}"
    header = ("", "NAME", "SIZE", "RATE", "FRAMES", "T", "I/O", "LICENCE", "DIRECTORY")
    rows = [header]
    for m in models:
        size = _human_size(m["size_bytes"]) if isinstance(m["size_bytes"], int) else "-"
        where = f"{m['directory']} ({m['source']})"
        if m["ok"]:
            rows.append(("*" if m["active"] else "", m["name"], size, f"{m['sample_rate_hz']} Hz",
                         f"{m['frame_rate_hz']:g} Hz", str(m["window_frames"]),
                         _io_text(m["quantised_inputs"], m["quantised_outputs"]), str(m["licence"]), where))
        else:
            rows.append(("*" if m["active"] else "", m["name"], size, "-", "-", "-", "-", "-", where))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = []
    for r, m in zip(rows, [None, *models], strict=True):
        lines.append("  ".join(r[i].ljust(widths[i]) for i in range(len(header))).rstrip())
        if m is not None and not m["ok"]:
            reason = _strip_path(m["problems"][0], m["path"]) if m["problems"] else "not playable"
            lines.append(f"{'':{widths[0]}}    broken: {reason}")
    active = doc["active"]
    line = f"* active: {active['name']} ({active['why']})"
    if active["path"] is None:
        line += f"; NOT FOUND in {', '.join(doc['search_path'])}"
    elif not any(m["active"] for m in models):
        line += f": {active['path']}"
    lines.append(line)
    daemon = doc.get("daemon")
    if daemon is not None:
        lines.append(f"  the daemon (pid {daemon.get('pid')}) is playing {daemon.get('model')}")
    return "\n".join(lines)


@_guard
def models_list(args: argparse.Namespace, stdout: TextIO, stderr: TextIO, stdin: TextIO) -> int:
    """``models list [--json]``: every model in the search path, checked, with the active one."""
    settings = _settings(args)
    active_name, why = _active(settings)
    active_path = _resolve_quietly(active_name, settings.directory)
    entries = _list_entries(settings, args)
    for entry in entries:
        entry["active"] = _same_file(Path(entry["path"]), active_path)
    status = _daemon_status(getattr(args, "socket", None))
    doc = {
        "search_path": [str(d) for d in search_path(settings.directory)],
        "active": {"name": active_name, "why": why, "path": str(active_path) if active_path else None},
        "daemon": {"pid": status.get("pid"), "model": status.get("model")} if status else None,
        "models": entries,
    }
    if getattr(args, "json", False):
        print(json.dumps(_jsonable(doc), indent=2, allow_nan=False), file=stdout)
    else:
        print(_format_list(doc), file=stdout)
    return EXIT_OK


# -- models add -------------------------------------------------------------------------------------


def _default_name(source: Path) -> str:
    name = source.name
    return name[: -len(MODEL_SUFFIX)] if name.lower().endswith(MODEL_SUFFIX) else source.stem


def _install_copy(source: Path, target: Path, expected_sha256: str | None, *, replace: bool) -> int:
    """Copy ``source`` to ``target`` atomically (temp file, fsync, rename, fsync of the directory).

    Without ``replace`` an existing ``target`` is never overwritten, even by a race. Returns the
    bytes copied. Raises _Failed when the bytes differ from those checked, or when ``target``
    appeared meanwhile; OSError from the filesystem (the temp file is removed).
    """
    directory = target.parent
    tmp = directory / f".{target.name}.{os.getpid()}-{os.urandom(4).hex()}.tmp"
    digest = hashlib.sha256()
    copied = 0
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    try:
        try:
            os.fchmod(fd, 0o644)
            with open(source, "rb") as src:
                while chunk := src.read(1 << 20):
                    copied += len(chunk)
                    if copied > MAX_MODEL_BYTES:
                        limit = _human_size(MAX_MODEL_BYTES)
                        raise _Failed(f"{source}: grew over the {limit} limit while being copied")
                    digest.update(chunk)
                    view = memoryview(chunk)
                    while view:
                        view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        if expected_sha256 is not None and digest.hexdigest() != expected_sha256:
            raise _Failed(f"{source}: changed while it was being added; run the command again")
        _match_owner(tmp, directory)
        if replace:
            os.replace(tmp, target)
        else:
            try:
                os.link(tmp, target)  # fails if target exists: no overwrite, even in a race
            except FileExistsError:
                raise _Failed(f"{target}: appeared while adding; use --force to replace it") from None
            except OSError as err:
                if err.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
                    raise
                if target.exists():  # a filesystem without hard links: check, then rename
                    raise _Failed(f"{target}: appeared while adding; use --force to replace it") from None
                os.replace(tmp, target)
            else:
                os.unlink(tmp)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(directory)
    return copied


@_guard
def models_add(args: argparse.Namespace, stdout: TextIO, stderr: TextIO, stdin: TextIO) -> int:
    """``models add FILE [--name NAME] [--force]``: check, then copy atomically into the models directory."""
    from .daemon.state import StateStore

    source = Path(args.file)
    given = getattr(args, "name", None)
    name = given if given is not None else _default_name(source)
    try:
        validate_model_name(name)
    except ModelError as err:
        hint = "" if given is not None else " (taken from the file name; choose one with --name)"
        raise _Failed(f"{err}{hint}") from None
    settings = _settings(args)
    force = bool(getattr(args, "force", False))
    store = StateStore()
    try:
        models_dir = store.models_dir
    except OSError as err:
        raise _Failed(_os_problem(err, "cannot create the models directory")) from None
    _match_owner(models_dir, store.directory)
    target = models_dir / f"{name}{MODEL_SUFFIX}"
    if target.exists() and not force:
        raise _Failed(f"model {name!r} already exists ({target}); add --force to replace it")

    result = _check(source, settings, args)
    if not result.ok:
        raise _Failed(result.problems)
    try:
        size = _install_copy(source, target, result.info.get("sha256"), replace=force)
    except OSError as err:
        raise _Failed(_os_problem(err, f"cannot add {name} to")) from None
    print(f"added {name} ({_human_size(size)}) as {target}", file=stdout)

    first = _resolve_quietly(name, settings.directory)
    if first is not None and not _same_file(first, target):
        print(f"note: {first} ([model] directory) has the same name and plays instead of this one", file=stdout)
    for directory in search_path(settings.directory):
        other = directory / f"{name}{MODEL_SUFFIX}"
        if directory != models_dir and other.is_file() and _role(directory, settings) == "bundled":
            print(f"note: it shadows the bundled model of the same name ({other})", file=stdout)
    active_name, _ = _active(settings)
    if active_name == name:
        print(f"note: {name} is the active model; run 'ddsp-device models use {name}' to play the new file now",
              file=stdout)
    else:
        print(f"play it with: ddsp-device models use {name}", file=stdout)
    return EXIT_OK


# -- models use -------------------------------------------------------------------------------------


def _looks_like_daemon(pid: int) -> bool:
    """False when ``/proc`` shows that ``pid`` is not a ddsp-device process (SIGHUP kills most)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True  # cannot tell (no /proc, hidepid): trust the status socket
    return b"ddsp" in cmdline


def _reload_daemon(name: str, args: argparse.Namespace, stdout: TextIO) -> int:
    """SIGHUP the daemon the status socket names, then (optionally) wait until it plays ``name``."""
    from .daemon.status import DaemonNotRunningError, StatusError, query_status

    socket_path = getattr(args, "socket", None)
    try:
        status = query_status(socket_path, timeout_s=_STATUS_TIMEOUT_S)
    except DaemonNotRunningError:
        print(f"no daemon running; it will play {name} on its next start", file=stdout)
        return EXIT_OK
    except StatusError as err:
        raise _Failed(f"could not ask the daemon to reload ({err}); "
                      "run 'sudo systemctl reload ddsp-device' to switch now") from None
    pid = status.get("pid")
    if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 1 or pid == os.getpid():
        raise _Failed(f"the daemon's status names no usable pid ({pid!r}); "
                      "run 'sudo systemctl reload ddsp-device' to switch now")
    if not _looks_like_daemon(pid):
        raise _Failed(f"pid {pid} from the status socket is not a ddsp-device process; not signalling it "
                      "(run 'sudo systemctl reload ddsp-device')")
    before = _reload_count(status)
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError:
        print(f"no daemon running (pid {pid} has gone); it will play {name} on its next start", file=stdout)
        return EXIT_OK
    except PermissionError:
        raise _Failed(
            f"not allowed to signal the daemon (pid {pid}); run 'sudo systemctl reload ddsp-device'"
        ) from None
    print(f"asked the daemon (pid {pid}) to reload", file=stdout)

    wait_s = getattr(args, "wait", None)
    wait_s = DEFAULT_TIMEOUT_S if wait_s is None else float(wait_s)
    if wait_s <= 0 or before is None:
        return EXIT_OK
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        time.sleep(_POLL_INTERVAL_S)
        try:
            status = query_status(socket_path, timeout_s=_STATUS_TIMEOUT_S)
        except StatusError:
            continue
        count = _reload_count(status)
        if count is None or count <= before:
            continue
        if status.get("model") == name:
            print(f"the daemon is playing {name}", file=stdout)
            return EXIT_OK
        reason = status.get("last_reload_error") or "no reason given"
        raise _Failed(f"the daemon did not switch to {name} and still plays {status.get('model')}: {reason}")
    print(f"the daemon has not finished reloading after {wait_s:g} s; see 'ddsp-device status'", file=stdout)
    return EXIT_OK


def _reload_count(status: dict[str, Any]) -> int | None:
    counters = status.get("counters")
    count = counters.get("reloads") if isinstance(counters, dict) else None
    return count if isinstance(count, int) and not isinstance(count, bool) else None


@_guard
def models_use(args: argparse.Namespace, stdout: TextIO, stderr: TextIO, stdin: TextIO) -> int:
    """``models use NAME``: check it, persist the selection, ask the running daemon to reload."""
    from .daemon.state import StateStore

    name = args.name
    if is_path(name):
        raise _Failed(f"models use takes a model name, not a file ({name!r}); "
                      "install the file first: ddsp-device models add FILE")
    validate_model_name(name)
    settings = _settings(args)
    path = resolve_model(name, settings.directory)
    result = _check(path, settings, args)
    if not result.ok:
        raise _Failed([f"model {name!r} does not play, not selecting it:", *result.problems])
    store = StateStore()
    store.selected_model = name
    if store.dirty:
        raise _Failed(f"cannot save the selection in {store.path} ({_PERMISSION_HINT})")
    _match_owner(store.path, store.directory)
    print(f"selected {name} ({path})", file=stdout)
    return _reload_daemon(name, args, stdout)


# -- models remove ----------------------------------------------------------------------------------


def _confirm(question: str, stdin: TextIO | None, stdout: TextIO) -> bool:
    print(f"{question} [y/N] ", end="", file=stdout, flush=True)
    answer = stdin.readline() if stdin is not None else ""
    return answer.strip().lower() in ("y", "yes")


@_guard
def models_remove(args: argparse.Namespace, stdout: TextIO, stderr: TextIO, stdin: TextIO) -> int:
    """``models remove NAME [--yes]``: delete a model from the models directory (not the active one)."""
    name = args.name
    validate_model_name(name)
    settings = _settings(args)
    models_dir = state_dir() / "models"
    target = models_dir / f"{name}{MODEL_SUFFIX}"
    if not target.is_file():
        elsewhere = _resolve_quietly(name, settings.directory)
        if elsewhere is None:
            raise _Failed(f"no model {name!r} in {models_dir}")
        role = _role(elsewhere.parent, settings)
        what = "bundled with ddsp-device" if role == "bundled" else f"in the {role}"
        raise _Failed(f"model {name!r} is {what} ({elsewhere}); only models in {models_dir} can be removed")

    active_name, why = _active(settings)
    if active_name == name or _same_file(_resolve_quietly(active_name, settings.directory), target):
        raise _Failed(f"{name} is the active model ({why}); choose another first: ddsp-device models use OTHER")
    status = _daemon_status(getattr(args, "socket", None))
    if status is not None and status.get("model") == name:
        raise _Failed(f"the daemon (pid {status.get('pid')}) is playing {name}; "
                      "choose another first: ddsp-device models use OTHER")

    if not getattr(args, "yes", False):
        if not (stdin is not None and stdin.isatty()):
            raise _Failed(f"add --yes to remove {name} ({target}) without a question")
        if not _confirm(f"remove {name} ({target})?", stdin, stdout):
            print("nothing removed", file=stdout)
            return EXIT_PROBLEM
    try:
        os.unlink(target)
    except FileNotFoundError:
        raise _Failed(f"no model {name!r} in {models_dir} (removed meanwhile)") from None
    except OSError as err:
        raise _Failed(_os_problem(err, f"cannot remove {name}:")) from None
    fsync_dir(models_dir)
    print(f"removed {name} ({target})", file=stdout)
    now = _resolve_quietly(name, settings.directory)
    if now is not None:
        print(f"note: the name {name} now means {now}", file=stdout)
    return EXIT_OK


# -- argparse ---------------------------------------------------------------------------------------

COMMANDS: dict[str, Callable[..., int]] = {
    "list": models_list,
    "check": models_check,
    "add": models_add,
    "use": models_use,
    "remove": models_remove,
}


def add_parser(
    subparsers: Any, add_config_args: Callable[[argparse.ArgumentParser], None] | None = None
) -> argparse.ArgumentParser:
    """Add ``models`` and its subcommands to ``subparsers``; the chosen one is ``args.models_command``.

    ``add_config_args`` (cli's ``--config`` / ``-o``) is added to every subcommand when given.
    """
    parser = subparsers.add_parser("models", help="list, check, add, select and remove models")
    sub = parser.add_subparsers(dest="models_command", metavar="SUBCOMMAND")
    sub.required = True

    def common(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        if add_config_args is not None:
            add_config_args(p)
        p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, metavar="S",
                       help=f"give up checking one model after S seconds (default {DEFAULT_TIMEOUT_S:g})")
        return p

    p = common(sub.add_parser("list", help="every model in the search path, checked, with the active one"))
    p.add_argument("--json", action="store_true", help="print the list as JSON")
    p.add_argument("--socket", metavar="PATH", help="the daemon's status socket (default: the runtime directory's)")

    p = common(sub.add_parser("check", help="the full contract report of a .tflite file; exit 0 if it plays"))
    p.add_argument("file", metavar="FILE", help="the .tflite file")
    p.add_argument("--json", action="store_true", help="print the report as JSON")

    p = common(sub.add_parser("add", help="check a .tflite file and copy it into the models directory"))
    p.add_argument("file", metavar="FILE", help="the .tflite file")
    p.add_argument("--name", metavar="NAME", help="the model's name (default: the file name without .tflite)")
    p.add_argument("--force", action="store_true", help="replace a model of the same name")

    p = common(sub.add_parser("use", help="play model NAME: save the choice and ask the daemon to reload"))
    p.add_argument("name", metavar="NAME", help="a model name (see 'models list')")
    p.add_argument("--socket", metavar="PATH", help="the daemon's status socket (default: the runtime directory's)")
    p.add_argument("--wait", type=float, default=DEFAULT_TIMEOUT_S, metavar="S",
                   help="wait up to S seconds for the daemon to switch; 0: do not wait "
                        f"(default {DEFAULT_TIMEOUT_S:g})")

    p = common(sub.add_parser("remove", help="delete a model from the models directory (not the active one)"))
    p.add_argument("name", metavar="NAME", help="a model name (see 'models list')")
    p.add_argument("--yes", "-y", action="store_true", help="do not ask")
    p.add_argument("--socket", metavar="PATH", help="the daemon's status socket (default: the runtime directory's)")
    return parser


def run(
    args: argparse.Namespace,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    stdin: TextIO | None = None,
) -> int:
    """Run the ``models`` subcommand ``args.models_command``; the exit status."""
    return COMMANDS[args.models_command](args, stdout, stderr, stdin)


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1:]))
