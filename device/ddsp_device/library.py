"""The library of installed models: where models live, how a name becomes a file, installing one.

A model is named by its file name without ``.tflite`` (``Violin`` → ``Violin.tflite``). Names are
looked up, in order, in ``[model] directory`` (when set), the state directory's ``models/``
(``/var/lib/ddsp-device/models``, or ``$STATE_DIRECTORY/models`` under systemd) and the models
bundled with the package (``models/`` of a source checkout, ``share/ddsp-device/models`` of an
installed box, ``ddsp_device/models`` in an installed wheel). In ``[model] name`` (the config,
written by root) anything containing a path separator or ending in ``.tflite`` is a path.

Names that come from anywhere else — ``ddsp-device models add/use/remove``, the selection in
``state.json`` (writable by the service's group) — must be plain names
(:func:`validate_model_name`) and are looked up only inside the models directories
(:func:`resolve_model_name`), never as a path.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import sys
import unicodedata
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .atomicfile import fsync_dir
from .errors import ModelError

MODEL_SUFFIX = ".tflite"
DEFAULT_STATE_DIR = Path("/var/lib/ddsp-device")
#: Longest model name, in UTF-8 bytes (file names may have 255; leaves room for the suffix and
#: the temp-file decoration of an atomic write).
MAX_NAME_BYTES = 200


def state_dir() -> Path:
    """The daemon's state directory (systemd's ``$STATE_DIRECTORY`` when set)."""
    env = os.environ.get("STATE_DIRECTORY")
    return Path(env.split(":")[0]) if env else DEFAULT_STATE_DIR


def bundled_models_dir() -> Path | None:
    """The models shipped with the project, or None when no location exists.

    In order: ``models/`` of a source checkout (this file is ``device/ddsp_device/library.py``),
    ``ddsp_device/models`` inside an installed wheel (package data), and
    ``<prefix>/share/ddsp-device/models``.
    """
    here = Path(__file__).resolve().parent
    checkout = here.parents[1] / "models"
    if here.parent.name == "device" and checkout.is_dir():  # not whatever "models" lies above site-packages
        return checkout
    for candidate in (here / "models", Path(sys.prefix) / "share" / "ddsp-device" / "models"):
        if candidate.is_dir():
            return candidate
    return None


def search_path(directory: str | os.PathLike[str] | None = None) -> list[Path]:
    """Directories searched for a model name, in order."""
    dirs: list[Path] = []
    if directory:
        dirs.append(Path(directory))
    dirs.append(state_dir() / "models")
    bundled = bundled_models_dir()
    if bundled is not None:
        dirs.append(bundled)
    return dirs


def is_path(name: str) -> bool:
    """True when ``name`` names a file rather than a model in the library."""
    return os.sep in name or "/" in name or name.endswith(MODEL_SUFFIX)


def resolve_model(name: str, directory: str | os.PathLike[str] | None = None) -> Path:
    """The file for model ``name`` (a name or a path).

    Raises:
        ModelError: naming the model and every place looked.
    """
    if not name:
        raise ModelError("model.name: empty model name")
    if is_path(name):
        path = Path(name).expanduser()
        if not path.is_file():
            raise ModelError(f"model file {path}: no such file")
        return path
    dirs = search_path(directory)
    for d in dirs:
        candidate = d / f"{name}{MODEL_SUFFIX}"
        if candidate.is_file():
            return candidate
    available = sorted({p.stem for d in dirs if d.is_dir() for p in d.glob(f"*{MODEL_SUFFIX}")})
    looked = ", ".join(str(d) for d in dirs)
    hint = f"; available: {', '.join(available)}" if available else ""
    raise ModelError(f"model {name!r}: not found in {looked}{hint}")


def resolve_model_name(name: str, directory: str | os.PathLike[str] | None = None) -> Path:
    """The file for the plain model name ``name``, found only inside the models directories.

    For names that do not come from the config (the selection in ``state.json``, a command's
    argument): a path, ``..`` or any other name :func:`validate_model_name` refuses is refused.

    Raises:
        ModelError: the name is not a plain name (naming the rule), or no directory holds it.
    """
    validate_model_name(name)
    return resolve_model(name, directory)


#: Unicode categories refused in model names: format characters (zero-width spaces and joiners,
#: bidi overrides and isolates, the BOM, soft hyphens), line and paragraph separators, private use
#: and unassigned code points -- characters that do not show, or change how the rest shows.
_INVISIBLE_CATEGORIES = frozenset({"Cf", "Zl", "Zp", "Co", "Cn"})


def validate_model_name(name: str) -> str:
    """Return ``name`` if it is a plain model name, the stem of ``<name>.tflite`` in one directory.

    Raises:
        ModelError: naming the rule broken: empty, a path separator, ``..``, a leading dot
            (hidden), a leading ``-`` (reads as an option), a leading or trailing space, a
            control character, an invisible or text-direction character (zero-width, bidi
            override, :data:`_INVISIBLE_CATEGORIES`), a ``.tflite`` ending, not UTF-8, or over
            :data:`MAX_NAME_BYTES`.
    """
    if not isinstance(name, str) or not name:
        raise ModelError("model name: empty; give a plain name such as Violin")
    what = f"model name {name!r}"
    if "/" in name or os.sep in name or "\\" in name:
        raise ModelError(f"{what}: contains a path separator; names are plain names such as Violin")
    if ".." in name:
        raise ModelError(f"{what}: contains '..'; names are plain names such as Violin")
    if name.startswith("."):
        raise ModelError(f"{what}: starts with '.' (a hidden file); names are plain names such as Violin")
    if name.startswith("-"):
        raise ModelError(f"{what}: starts with '-' (it would read as an option)")
    if name != name.strip():
        raise ModelError(f"{what}: begins or ends with white space")
    if any(unicodedata.category(ch) == "Cc" for ch in name):
        raise ModelError(f"{what}: contains a control character")
    for ch in name:
        if unicodedata.category(ch) in _INVISIBLE_CATEGORIES:
            label = unicodedata.name(ch, "unassigned")
            raise ModelError(
                f"{what}: contains U+{ord(ch):04X} ({label}), an invisible or text-direction character; "
                "it would make two names look alike"
            )
    if name.lower().endswith(MODEL_SUFFIX):
        raise ModelError(
            f"{what}: ends in {MODEL_SUFFIX}; give the name without it (the file becomes NAME{MODEL_SUFFIX})"
        )
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError:
        raise ModelError(f"{what}: not valid UTF-8") from None
    if size > MAX_NAME_BYTES:
        raise ModelError(f"{what}: longer than {MAX_NAME_BYTES} bytes")
    file_name = Path(f"{name}{MODEL_SUFFIX}")
    if is_path(name) or file_name.name != f"{name}{MODEL_SUFFIX}" or file_name.stem != name:
        raise ModelError(f"{what}: does not become the file {name}{MODEL_SUFFIX}")  # pragma: no cover
    return name


def model_defaults(cfg):
    """The :class:`~ddsp_device.model.ModelDefaults` for bare model files, from ``[model]``."""
    from .model import ModelDefaults

    m = cfg.model
    return ModelDefaults(
        sample_rate_hz=m.fallback_sample_rate_hz,
        frame_rate_hz=m.fallback_frame_rate_hz,
        f0_min_hz=m.fallback_f0_min_hz,
        f0_max_hz=m.fallback_f0_max_hz,
    )


# -- the installed models -------------------------------------------------------------------------


def resolve_quietly(name: str, directory: str | os.PathLike[str] | None = None) -> Path | None:
    """:func:`resolve_model`, or None when it finds nothing."""
    try:
        return resolve_model(name, directory)
    except ModelError:
        return None


def same_file(a: Path | None, b: Path | None) -> bool:
    """True when ``a`` and ``b`` are the same existing file."""
    if a is None or b is None:
        return False
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def role(directory: Path, configured_directory: str | os.PathLike[str] | None = None) -> str:
    """What a directory of the search path is: ``[model] directory``, ``models directory``
    (the state directory's), ``bundled`` or ``other``."""
    if configured_directory and directory == Path(configured_directory):
        return "[model] directory"
    if directory == state_dir() / "models":
        return "models directory"
    bundled = bundled_models_dir()
    if bundled is not None and directory == bundled:
        return "bundled"
    return "other"  # pragma: no cover


def installed_models(directory: str | os.PathLike[str] | None = None) -> list[dict[str, Any]]:
    """Every model name in the search path, once, in search order then by name.

    Each entry: ``name``, ``path`` (the file that plays under that name), ``directory``,
    ``source`` (:func:`role`) and ``shadows`` (files of the same name further down the path).
    Hidden files are left out; a name :func:`validate_model_name` refuses is listed (so that it
    can be seen) but cannot be chosen. Nothing is checked here.
    """
    entries: dict[str, dict[str, Any]] = {}
    for folder in search_path(directory):
        try:
            files = sorted(p for p in folder.iterdir() if p.name.endswith(MODEL_SUFFIX))
        except OSError:
            continue  # missing or unreadable: nothing to list there
        for path in files:
            name = path.name[: -len(MODEL_SUFFIX)]
            if not name or name.startswith(".") or not path.is_file():
                continue
            if name in entries:
                entries[name]["shadows"].append(str(path))
                continue
            entries[name] = {"name": name, "path": str(path), "directory": str(folder),
                             "source": role(folder, directory), "shadows": []}
    return list(entries.values())


def model_to_play(selected: str | None, configured: str, plays: Callable[[str], bool]) -> tuple[str, str]:
    """The model the daemon plays when it starts, and why: the rule, in one place.

    The model chosen with ``models use`` (``selected``) when there is one and it plays
    (``plays(name)``: found, checked, loaded); otherwise ``[model] name`` (``configured``).
    """
    if selected:
        if plays(selected):
            return selected, "chosen with 'models use'"
        return configured, f"[model] name in the config; {selected!r}, chosen with 'models use', does not play"
    return configured, "[model] name in the config"


def match_owner(path: Path, directory: Path) -> None:
    """As root, give ``path`` the owner of ``directory`` so that the service user can use it."""
    if os.geteuid() != 0:
        return
    with contextlib.suppress(OSError):
        st = os.stat(directory)
        os.chown(path, st.st_uid, st.st_gid)


def install_copy(source: Path, target: Path, expected_sha256: str | None, *, replace: bool,
                 limit_bytes: int | None = None) -> int:
    """Copy ``source`` to ``target`` atomically (temp file, fsync, rename, fsync of the directory).

    Without ``replace`` an existing ``target`` is never overwritten, even by a race. Returns the
    bytes copied.

    Raises:
        ModelError: the bytes differ from those checked (``expected_sha256``), the file grew
            over ``limit_bytes`` (default: the model check's limit), or ``target`` appeared
            meanwhile.
        OSError: from the filesystem (the temp file is removed).
    """
    from .model.check import MAX_MODEL_BYTES, human_size

    limit = MAX_MODEL_BYTES if limit_bytes is None else limit_bytes
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
                    if copied > limit:
                        raise ModelError(f"{source}: grew over the {human_size(limit)} limit while being copied")
                    digest.update(chunk)
                    view = memoryview(chunk)
                    while view:
                        view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        if expected_sha256 is not None and digest.hexdigest() != expected_sha256:
            raise ModelError(f"{source}: changed while it was being added; run the command again")
        match_owner(tmp, directory)
        if replace:
            os.replace(tmp, target)
        else:
            try:
                os.link(tmp, target)  # fails if target exists: no overwrite, even in a race
            except FileExistsError:
                raise ModelError(f"{target}: appeared while adding; use --force to replace it") from None
            except OSError as err:
                if err.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
                    raise
                if target.exists():  # a filesystem without hard links: check, then rename
                    raise ModelError(f"{target}: appeared while adding; use --force to replace it") from None
                os.replace(tmp, target)
            else:
                os.unlink(tmp)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(directory)
    return copied
