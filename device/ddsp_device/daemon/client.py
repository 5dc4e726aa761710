"""The running daemon, seen from another process: what it plays, and asking it to reload.

Used by the command line (``ddsp-device models``); everything goes through the status socket
(:mod:`ddsp_device.daemon.status`).

Reloading: SIGHUP to the pid the status socket names (as ``systemctl reload`` does) when this
user may signal it; otherwise (the daemon runs as its own user) a ``reload`` request over the
status socket, which the daemon grants to root, its own user and members of the socket's group.
Only when both are refused does the caller need ``sudo``.

Which model is active is decided here, once: what the daemon plays when one answers; otherwise
what it would play on its next start (:func:`ddsp_device.library.model_to_play`).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..library import model_to_play, resolve_quietly
from .status import DaemonNotRunningError, StatusError, ask_to_reload, query_status

__all__ = [
    "STATUS_TIMEOUT_S",
    "ReloadNotPermittedError",
    "ReloadRequest",
    "ActiveModel",
    "daemon_status",
    "request_reload",
    "wait_for_reload",
    "reload_count",
    "active_model",
]

STATUS_TIMEOUT_S = 2.0
POLL_INTERVAL_S = 0.1


class ReloadNotPermittedError(StatusError):
    """This user may neither signal the daemon nor ask it over its socket (the message says why)."""


@dataclass(frozen=True)
class ReloadRequest:
    """A reload asked for: the daemon's ``pid``, its ``counters.reloads`` before (None when it
    did not say), and ``via`` (``"SIGHUP"`` or ``"the status socket"``)."""

    pid: int
    reloads_before: int | None
    via: str


@dataclass(frozen=True)
class ActiveModel:
    """The model that plays: ``name`` (as the daemon and its log name it), ``path`` (None when
    not found), ``why`` (one phrase) and ``pid`` (the daemon's, when one is playing it)."""

    name: str
    path: str | None
    why: str
    pid: int | None = None


def daemon_status(socket_path: str | os.PathLike[str] | None = None, timeout_s: float = 0.5) -> dict[str, Any] | None:
    """The daemon's status, or None when none answers (for notes and decisions, never an error)."""
    try:
        return query_status(socket_path, timeout_s=timeout_s)
    except StatusError:
        return None


def reload_count(status: dict[str, Any]) -> int | None:
    """``counters.reloads`` of a status document (reloads finished), None when absent."""
    counters = status.get("counters")
    count = counters.get("reloads") if isinstance(counters, dict) else None
    return count if isinstance(count, int) and not isinstance(count, bool) else None


def looks_like_daemon(pid: int) -> bool:
    """False when ``/proc`` shows that ``pid`` is not a ddsp-device process (SIGHUP kills most)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True  # cannot tell (no /proc, hidepid): trust the status socket
    return b"ddsp" in cmdline


def _send_sighup(pid: int) -> None:
    os.kill(pid, signal.SIGHUP)


def request_reload(socket_path: str | os.PathLike[str] | None = None,
                   timeout_s: float = STATUS_TIMEOUT_S) -> ReloadRequest:
    """Ask the running daemon to reload: SIGHUP if permitted, else over its status socket.

    Raises:
        DaemonNotRunningError: no daemon answers (or its pid has gone).
        ReloadNotPermittedError: the signal is not permitted and the socket refused the request.
        StatusError: the daemon cannot be asked (no usable pid, not a ddsp-device process, the
            socket may not be used).
    """
    status = query_status(socket_path, timeout_s=timeout_s)
    pid = status.get("pid")
    if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 1 or pid == os.getpid():
        raise StatusError(f"the daemon's status names no usable pid ({pid!r})")
    if not looks_like_daemon(pid):
        raise StatusError(f"pid {pid} from the status socket is not a ddsp-device process; not signalling it")
    before = reload_count(status)
    try:
        _send_sighup(pid)
    except ProcessLookupError:
        raise DaemonNotRunningError(f"no daemon running (pid {pid} has gone)") from None
    except PermissionError:
        pass  # the daemon runs as another user: ask over the socket instead
    else:
        return ReloadRequest(pid, before, "SIGHUP")
    try:
        answer = ask_to_reload(socket_path, timeout_s=timeout_s)
    except StatusError as err:
        raise ReloadNotPermittedError(
            f"not allowed to signal the daemon (pid {pid}), and its status socket did not take the request ({err})"
        ) from None
    if answer.get("reload") != "requested":
        reason = answer.get("error") or "no reason given"
        raise ReloadNotPermittedError(f"not allowed to signal the daemon (pid {pid}), and it refused the request "
                                      f"over its status socket: {reason}")
    counted = answer.get("reloads")
    if isinstance(counted, int) and not isinstance(counted, bool):
        before = counted
    return ReloadRequest(pid, before, "the status socket")


def wait_for_reload(request: ReloadRequest, socket_path: str | os.PathLike[str] | None = None,
                    wait_s: float = 10.0) -> dict[str, Any] | None:
    """The daemon's status once the requested reload has finished; None if not within ``wait_s``
    (or when the daemon does not count its reloads)."""
    if request.reloads_before is None or wait_s <= 0:
        return None
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        time.sleep(POLL_INTERVAL_S)
        try:
            status = query_status(socket_path, timeout_s=STATUS_TIMEOUT_S)
        except StatusError:
            continue
        count = reload_count(status)
        if count is not None and count > request.reloads_before:
            return status
    return None


def active_model(*, configured: str, selected: str | None, plays: Callable[[str], bool],
                 directory: str | os.PathLike[str] | None = None,
                 socket_path: str | os.PathLike[str] | None = None) -> ActiveModel:
    """The active model: what the daemon plays when one answers on the status socket, else
    what it would play on its next start (the selection if it plays, else ``[model] name``).

    Args:
        configured: ``[model] name``.
        selected: the model chosen with ``models use`` (``state.json``), None when none.
        plays: ``plays(name)``: does that model play (found and checked)? Asked only when no
            daemon answers.
        directory: ``[model] directory``.
        socket_path: the status socket (default: where the daemon puts it).
    """
    status = daemon_status(socket_path)
    if status is not None and isinstance(status.get("model"), str) and status["model"]:
        name = status["model"]
        path = status.get("model_path")
        if not isinstance(path, str) or not path:
            found = resolve_quietly(name, directory)
            path = str(found) if found is not None else None
        pid = status.get("pid") if isinstance(status.get("pid"), int) else None
        return ActiveModel(name, path, f"playing in the daemon (pid {pid})", pid)
    name, why = model_to_play(selected, configured, plays)
    found = resolve_quietly(name, directory)
    return ActiveModel(name, str(found) if found is not None else None, why)
