"""Layers point down: CLI -> daemon -> engine -> dsp. The daemon and what it runs never import
a command-line module (found by parsing every import, including those inside functions)."""

from __future__ import annotations

import ast
from pathlib import Path

import ddsp_device

PACKAGE = Path(ddsp_device.__file__).resolve().parent
CLI_MODULES = ("ddsp_device.cli", "ddsp_device.models_cli")
#: What must not reach up into the command line.
LOWER_LAYERS = ("daemon", "dsp", "model", "engine.py")


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(source: str, name: str, *, is_package: bool = False) -> set[str]:
    """Every module the source of module ``name`` imports, as absolute dotted names
    (``from x import y`` gives x and x.y)."""
    package = name if is_package else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(source, name)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def lower_layer_files() -> list[Path]:
    files: list[Path] = []
    for entry in LOWER_LAYERS:
        target = PACKAGE / entry
        files += sorted(target.rglob("*.py")) if target.is_dir() else [target]
    return files


def test_the_finder_sees_relative_and_lazy_imports():
    source = "def f():\n    from ..models_cli import x\n    from .. import cli\n    import ddsp_device.cli\n"
    found = imported_modules(source, "ddsp_device.daemon.probe")
    assert {"ddsp_device.models_cli", "ddsp_device.cli"} <= found
    assert "ddsp_device.daemon.client" in imported_modules("from . import client\n", "ddsp_device.daemon",
                                                           is_package=True)


def test_daemon_engine_dsp_and_model_do_not_import_the_cli():
    files = lower_layer_files()
    assert len(files) > 10
    offenders = []
    for path in files:
        source = path.read_text(encoding="utf-8")
        for module in imported_modules(source, _module_name(path), is_package=path.name == "__init__.py"):
            if any(module == cli or module.startswith(cli + ".") for cli in CLI_MODULES):
                offenders.append(f"{path.relative_to(PACKAGE)} imports {module}")
    assert offenders == []
