"""Atomic file replacement: a power cut leaves the old file or the new one, never a mix.

Write a temp file in the same directory (``.<name>.<pid>-<hex>.tmp``), fsync it,
``os.replace`` it over the target, fsync the directory. Used for everything the box keeps: the
daemon's state, the calibration, installed models; :class:`AtomicOutput` does the same for a
file written piece by piece (``render``'s WAV).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from pathlib import Path
from typing import Any

DEFAULT_FILE_MODE = 0o640

PathLike = str | os.PathLike[str]


def _temp_name(target: Path) -> Path:
    return target.with_name(f".{target.name}.{os.getpid()}-{os.urandom(4).hex()}.tmp")


def _temp_pattern(name: str) -> re.Pattern[str]:
    return re.compile(rf"\.{re.escape(name)}\.(\d+)-[0-9a-f]{{8}}\.tmp")


def fsync_dir(directory: PathLike) -> None:
    """fsync a directory so that a rename in it survives a power cut (best effort)."""
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on a directory; the rename is still atomic
    finally:
        os.close(fd)


def atomic_write_bytes(path: PathLike, data: bytes, *, mode: int | None = None) -> None:
    """Replace ``path`` with ``data`` so that a crash leaves either the old or the new file.

    Args:
        path: the file; its directory must exist.
        data: the whole new content.
        mode: permission bits; default: those of the file being replaced, else 0o640.
    Raises:
        OSError: from the filesystem (full, read-only, no permission); the temp file is removed
            and the old file is untouched.
    """
    target = Path(path)
    if mode is None:
        try:
            mode = os.stat(target).st_mode & 0o7777
        except FileNotFoundError:
            mode = DEFAULT_FILE_MODE
    tmp = _temp_name(target)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        try:
            os.fchmod(fd, mode)  # the umask must not narrow a mode we were asked to keep
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(target.parent)


def atomic_write_text(path: PathLike, text: str, *, mode: int | None = None, encoding: str = "utf-8") -> None:
    """:func:`atomic_write_bytes` for text."""
    atomic_write_bytes(path, text.encode(encoding), mode=mode)


def atomic_write_json(path: PathLike, obj: Any, *, mode: int | None = None) -> None:
    """:func:`atomic_write_bytes` for a JSON document (indented, keys sorted, final newline)."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n", mode=mode)


class AtomicOutput:
    """A file written piece by piece under a temp name beside ``path``, then renamed over it.

    :meth:`commit` flushes, fsyncs and renames; :meth:`discard` (or a crash, or a kill) leaves
    ``path`` as it was: the old file, or none. A killed process can leave its temp file
    (``.<name>.<pid>-<hex>.tmp``) behind; never a half-written ``path``.

    Args:
        path: the file; its directory must exist.
        mode: permission bits; default: those of the file being replaced, else 0o666 less the
            umask (as ``open`` would create it).
    Raises:
        OSError: the temp file cannot be created.
    """

    def __init__(self, path: PathLike, *, mode: int | None = None):
        self.path = Path(path)
        if mode is None:
            try:
                mode = os.stat(self.path).st_mode & 0o7777
            except OSError:
                mode = None
        self.temp_path = _temp_name(self.path)
        fd = os.open(self.temp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC,
                     0o666 if mode is None else mode)
        try:
            if mode is not None:
                os.fchmod(fd, mode)
            self.file = os.fdopen(fd, "wb")
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(self.temp_path)
            raise
        self.done = False

    def commit(self) -> None:
        """Flush, fsync, rename over ``path``, fsync the directory. On OSError the temp file is
        removed and ``path`` is untouched."""
        if self.done:
            return
        self.done = True
        try:
            self.file.flush()
            os.fsync(self.file.fileno())
            self.file.close()
            os.replace(self.temp_path, self.path)
        except BaseException:
            self.file.close()
            with contextlib.suppress(OSError):
                os.unlink(self.temp_path)
            raise
        fsync_dir(self.path.parent)

    def discard(self) -> None:
        """Close and remove the temp file; ``path`` is untouched. Twice is harmless."""
        if self.done:
            return
        self.done = True
        with contextlib.suppress(OSError):
            self.file.close()
        with contextlib.suppress(OSError):
            os.unlink(self.temp_path)
