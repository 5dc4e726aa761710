"""Where models live, and how a model name becomes a file.

A model is named by its file name without ``.tflite`` (``Violin`` → ``Violin.tflite``). Names are
looked up, in order, in ``[model] directory`` (when set), the state directory's ``models/``
(``/var/lib/ddsp-device/models``, or ``$STATE_DIRECTORY/models`` under systemd) and the models
bundled with the package (``models/`` of a source checkout, or ``share/ddsp-device/models`` of an
installed one). Anything containing a path separator or ending in ``.tflite`` is a path.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from .errors import ModelError

MODEL_SUFFIX = ".tflite"
DEFAULT_STATE_DIR = Path("/var/lib/ddsp-device")


def state_dir() -> Path:
    """The daemon's state directory (systemd's ``$STATE_DIRECTORY`` when set)."""
    env = os.environ.get("STATE_DIRECTORY")
    return Path(env.split(":")[0]) if env else DEFAULT_STATE_DIR


def bundled_models_dir() -> Path | None:
    """The models shipped with the project, or None when neither location exists."""
    checkout = Path(__file__).resolve().parents[2] / "models"
    installed = Path(sys.prefix) / "share" / "ddsp-device" / "models"
    for candidate in (checkout, installed):
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
