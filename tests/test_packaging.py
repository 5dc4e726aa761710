"""The wheel carries the instrument: `pip install .` gives a ddsp-device that finds its Violin."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BUNDLED = sorted(p.name for p in (ROOT / "models").glob("*.tflite"))


def test_every_package_is_listed_for_the_wheel():
    """pyproject lists the packages by hand (for ddsp_device.models): none may be forgotten."""
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    on_disk = {
        ".".join(p.parent.relative_to(ROOT / "device").parts)
        for p in (ROOT / "device").rglob("__init__.py")
    }
    assert listed == on_disk | {"ddsp_device.models"}


def test_bundled_models_dir_falls_back_to_the_package_data(tmp_path, monkeypatch):
    """Installed (no checkout around it), the library looks in ddsp_device/models."""
    import ddsp_device.library as library

    package = tmp_path / "site-packages" / "ddsp_device"
    (package / "models").mkdir(parents=True)
    (package / "models" / "Violin.tflite").write_bytes(b"model")
    (tmp_path / "models").mkdir()  # a stray "models" above site-packages is not a checkout
    monkeypatch.setattr(library, "__file__", str(package / "library.py"))
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path / "state"))
    assert library.bundled_models_dir() == package / "models"
    assert library.resolve_model("Violin") == package / "models" / "Violin.tflite"


def _setuptools_builds_this_project() -> bool:
    try:
        import setuptools
    except ImportError:
        return False
    major = int(setuptools.__version__.split(".")[0])
    return major >= 77  # pyproject's build-system.requires


@pytest.mark.skipif(not _setuptools_builds_this_project(), reason="needs setuptools >= 77 (pip install '.[test]')")
def test_wheel_carries_the_bundled_models(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "device", src / "device", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    (src / "models").mkdir()
    for name in BUNDLED:
        shutil.copy(ROOT / "models" / name, src / "models" / name)
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
         "-w", str(tmp_path / "dist"), str(src)],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr
    (wheel,) = (tmp_path / "dist").glob("ddsp_device-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {f"ddsp_device/models/{name}" for name in BUNDLED} <= names
    assert "ddsp_device/defaults.toml" in names and "ddsp_device/library.py" in names
    assert "Violin.tflite" in BUNDLED

    # installed without the checkout, the library finds the Violin in the package
    target = tmp_path / "site"
    with zipfile.ZipFile(wheel) as z:
        z.extractall(target)
    probe = subprocess.run(
        [sys.executable, "-I", "-c",
         f"import sys; sys.path.insert(0, {str(target)!r}); from ddsp_device.library import resolve_model; "
         "print(resolve_model('Violin'))"],
        capture_output=True, text=True, timeout=120, env={"STATE_DIRECTORY": str(tmp_path / "state"), "PATH": "/usr/bin:/bin"},
    )
    assert probe.returncode == 0, probe.stderr
    assert Path(probe.stdout.strip()) == target / "ddsp_device" / "models" / "Violin.tflite"
