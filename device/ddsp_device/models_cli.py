"""``ddsp-device models``: list, check, add, select and remove models (over SSH, say).

    ddsp-device models list [--json]
    ddsp-device models check FILE [--json]
    ddsp-device models add FILE [--name NAME] [--force]
    ddsp-device models use NAME
    ddsp-device models remove NAME [--yes]

The command line only: the work is done below it, in the layers the daemon uses too —

- the model check, in a child process: :mod:`ddsp_device.model.check`
  (:func:`~ddsp_device.model.check.check_model_file`);
- the library of installed models (names, the search path, installing a file):
  :mod:`ddsp_device.library`;
- the running daemon (what it plays, asking it to reload): :mod:`ddsp_device.daemon.client`.

The command functions (:func:`models_list`, :func:`models_check`, :func:`models_add`,
:func:`models_use`, :func:`models_remove`, or :func:`run` for any of them) take the parsed
arguments (see :func:`add_parser`) and two text streams, print one ``error: …`` line per problem
and return the exit status: 0 done, 1 a problem (a model that does not play, a refused name, a
file that cannot be written), 2 a configuration error (as every other command).

``models use`` writes the selection to the state directory (``state.json``) and asks the daemon
to reload (SIGHUP, or a request over its status socket when this user may not signal it); the
daemon re-reads the selection when it reloads.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from .atomicfile import fsync_dir
from .errors import ConfigError, DdspDeviceError, ModelError
from .library import (
    MODEL_SUFFIX,
    install_copy,
    installed_models,
    is_path,
    match_owner,
    resolve_model,
    resolve_quietly,
    role,
    same_file,
    search_path,
    state_dir,
    validate_model_name,
)
from .model.check import (  # noqa: F401 - FAULT_ENV, MAX_MODEL_BYTES: part of this module's interface
    DEFAULT_TIMEOUT_S,
    FAULT_ENV,
    MAX_MODEL_BYTES,
    CheckResult,
    check_model_file,
    human_size,
    jsonable,
)

_PERMISSION_HINT = "run it with sudo, or as a member of the service's group"
_SUDO_RELOAD = "run 'sudo systemctl reload ddsp-device'"

EXIT_OK = 0
EXIT_PROBLEM = 1
EXIT_CONFIG = 2


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
        size = f"{human_size(info['file_size_bytes'])} ({info['file_size_bytes']} bytes)"
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


def _selection() -> str | None:
    """The model chosen with ``models use`` (None when none, or when ``state.json`` holds a name
    that is not a model name), read without creating anything."""
    from .daemon.state import STATE_FILENAME, StateStore

    directory = state_dir()
    if not (directory / STATE_FILENAME).exists():
        return None
    return StateStore(directory).selected_model


def _chosen(settings: _Settings) -> tuple[str, str]:
    """``(name, why)``: the model the daemon is asked to play (the selection, else ``[model] name``)."""
    selected = _selection()
    if selected:
        return selected, "chosen with 'models use'"
    return settings.config_name, "[model] name in the config"


def _active(settings: _Settings, args: argparse.Namespace, plays: Callable[[str], bool] | None = None):
    """The active model, as :func:`ddsp_device.daemon.client.active_model` decides it."""
    from .daemon.client import active_model

    if plays is None:
        def plays(name: str) -> bool:
            path = resolve_quietly(name, settings.directory)
            return path is not None and _check(path, settings, args).ok

    return active_model(configured=settings.config_name, selected=_selection(), plays=plays,
                        directory=settings.directory, socket_path=getattr(args, "socket", None))


# -- models check -----------------------------------------------------------------------------------


@_guard
def models_check(args: argparse.Namespace, stdout: TextIO, stderr: TextIO, stdin: TextIO) -> int:
    """``models check FILE [--json]``: the contract report; 0 if the file plays here."""
    settings = _settings(args)
    result = _check(args.file, settings, args)
    if getattr(args, "json", False):
        print(json.dumps(jsonable(result.to_dict()), indent=2, allow_nan=False), file=stdout)
    else:
        print(format_check(result), file=stdout)
    if result.ok:
        return EXIT_OK
    raise _Failed(result.problems)


# -- models list ------------------------------------------------------------------------------------


def _list_entries(settings: _Settings, args: argparse.Namespace) -> list[dict[str, Any]]:
    entries = installed_models(settings.directory)
    for entry in entries:
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
    return entries


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
        size = human_size(m["size_bytes"]) if isinstance(m["size_bytes"], int) else "-"
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
    """``models list [--json]``: every model in the search path, checked, with the active one.

    Active: what the daemon plays when it runs, else what it would play on its next start; a
    model that does not play is never marked active.
    """
    settings = _settings(args)
    entries = _list_entries(settings, args)
    by_path = {entry["path"]: entry for entry in entries}

    def plays(name: str) -> bool:
        path = resolve_quietly(name, settings.directory)
        if path is None:
            return False
        entry = by_path.get(str(path))
        return entry["ok"] if entry is not None else _check(path, settings, args).ok

    active = _active(settings, args, plays)
    active_path = Path(active.path) if active.path else None
    for entry in entries:
        entry["active"] = same_file(Path(entry["path"]), active_path)
    doc = {
        "search_path": [str(d) for d in search_path(settings.directory)],
        "active": {"name": active.name, "why": active.why, "path": active.path},
        "daemon": {"pid": active.pid, "model": active.name} if active.pid is not None else None,
        "models": entries,
    }
    if getattr(args, "json", False):
        print(json.dumps(jsonable(doc), indent=2, allow_nan=False), file=stdout)
    else:
        print(_format_list(doc), file=stdout)
    return EXIT_OK


# -- models add -------------------------------------------------------------------------------------


def _default_name(source: Path) -> str:
    name = source.name
    return name[: -len(MODEL_SUFFIX)] if name.lower().endswith(MODEL_SUFFIX) else source.stem


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
    match_owner(models_dir, store.directory)
    target = models_dir / f"{name}{MODEL_SUFFIX}"
    if target.exists() and not force:
        raise _Failed(f"model {name!r} already exists ({target}); add --force to replace it")

    result = _check(source, settings, args)
    if not result.ok:
        raise _Failed(result.problems)
    try:
        size = install_copy(source, target, result.info.get("sha256"), replace=force)
    except OSError as err:
        raise _Failed(_os_problem(err, f"cannot add {name} to")) from None
    print(f"added {name} ({human_size(size)}) as {target}", file=stdout)

    first = resolve_quietly(name, settings.directory)
    if first is not None and not same_file(first, target):
        print(f"note: {first} ([model] directory) has the same name and plays instead of this one", file=stdout)
    for directory in search_path(settings.directory):
        other = directory / f"{name}{MODEL_SUFFIX}"
        if directory != models_dir and other.is_file() and role(directory, settings.directory) == "bundled":
            print(f"note: it shadows the bundled model of the same name ({other})", file=stdout)
    chosen, _ = _chosen(settings)
    if chosen == name:
        print(f"note: {name} is the active model; run 'ddsp-device models use {name}' to play the new file now",
              file=stdout)
    else:
        print(f"play it with: ddsp-device models use {name}", file=stdout)
    return EXIT_OK


# -- models use -------------------------------------------------------------------------------------


def _reload_daemon(name: str, args: argparse.Namespace, stdout: TextIO) -> int:
    """Ask the daemon to reload (SIGHUP, else its socket), then wait until it plays ``name``."""
    from .daemon.client import ReloadNotPermittedError, request_reload, wait_for_reload
    from .daemon.status import DaemonNotRunningError, StatusError

    socket_path = getattr(args, "socket", None)
    try:
        request = request_reload(socket_path)
    except DaemonNotRunningError as err:
        gone = f" ({err})" if "has gone" in str(err) else ""
        print(f"no daemon running{gone}; it will play {name} on its next start", file=stdout)
        return EXIT_OK
    except ReloadNotPermittedError as err:
        raise _Failed(f"{err}; {_SUDO_RELOAD} to switch now") from None
    except StatusError as err:
        raise _Failed(f"could not ask the daemon to reload ({err}); {_SUDO_RELOAD} to switch now") from None
    how = "over its status socket" if request.via != "SIGHUP" else ""
    print(f"asked the daemon (pid {request.pid}) to reload{' ' + how if how else ''}", file=stdout)

    wait_s = getattr(args, "wait", None)
    wait_s = DEFAULT_TIMEOUT_S if wait_s is None else float(wait_s)
    if wait_s <= 0 or request.reloads_before is None:
        return EXIT_OK
    status = wait_for_reload(request, socket_path, wait_s)
    if status is None:
        print(f"the daemon has not finished reloading after {wait_s:g} s; see 'ddsp-device status'", file=stdout)
        return EXIT_OK
    if status.get("model") == name:
        print(f"the daemon is playing {name}", file=stdout)
        return EXIT_OK
    reason = status.get("last_reload_error") or "no reason given"
    raise _Failed(f"the daemon did not switch to {name} and still plays {status.get('model')}: {reason}")


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
        raise _Failed(f"model {name!r} does not play, not selecting it: {'; '.join(result.problems)}")
    store = StateStore()
    store.selected_model = name
    if store.dirty:
        raise _Failed(f"cannot save the selection in {store.path} ({_PERMISSION_HINT})")
    match_owner(store.path, store.directory)
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
        elsewhere = resolve_quietly(name, settings.directory)
        if elsewhere is None:
            raise _Failed(f"no model {name!r} in {models_dir}")
        where = role(elsewhere.parent, settings.directory)
        what = "bundled with ddsp-device" if where == "bundled" else f"in the {where}"
        raise _Failed(f"model {name!r} is {what} ({elsewhere}); only models in {models_dir} can be removed")

    chosen, why = _chosen(settings)
    if chosen == name or same_file(resolve_quietly(chosen, settings.directory), target):
        raise _Failed(f"{name} is the active model ({why}); choose another first: ddsp-device models use OTHER")
    active = _active(settings, args, plays=lambda _name: False)  # only the daemon's answer matters here
    if active.pid is not None and (active.name == name or same_file(Path(active.path or ""), target)):
        raise _Failed(f"the daemon (pid {active.pid}) is playing {name}; "
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
    now = resolve_quietly(name, settings.directory)
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


if __name__ == "__main__":  # the model check's child, by hand (as before): python -m ddsp_device.models_cli --child FILE
    from .model.check import _child_main

    sys.exit(_child_main(sys.argv[1:]))
