"""The daemon's state directory: atomic writes, forgiving reads, and the persisted state.

The directory is ``library.state_dir()``: ``$STATE_DIRECTORY`` under systemd
(``StateDirectory=ddsp-device``), else ``/var/lib/ddsp-device``. It holds::

    state.json          {"version": 1, "selected_model": "Violin",
                         "counters": {"xruns": 12, "uptime_s": 86400, "faults": 3, "starts": 7}}
    calibration.json    (controls.calibration)
    models/             models installed by the user (library.search_path looks here)

Every write goes through :func:`ddsp_device.atomicfile.atomic_write_bytes`: a temp file in the same directory, fsync,
``os.replace``, fsync of the directory. A power cut at any point leaves the old file or the new
one, never a mix; a leftover temp file (``.state.json.<pid>-<hex>.tmp``) is never read as state
and :class:`StateStore` removes its own when it opens. A corrupt or half-written file (from a
card that lied about fsync, or an edit by hand) is treated as absent with one warning naming it:
the daemon must start anyway.

``selected_model`` is untrusted input: members of the service's group write it (``ddsp-device
models use``). Only a plain model name (:func:`~ddsp_device.library.validate_model_name`) is
taken; anything else — a path such as ``../../../etc/passwd`` — is refused with a warning, and
:meth:`StateStore.reload_selection` raises, so that the daemon refuses the reload that asks for it.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..atomicfile import _temp_pattern, atomic_write_json
from ..errors import ModelError
from ..library import state_dir, validate_model_name

log = logging.getLogger(__name__)

STATE_FILENAME = "state.json"
STATE_VERSION = 1
MODELS_DIRNAME = "models"

PathLike = str | os.PathLike[str]


# -- atomic files ---------------------------------------------------------------------------------


def read_json(path: PathLike, default: Any = None) -> Any:
    """The JSON document in ``path``; a copy of ``default`` when there is none.

    A missing file is silently absent. A file that cannot be read or parsed (corrupt, truncated,
    not UTF-8) is also treated as absent, with one warning naming it: this never raises.
    """
    target = Path(path)
    try:
        text = target.read_bytes()
    except FileNotFoundError:
        return copy.deepcopy(default)
    except OSError as err:
        log.warning("%s: cannot read (%s); ignoring it", target, err.strerror or err)
        return copy.deepcopy(default)
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as err:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        log.warning("%s: corrupt or incomplete file (%s); ignoring it", target, err)
        return copy.deepcopy(default)


def remove_stale_temp_files(directory: PathLike, name: str) -> list[Path]:
    """Remove temp files that :func:`atomic_write_bytes` left for ``name`` in ``directory``
    (after a crash or power cut), except those of a process still alive.

    Returns:
        The files removed.
    """
    pattern = _temp_pattern(name)
    removed = []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return removed
    for entry in entries:
        match = pattern.fullmatch(entry.name)
        if match is None:
            continue
        pid = int(match.group(1))
        if pid != os.getpid() and _pid_alive(pid):
            continue  # perhaps another process writing right now
        with contextlib.suppress(OSError):
            os.unlink(entry.path)
            removed.append(Path(entry.path))
            log.info("%s: removed a temp file left by an interrupted write", entry.path)
    return removed


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # EPERM: it exists, under another user
    return True


# -- the daemon's state ---------------------------------------------------------------------------


def _valid_selection(model: Any, where: str = "state.json") -> str | None:
    """``model`` if it is None or a plain model name; else ModelError naming the rule broken."""
    if model is None:
        return None
    if not isinstance(model, str) or not model:
        raise ModelError(f"{where}: selected_model {model!r} is not a model name")
    try:
        return validate_model_name(model)
    except ModelError as err:
        raise ModelError(f"{where}: selected_model {model!r} is not a model name ({err})") from None


class StateStore:
    """The selected model and the lifetime counters, persisted in ``<directory>/state.json``.

    The selected model is written at once when set. Counters change often (xruns, uptime) and
    are written by :meth:`maybe_save` once ``save_interval_s`` has passed since the last write,
    and by :meth:`close`. Nothing here raises for a directory that is missing or read-only: the
    store then lives in memory, warns once, and counts failed writes in :attr:`save_failures`.
    Thread-safe (one lock; not for the audio thread).

    Args:
        directory: the state directory; default ``library.state_dir()``.
        save_interval_s: least time between counter writes.
        clock: monotonic seconds (injectable for tests).

    Example::

        with StateStore() as state:
            state.add("starts")
            state.selected_model = "Violin"
            ...                                  # each second, from the control thread:
            state.add("uptime_s", 1)
            state.maybe_save()
    """

    def __init__(
        self,
        directory: PathLike | None = None,
        *,
        save_interval_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.directory = Path(directory) if directory is not None else state_dir()
        self.path = self.directory / STATE_FILENAME
        self.save_interval_s = float(save_interval_s)
        self.save_failures = 0
        self._clock = clock
        self._lock = threading.Lock()
        self._dirty = False
        self._closed = False
        self._warned_save = False
        self._last_save = clock()
        self._extra: dict[str, Any] = {}
        self._selected_model: str | None = None
        self._selection_changed = False  # set here since the last save (else the file's wins)
        self._counters: dict[str, int] = {}
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            log.warning(
                "state directory %s: cannot create (%s); state will not persist", self.directory, err.strerror or err
            )
        remove_stale_temp_files(self.directory, STATE_FILENAME)
        self._load()

    def _load(self) -> None:
        doc = read_json(self.path, default={})
        if not isinstance(doc, dict):
            log.warning("%s: not a JSON object; ignoring it", self.path)
            return
        problems = []
        model = doc.pop("selected_model", None)
        try:
            self._selected_model = _valid_selection(model)
        except ModelError as err:
            problems.append(str(err))
        counters = doc.pop("counters", {})
        if isinstance(counters, dict):
            for key, value in counters.items():
                if isinstance(value, int) and not isinstance(value, bool):
                    self._counters[str(key)] = value
                else:
                    problems.append(f"counter {key!r} = {value!r} is not an integer")
        else:
            problems.append("counters is not an object")
        doc.pop("version", None)
        self._extra = doc  # keys written by a newer version survive our writes
        if problems:
            log.warning("%s: ignoring %s", self.path, "; ".join(problems))

    # -- selected model -------------------------------------------------------------------------

    @property
    def selected_model(self) -> str | None:
        """The model the daemon plays (a name or a path), None when none was chosen."""
        return self._selected_model

    @selected_model.setter
    def selected_model(self, name: str | None) -> None:
        if name is not None and (not isinstance(name, str) or not name):
            raise ValueError(f"selected_model: expected a model name or None, got {name!r}")
        _valid_selection(name)  # a ModelError (a ValueError) for a path or any other non-name
        with self._lock:
            self._selected_model = name
            self._selection_changed = True  # written even if unchanged here: the file may differ
            self._dirty = True
        self.save()

    def reload_selection(self) -> str | None:
        """Re-read ``selected_model`` from ``state.json``: another process (``ddsp-device models
        use``) may have chosen a model since. Returns the selection.

        Raises:
            ModelError: ``state.json`` names something that is not a model name (the message
                says what and which rule it breaks); the selection held is left as it was.
        """
        doc = read_json(self.path, default={})
        raw = doc.get("selected_model") if isinstance(doc, dict) else None
        on_disk = _valid_selection(raw, where=str(self.path))
        with self._lock:
            if not self._selection_changed:
                self._selected_model = on_disk
            return self._selected_model

    def _selection_on_disk(self) -> str | None:
        doc = read_json(self.path, default={})
        model = doc.get("selected_model") if isinstance(doc, dict) else None
        try:
            return _valid_selection(model)
        except ModelError:
            return None

    # -- counters -------------------------------------------------------------------------------

    @property
    def counters(self) -> dict[str, int]:
        """A copy of the lifetime counters (e.g. ``xruns``, ``uptime_s``, ``faults``, ``starts``)."""
        with self._lock:
            return dict(self._counters)

    def counter(self, name: str) -> int:
        """One counter; 0 when it was never set."""
        return self._counters.get(name, 0)

    def add(self, name: str, n: int = 1) -> int:
        """Add ``n`` to counter ``name`` (written later, see :meth:`maybe_save`); the new value."""
        n = int(n)
        with self._lock:
            value = self._counters.get(name, 0) + n
            self._counters[name] = value
            if n:
                self._dirty = True
        return value

    def set_counter(self, name: str, value: int) -> None:
        """Set counter ``name`` to ``value`` (written later, see :meth:`maybe_save`)."""
        value = int(value)
        with self._lock:
            if self._counters.get(name) != value:
                self._counters[name] = value
                self._dirty = True

    # -- models ---------------------------------------------------------------------------------

    @property
    def models_dir(self) -> Path:
        """``<directory>/models``, created when first asked for (OSError if it cannot be)."""
        path = self.directory / MODELS_DIRNAME
        path.mkdir(mode=0o750, parents=True, exist_ok=True)
        return path

    # -- persistence ----------------------------------------------------------------------------

    @property
    def dirty(self) -> bool:
        """True when something changed since the last successful write."""
        return self._dirty

    def to_dict(self) -> dict[str, Any]:
        """The document written to ``state.json``."""
        with self._lock:
            return self._doc_unlocked()

    def save(self) -> bool:
        """Write ``state.json`` now if anything changed. False when the write failed (warned
        once until a write succeeds again; counted in :attr:`save_failures`)."""
        if not self._dirty:
            return True
        # The daemon saves counters; the CLI chooses models. Unless this store chose a model
        # itself, the file's choice wins, so a counter save never undoes `models use`.
        if not self._selection_changed:
            on_disk = self._selection_on_disk()
            with self._lock:
                if not self._selection_changed:
                    self._selected_model = on_disk
        doc = self.to_dict()
        now = self._clock()
        try:
            atomic_write_json(self.path, doc)
        except OSError as err:
            with self._lock:
                self.save_failures += 1
                self._last_save = now  # retry at the next interval, not at every call
                warn = not self._warned_save
                self._warned_save = True
            if warn:
                log.warning("%s: cannot save the state (%s); will retry", self.path, err.strerror or err)
            return False
        with self._lock:
            self._last_save = now
            if doc == self._doc_unlocked():
                self._dirty = False
                self._selection_changed = False
            if self._warned_save:
                log.info("%s: state saved again", self.path)
            self._warned_save = False
        return True

    def maybe_save(self) -> bool:
        """:meth:`save` if something changed and ``save_interval_s`` has passed since the last
        write; True when a write happened."""
        if not self._dirty or self._clock() - self._last_save < self.save_interval_s:
            return False
        return self.save()

    def _doc_unlocked(self) -> dict[str, Any]:
        doc = dict(self._extra)
        doc.update(version=STATE_VERSION, selected_model=self._selected_model, counters=dict(self._counters))
        return doc

    def close(self) -> None:
        """Write what changed. Closing twice is harmless."""
        if self._closed:
            return
        self._closed = True
        self.save()

    def __enter__(self) -> "StateStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"StateStore({str(self.directory)!r}, selected_model={self._selected_model!r})"
