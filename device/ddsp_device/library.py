"""Where models live, and how a model name becomes a file.

A model is named by its file name without ``.tflite`` (``Violin`` → ``Violin.tflite``). Names are
looked up, in order, in ``[model] directory`` (when set), the state directory's ``models/``
(``/var/lib/ddsp-device/models``, or ``$STATE_DIRECTORY/models`` under systemd) and the models
bundled with the package (``models/`` of a source checkout, ``ddsp_device/models`` in an installed
wheel). Anything containing a path separator or ending in ``.tflite`` is a path.

Names given to ``ddsp-device models add/use/remove`` must be plain names
(:func:`validate_model_name`): a file name in the models directory, never a path.
"""

from __future__ import annotations

import os
import sys
import unicodedata
from pathlib import Path

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
