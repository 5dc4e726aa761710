"""``ddsp-device status``: the daemon answers on a unix socket; a client asks and prints.

The daemon runs a :class:`StatusServer` on ``<runtime dir>/status.sock``. A client connects,
sends at most one request line and closes its side; the server answers with one JSON document
(UTF-8, then it closes). Requests:

- nothing (or ``status``; a client that neither sends nor closes within ``request_timeout_s``
  gets it too): the status document below;
- ``reload``: ask the daemon to reload (as SIGHUP does), for users who may not signal it (it runs
  as another user). Only root, the daemon's own user and members of the socket's group may ask:
  the server reads the caller's credentials from the kernel (``SO_PEERCRED``, and its groups from
  ``SO_PEERGROUPS`` or the group database). The answer is ``{"reload": "requested", "reloads": N}``
  (``N``: reloads finished before this one; ``counters.reloads`` passes it when this one is done)
  or ``{"error": …}``.

The runtime dir is
``$RUNTIME_DIRECTORY`` under systemd (``RuntimeDirectory=ddsp-device``), else
``/run/ddsp-device`` when it exists and is writable, else (development) ``$XDG_RUNTIME_DIR/ddsp-device``
or ``/tmp/ddsp-device-<uid>``. The socket is mode 0o660: the service's group may ask.

The document (every key optional; the server adds ``pid`` and ``version`` when missing; a reader
shows a missing or malformed value as ``-``)::

    {
      "version": "0.1.0",                 # ddsp_device.__version__
      "pid": 1234,
      "model": "Violin",                  # the model playing (name or path)
      "tone": {"value": -0.25, "from": "knob"},   # synth tone in effect, -1 dark .. +1 bright;
                                          # from "knob" (controls.tone_channel) or "config"
      "uptime_s": 86400.0,                # since the daemon started
      "cpu_load": 0.23,                   # process CPU time / wall time, fraction of one core
      "period_ms": {"p50": 1.2, "p99": 2.5, "max": 4.1},   # compute time per audio period
      "budget_ms": 5.33,                  # the period's duration: period_frames / sample_rate
      "xruns": 0,                         # underruns since start
      "late_periods": 0,                  # periods whose compute took longer than budget_ms
                                          # (the only sign of a slow period when writing a file)
      "audio": {"device": "hw:CARD=sndrpihifiberry,DEV=0", "rate": 48000,
                "period": 256, "periods": 2},              # as accepted by ALSA
      "sensors": [{"name": "ribbon", "address": 72, "state": "ok", "faults": 0, "retries": 3}],
                                          # address: int (shown in hex) or text; state: free text
                                          # such as "ok", "fault", "absent", "emulated"
      "restart_needed": ["audio.period_size"],   # changed by a reload, waiting for a restart
      "counters": {"xruns": 12, "faults": 3, "starts": 7, "uptime_s": 990000},  # lifetime
      "error": "..."                      # only when the status could not be produced
    }

A provider that raises, returns something other than a dict, or takes longer than
``provider_timeout_s`` produces ``{"error": …, "pid": …, "version": …}``; the server lives on.
Non-finite floats are sent as ``null`` so that ``--json`` output is strict JSON.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import select
import socket
import stat
import struct
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from .. import __version__
from ..errors import DdspDeviceError

log = logging.getLogger(__name__)

DEFAULT_RUNTIME_DIR = Path("/run/ddsp-device")
SOCKET_NAME = "status.sock"
SOCKET_MODE = 0o660
MAX_ANSWER_BYTES = 1 << 20

MAX_REQUEST_BYTES = 64
#: Linux's SO_PEERGROUPS (since 4.13; Python does not name it). The caller's supplementary groups.
_SO_PEERGROUPS = getattr(socket, "SO_PEERGROUPS", 59)

PathLike = str | os.PathLike[str]
StatusProvider = Callable[[], Mapping[str, Any]]
ReloadHandler = Callable[[], Mapping[str, Any]]


class StatusError(DdspDeviceError, OSError):
    """The status socket cannot be served or asked; the message says which and why."""


class DaemonNotRunningError(StatusError):
    """No daemon answers: there is no status socket, or nothing listens on it."""


# -- where the socket lives -----------------------------------------------------------------------


def _dev_runtime_dir() -> Path:
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg:
        return Path(xdg) / "ddsp-device"
    return Path("/tmp") / f"ddsp-device-{os.getuid()}"


def runtime_dir() -> Path:
    """The directory the daemon puts its socket in (not created here)."""
    env = os.environ.get("RUNTIME_DIRECTORY")
    if env:
        return Path(env.split(":")[0])
    if DEFAULT_RUNTIME_DIR.is_dir() and os.access(DEFAULT_RUNTIME_DIR, os.W_OK | os.X_OK):
        return DEFAULT_RUNTIME_DIR
    return _dev_runtime_dir()


def socket_candidates() -> list[Path]:
    """Where a client looks for the socket, in order (without duplicates)."""
    dirs = []
    env = os.environ.get("RUNTIME_DIRECTORY")
    if env:
        dirs.append(Path(env.split(":")[0]))
    dirs += [DEFAULT_RUNTIME_DIR, _dev_runtime_dir()]
    return list(dict.fromkeys(d / SOCKET_NAME for d in dirs))


def find_socket() -> Path:
    """The first status socket that exists among :func:`socket_candidates`.

    Raises:
        DaemonNotRunningError: none exists (the message lists where it looked).
    """
    candidates = socket_candidates()
    for path in candidates:
        if path.exists():
            return path
    raise DaemonNotRunningError(
        f"no ddsp-device daemon is running (no socket at {' or '.join(str(p) for p in candidates)})"
    )


def _ensure_dev_dir(directory: Path) -> None:
    """Create a private development runtime dir, refusing one that another user controls."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = os.stat(directory)
    if st.st_uid != os.getuid() or st.st_mode & 0o022:
        raise StatusError(f"{directory}: owned by another user or writable by others; not using it")


# -- server ---------------------------------------------------------------------------------------


class _ProviderCall:
    __slots__ = ("done", "result")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.result: dict[str, Any] = {}


class StatusServer:
    """Answers each connection on a unix stream socket with ``get_status()`` as JSON.

    The socket is bound and the server thread started on construction; :meth:`close` (or leaving
    the ``with`` block) stops it within ``accept_timeout_s`` and removes the socket. Closing twice
    is harmless.

    Args:
        get_status: returns the status dict (see the module docstring). Called on a helper
            thread; it must not block the audio thread (read counters, take no audio locks).
        path: the socket; default ``runtime_dir() / "status.sock"``.
        on_reload: called (on the server thread) for an allowed ``reload`` request; returns what
            the answer adds (``{"reloads": N}``). It must only raise a flag. None: the server
            refuses ``reload``.
        accept_timeout_s: how often the server thread checks for :meth:`close`.
        provider_timeout_s: how long one answer waits for ``get_status``.
        send_timeout_s: how long a client may take to read the answer.
        request_timeout_s: how long the server waits for a client's request line.

    Raises:
        StatusError: the path is not a socket, another daemon answers on it, or it cannot be
            bound (the message names the path).
    """

    def __init__(
        self,
        get_status: StatusProvider,
        path: PathLike | None = None,
        *,
        on_reload: ReloadHandler | None = None,
        accept_timeout_s: float = 0.25,
        provider_timeout_s: float = 1.0,
        send_timeout_s: float = 1.0,
        request_timeout_s: float = 0.25,
    ):
        self._get_status = get_status
        self._on_reload = on_reload
        self.request_timeout_s = float(request_timeout_s)
        self.reloads_requested = 0
        self.reloads_refused = 0
        self.accept_timeout_s = float(accept_timeout_s)
        self.provider_timeout_s = float(provider_timeout_s)
        self.send_timeout_s = float(send_timeout_s)
        self.answered = 0
        self.errors = 0
        self._pending: _ProviderCall | None = None
        self._logged_provider_error = False
        self._stop = threading.Event()
        self._close_lock = threading.Lock()
        self._closed = False
        if path is None:
            directory = runtime_dir()
            if directory != DEFAULT_RUNTIME_DIR and not os.environ.get("RUNTIME_DIRECTORY"):
                _ensure_dev_dir(directory)
            path = directory / SOCKET_NAME
        self.path = Path(path)
        self._sock = self._bind(self.path)
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)  # close() wakes poll()
        self._poller = select.poll()
        self._poller.register(self._sock, select.POLLIN)
        self._poller.register(self._wake_r, select.POLLIN)
        self._ino = os.stat(self.path).st_ino
        self._thread = threading.Thread(target=self._serve, name="ddsp-status", daemon=True)
        self._thread.start()
        log.info("status socket: %s", self.path)

    def _bind(self, path: Path) -> socket.socket:
        _remove_stale_socket(path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            sock.bind(os.fspath(path))
            os.chmod(path, SOCKET_MODE)
            sock.listen(8)
            sock.setblocking(False)
        except OSError as err:
            sock.close()
            raise StatusError(f"status socket {path}: cannot listen ({err.strerror or err})") from err
        return sock

    # -- serving --------------------------------------------------------------------------------

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                events = self._poller.poll(self.accept_timeout_s * 1000.0)
                if not any(fd == self._sock.fileno() for fd, _ in events):
                    continue
                conn, _ = self._sock.accept()
            except BlockingIOError:
                continue  # the client gave up between poll() and accept()
            except OSError as err:
                if self._stop.is_set():
                    break
                self.errors += 1
                log.warning("status socket %s: accept failed (%s)", self.path, err)
                self._stop.wait(self.accept_timeout_s)
                continue
            try:
                with conn:
                    request = self._read_request(conn)
                    conn.settimeout(self.send_timeout_s)
                    conn.sendall(self._answer_request(conn, request))
                    self.answered += 1  # before the close that ends the client's read
            except OSError as err:  # the client went away or did not read in time
                self.errors += 1
                log.debug("status socket %s: could not answer a client (%s)", self.path, err)
            except Exception:  # never let a bad answer end the server
                self.errors += 1
                log.exception("status socket %s: unexpected error while answering", self.path)

    def _read_request(self, conn: socket.socket) -> str:
        """The client's request line; "" when it sends none in time (an old client) or closes."""
        conn.settimeout(self.request_timeout_s)
        data = b""
        try:
            while b"\n" not in data and len(data) <= MAX_REQUEST_BYTES:
                chunk = conn.recv(MAX_REQUEST_BYTES + 1 - len(data))
                if not chunk:
                    break
                data += chunk
        except (TimeoutError, BlockingIOError):
            pass
        return data.partition(b"\n")[0].decode("utf-8", "replace").strip()[:MAX_REQUEST_BYTES]

    def _answer_request(self, conn: socket.socket, request: str) -> bytes:
        if request in ("", "status"):
            return self.answer()
        if request == "reload":
            return self._encode(self._reload(conn))
        return self._encode({"error": f"unknown request {request!r}: send status or reload"})

    def _reload(self, conn: socket.socket) -> dict[str, Any]:
        if self._on_reload is None:
            return {"error": "this server takes no reload requests"}
        try:
            pid, uid, gid = peer_credentials(conn)
        except OSError as err:
            self.reloads_refused += 1
            log.warning("status socket %s: reload refused: cannot read the caller's credentials (%s)", self.path, err)
            return {"error": f"reload refused: cannot read the caller's credentials ({err.strerror or err})"}
        try:
            socket_gid = os.stat(self.path).st_gid
        except OSError:
            socket_gid = os.getegid()
        groups = peer_groups(conn)
        if not reload_allowed(uid, gid, groups, daemon_uid=os.geteuid(), socket_gid=socket_gid):
            self.reloads_refused += 1
            group = _group_name(socket_gid)
            log.warning("status socket: reload refused for uid %d (pid %d): not root, the daemon's user or in group %s",
                        uid, pid, group)
            return {"error": f"reload refused: uid {uid} is not root, the daemon's user or a member of group {group}"}
        self.reloads_requested += 1
        log.info("reload requested over the status socket by uid %d (pid %d)", uid, pid)
        try:
            extra = dict(self._on_reload())
        except Exception as err:  # noqa: BLE001 - never let a handler end the server
            log.exception("status socket: the reload handler failed")
            return {"error": f"the daemon could not take the request: {type(err).__name__}: {err}"}
        return {"reload": "requested", **extra}

    def _encode(self, doc: dict[str, Any]) -> bytes:
        doc.setdefault("pid", os.getpid())
        doc.setdefault("version", __version__)
        return json.dumps(_jsonable(doc), allow_nan=False).encode() + b"\n"

    def answer(self) -> bytes:
        """The document one connection receives, encoded (public for tests and ``--json``)."""
        doc = self._call_provider()
        doc.setdefault("pid", os.getpid())
        doc.setdefault("version", __version__)
        try:
            return json.dumps(_jsonable(doc), allow_nan=False).encode() + b"\n"
        except (TypeError, ValueError) as err:
            return json.dumps(
                {"error": f"status could not be encoded: {err}", "pid": os.getpid(), "version": __version__}
            ).encode() + b"\n"

    def _call_provider(self) -> dict[str, Any]:
        call = self._pending
        if call is None or call.done.is_set():
            # A call still running after a timeout is waited on again rather than doubled.
            call = self._pending = _ProviderCall()
            worker = threading.Thread(target=self._run_provider, args=(call,), name="ddsp-status-provider", daemon=True)
            worker.start()
        if not call.done.wait(self.provider_timeout_s):
            return {"error": f"the daemon did not produce its status within {self.provider_timeout_s:g} s"}
        return dict(call.result)

    def _run_provider(self, call: _ProviderCall) -> None:
        try:
            result = self._get_status()
            if isinstance(result, Mapping):
                call.result = dict(result)
            else:
                call.result = {"error": f"status provider returned {type(result).__name__}, not a dict"}
        except Exception as err:
            call.result = {"error": f"status provider failed: {type(err).__name__}: {err}"}
            if not self._logged_provider_error:
                self._logged_provider_error = True
                log.warning("status provider failed (further failures logged at debug level)", exc_info=True)
            else:
                log.debug("status provider failed", exc_info=True)
        finally:
            call.done.set()

    # -- life cycle -----------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def close(self) -> None:
        """Stop the server thread and remove the socket (if it is still ours)."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        self._stop.set()
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")
        if self._thread is not threading.current_thread():
            self._thread.join(self.accept_timeout_s + self.provider_timeout_s + self.send_timeout_s + 1.0)
        self._sock.close()
        os.close(self._wake_r)
        os.close(self._wake_w)
        with contextlib.suppress(OSError):
            if os.stat(self.path).st_ino == self._ino:
                os.unlink(self.path)

    def __enter__(self) -> "StatusServer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"StatusServer({str(self.path)!r}, answered={self.answered})"


def peer_credentials(conn: socket.socket) -> tuple[int, int, int]:
    """``(pid, uid, gid)`` of the process at the other end of a unix socket, from the kernel."""
    size = struct.calcsize("3i")
    return struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, size))


def peer_groups(conn: socket.socket) -> set[int] | None:
    """The supplementary groups of the process at the other end, from the kernel; None when the
    kernel cannot tell (before Linux 4.13)."""
    try:
        data = conn.getsockopt(socket.SOL_SOCKET, _SO_PEERGROUPS, 4 * 1024)
    except OSError:
        return None
    n = len(data) // 4
    return set(struct.unpack(f"{n}I", data[: 4 * n]))


def _group_members(gid: int) -> set[str]:
    try:
        import grp

        return set(grp.getgrgid(gid).gr_mem)
    except (ImportError, KeyError):
        return set()


def _user_name(uid: int) -> str | None:
    try:
        import pwd

        return pwd.getpwuid(uid).pw_name
    except (ImportError, KeyError):
        return None


def _group_name(gid: int) -> str:
    try:
        import grp

        return grp.getgrgid(gid).gr_name
    except (ImportError, KeyError):
        return str(gid)


def reload_allowed(uid: int, gid: int, groups: set[int] | None, *, daemon_uid: int, socket_gid: int) -> bool:
    """May the caller ``uid`` (primary group ``gid``, supplementary ``groups``; None: unknown,
    then the group database decides) ask the daemon to reload? Root, the daemon's own user and
    members of the socket's group may."""
    if uid == 0 or uid == daemon_uid or gid == socket_gid:
        return True
    if groups is not None:
        return socket_gid in groups
    name = _user_name(uid)
    return name is not None and name in _group_members(socket_gid)


def _remove_stale_socket(path: Path) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as err:
        raise StatusError(f"status socket {path}: {err.strerror or err}") from err
    if not stat.S_ISSOCK(st.st_mode):
        raise StatusError(f"status socket {path}: exists and is not a socket; not replacing it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    probe.settimeout(0.5)
    try:
        probe.connect(os.fspath(path))
    except (ConnectionRefusedError, FileNotFoundError):
        pass  # nobody listens: left over from a daemon that died
    except OSError as err:
        raise StatusError(
            f"status socket {path}: cannot tell whether a daemon uses it ({err.strerror or err})"
        ) from err
    else:
        raise StatusError(f"status socket {path}: another ddsp-device daemon is answering on it")
    finally:
        probe.close()
    log.info("removing stale status socket %s", path)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _jsonable(obj: Any) -> Any:
    """Plain JSON types: numpy values via ``tolist()``, paths and others as text, NaN as None."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if obj is None or isinstance(obj, (str, int)):
        return obj
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in obj]
    tolist = getattr(obj, "tolist", None)  # numpy scalars and arrays
    if callable(tolist):
        return _jsonable(tolist())
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    return str(obj)


# -- client ---------------------------------------------------------------------------------------


def query_status(path: PathLike | None = None, timeout_s: float = 1.0) -> dict[str, Any]:
    """Ask the daemon for its status.

    Args:
        path: the socket; default: the first of :func:`socket_candidates` that exists.
        timeout_s: for connecting and reading the whole answer.
    Raises:
        DaemonNotRunningError: no socket, or nothing listening on it.
        StatusError: the daemon did not answer in time, the socket may not be used, or the
            answer is not a JSON object.
    """
    return ask(path, "status", timeout_s)


def ask_to_reload(path: PathLike | None = None, timeout_s: float = 1.0) -> dict[str, Any]:
    """Ask the daemon to reload over its socket (for a user who may not signal it).

    Returns:
        The answer: ``{"reload": "requested", "reloads": N, "pid": …}``, or ``{"error": …}``
        when the daemon refused (the caller is not in the socket's group, say).
    Raises:
        DaemonNotRunningError, StatusError: as :func:`query_status`.
    """
    return ask(path, "reload", timeout_s)


def ask(path: PathLike | None, request: str, timeout_s: float = 1.0) -> dict[str, Any]:
    """Send ``request`` (``status`` or ``reload``) and return the daemon's answer.

    Raises:
        DaemonNotRunningError: no socket, or nothing listening on it.
        StatusError: the daemon did not answer in time, the socket may not be used, or the
            answer is not a JSON object.
    """
    sock_path = Path(path) if path is not None else find_socket()
    no_answer = f"ddsp-device daemon at {sock_path} did not answer within {timeout_s:g} s"
    deadline = time.monotonic() + timeout_s
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        sock.settimeout(timeout_s)
        try:
            sock.connect(os.fspath(sock_path))
        except FileNotFoundError:
            raise DaemonNotRunningError(f"no ddsp-device daemon is running (no socket at {sock_path})") from None
        except ConnectionRefusedError:
            raise DaemonNotRunningError(
                f"no ddsp-device daemon is running (nothing listens on {sock_path})"
            ) from None
        except PermissionError:
            raise StatusError(
                f"{sock_path}: permission denied (is this user in the daemon's group?)"
            ) from None
        except TimeoutError:
            raise StatusError(no_answer) from None
        except OSError as err:
            raise StatusError(f"{sock_path}: cannot connect ({err.strerror or err})") from err
        try:
            # "status" is sent as no request at all: a server that does not read requests (an
            # older daemon) would reset a connection that left unread bytes behind.
            if request != "status":
                sock.sendall(request.encode() + b"\n")
            sock.shutdown(socket.SHUT_WR)  # the whole request: the server answers at once
        except OSError:
            pass  # a server that answers without reading (or has closed): read what it sent
        chunks = []
        size = 0
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise StatusError(no_answer)
            sock.settimeout(remaining)
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                raise StatusError(no_answer) from None
            except OSError as err:
                raise StatusError(f"ddsp-device daemon at {sock_path}: {err.strerror or err}") from err
            if not chunk:
                break
            size += len(chunk)
            if size > MAX_ANSWER_BYTES:
                raise StatusError(f"ddsp-device daemon at {sock_path} sent more than {MAX_ANSWER_BYTES} bytes")
            chunks.append(chunk)
    finally:
        sock.close()
    data = b"".join(chunks)
    if not data:
        raise StatusError(f"ddsp-device daemon at {sock_path} closed the connection without answering")
    try:
        doc = json.loads(data)
    except ValueError as err:
        raise StatusError(f"ddsp-device daemon at {sock_path} sent an invalid answer ({err})") from None
    if not isinstance(doc, dict):
        raise StatusError(f"ddsp-device daemon at {sock_path} sent {type(doc).__name__}, not an object")
    return doc


# -- for humans -----------------------------------------------------------------------------------

_MISSING = "-"


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _num(value: Any, spec: str = "") -> str:
    return format(value, spec) if _is_number(value) else _MISSING


def _count(value: Any) -> str:
    return str(round(value)) if _is_number(value) else _MISSING


def _text(value: Any) -> str:
    if value is None or value == "" or isinstance(value, (dict, list)):
        return _MISSING
    return str(value)


def _get(mapping: Any, key: str) -> Any:
    return mapping.get(key) if isinstance(mapping, Mapping) else None


def _duration(seconds: Any) -> str:
    if not _is_number(seconds) or seconds < 0:
        return _MISSING
    days, rest = divmod(int(seconds), 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    hms = f"{hours:02d}:{minutes:02d}:{secs:02d}"
    return f"{days} d {hms}" if days else hms


def _address(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return f"0x{value:02x}"
    return _text(value)


def _compute_line(period_ms: Any, budget_ms: Any) -> str:
    parts = [f"{key} {_num(_get(period_ms, key), '.2f')} ms" for key in ("p50", "p99", "max")]
    line = ", ".join(parts) + f" of {_num(budget_ms, '.2f')} ms per period"
    worst = _get(period_ms, "max")
    if _is_number(worst) and _is_number(budget_ms) and budget_ms > 0:
        line += f" (max {100.0 * worst / budget_ms:.0f} %)"
    return line


def _audio_line(audio: Any) -> str:
    if not isinstance(audio, Mapping):
        return _MISSING
    return (
        f"{_text(audio.get('device'))}, {_count(audio.get('rate'))} Hz, "
        f"{_count(audio.get('period'))} frames × {_count(audio.get('periods'))} periods"
    )


def _sensor_lines(sensors: Any) -> list[str]:
    if not isinstance(sensors, list):
        return [f"{'sensors':<10}{_MISSING}"]
    if not sensors:
        return [f"{'sensors':<10}none"]
    header = ("name", "address", "state", "faults", "retries")
    rows = [header]
    for sensor in sensors:
        rows.append(
            (
                _text(_get(sensor, "name")),
                _address(_get(sensor, "address")),
                _text(_get(sensor, "state")),
                _count(_get(sensor, "faults")),
                _count(_get(sensor, "retries")),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["sensors"]
    for row in rows:
        cells = [row[i].ljust(widths[i]) if i < 3 else row[i].rjust(widths[i]) for i in range(len(header))]
        lines.append("  " + "  ".join(cells).rstrip())
    return lines


def _counters_line(counters: Any) -> str:
    if not isinstance(counters, Mapping):
        return _MISSING
    if not counters:
        return "none"
    items = sorted(counters.items(), key=lambda kv: str(kv[0]))
    return ", ".join(f"{key} {_count(value)}" for key, value in items)


def _tone_line(tone: Any) -> str:
    value = _get(tone, "value")
    if not _is_number(value):
        return _MISSING
    word = "flat" if value == 0 else "darker" if value < 0 else "brighter"
    source = _get(tone, "from")
    where = f", from the {source}" if source == "knob" else f", from {source}" if isinstance(source, str) else ""
    return f"{value:+.2f} ({word}{where})"


def format_status(d: Mapping[str, Any]) -> str:
    """The status document as text for a terminal; missing or malformed values show as ``-``.

    Example::

        ddsp-device 0.1.0, pid 1234
        model     Violin
        tone      -0.25 (darker, from the knob)
        uptime    1 d 02:03:04
        CPU load  23 %
        compute   p50 1.20 ms, p99 2.50 ms, max 4.10 ms of 5.33 ms per period (max 77 %)
        xruns     0
        late      0 periods over budget
        audio     hw:CARD=sndrpihifiberry,DEV=0, 48000 Hz, 256 frames × 2 periods
        sensors
          name    address  state  faults  retries
          ribbon  0x48     ok          0        3
        counters  faults 3, starts 7, xruns 12
    """
    if not isinstance(d, Mapping):
        d = {}
    lines = [f"ddsp-device {_text(d.get('version'))}, pid {_text(d.get('pid'))}"]
    if "error" in d:
        lines.append(f"{'error':<10}{_text(d.get('error'))}")
    load = d.get("cpu_load")
    lines += [
        f"{'model':<10}{_text(d.get('model'))}",
        f"{'tone':<10}{_tone_line(d.get('tone'))}",
        f"{'uptime':<10}{_duration(d.get('uptime_s'))}",
        f"{'CPU load':<10}{_num(100.0 * load, '.0f') + ' %' if _is_number(load) else _MISSING}",
        f"{'compute':<10}{_compute_line(d.get('period_ms'), d.get('budget_ms'))}",
        f"{'xruns':<10}{_count(d.get('xruns'))}",
        f"{'late':<10}{_count(d.get('late_periods'))} periods over budget",
        f"{'audio':<10}{_audio_line(d.get('audio'))}",
    ]
    restart = d.get("restart_needed")
    if isinstance(restart, list) and restart:
        lines.append(f"{'restart':<10}needed for {', '.join(_text(k) for k in restart)} (running at the old values)")
    lines += _sensor_lines(d.get("sensors"))
    lines.append(f"{'counters':<10}{_counters_line(d.get('counters'))}")
    return "\n".join(lines)
