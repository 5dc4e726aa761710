"""Runtime choice: tflite-runtime or ai-edge-litert, forced or automatic, and the import boundary."""

from __future__ import annotations

import ast
import importlib.util
import os
import subprocess
import sys
import textwrap

import pytest

from ddsp_device.errors import ModelError, RuntimeUnavailableError
from ddsp_device.model import RUNTIME_ENV, RUNTIMES, load_model
from ddsp_device.model.runtime import import_interpreter

pytestmark = pytest.mark.runtime

RUNTIME_PACKAGES = {"tflite-runtime": "tflite_runtime", "ai-edge-litert": "ai_edge_litert"}


def installed(name: str) -> bool:
    return importlib.util.find_spec(RUNTIME_PACKAGES[name]) is not None


def test_runtime_names():
    assert list(RUNTIMES) == ["tflite-runtime", "ai-edge-litert"]


@pytest.mark.parametrize("name", list(RUNTIME_PACKAGES))
def test_requested_runtime_is_used_or_refused_with_reason(paths, monkeypatch, name):
    monkeypatch.delenv(RUNTIME_ENV, raising=False)
    if installed(name):
        with load_model(paths.demo, runtime=name) as model:
            assert model.info.runtime_name == name
    else:
        with pytest.raises(RuntimeUnavailableError) as caught:
            load_model(paths.demo, runtime=name)
        assert name in str(caught.value) and "ModuleNotFoundError" in str(caught.value)
        assert isinstance(caught.value, ImportError) and isinstance(caught.value, ModelError)


@pytest.mark.parametrize("name", list(RUNTIME_PACKAGES))
def test_environment_variable_forces_a_runtime(paths, monkeypatch, name):
    monkeypatch.setenv(RUNTIME_ENV, name)
    if installed(name):
        with load_model(paths.demo) as model:
            assert model.info.runtime_name == name
    else:
        with pytest.raises(RuntimeUnavailableError, match=name):
            load_model(paths.demo)


def test_unknown_runtime_in_environment(monkeypatch):
    monkeypatch.setenv(RUNTIME_ENV, "onnxruntime")
    with pytest.raises(RuntimeUnavailableError, match=r"\$DDSP_DEVICE_RUNTIME: unknown runtime 'onnxruntime'"):
        import_interpreter("auto")


def test_no_runtime_lists_what_was_tried_and_why(paths, monkeypatch):
    monkeypatch.delenv(RUNTIME_ENV, raising=False)
    for module in ("tflite_runtime", "tflite_runtime.interpreter", "ai_edge_litert", "ai_edge_litert.interpreter"):
        monkeypatch.setitem(sys.modules, module, None)  # makes "import module" raise ImportError
    with pytest.raises(RuntimeUnavailableError) as caught:
        load_model(paths.demo)
    message = str(caught.value)
    assert "no TFLite runtime could be imported" in message
    assert "tflite-runtime (tflite_runtime.interpreter): ModuleNotFoundError" in message
    assert "ai-edge-litert (ai_edge_litert.interpreter): ModuleNotFoundError" in message


def test_auto_uses_the_first_that_imports(paths, monkeypatch):
    monkeypatch.delenv(RUNTIME_ENV, raising=False)
    expected = "tflite-runtime" if installed("tflite-runtime") else "ai-edge-litert"
    with load_model(paths.demo, num_threads=2) as model:
        assert model.info.runtime_name == expected


def test_package_import_does_not_import_a_runtime(paths):
    """``import ddsp_device.model`` leaves the runtimes alone until load_model runs."""
    script = textwrap.dedent(
        f"""
        import sys
        import ddsp_device, ddsp_device.model
        from ddsp_device.model import load_model
        runtimes = ("tflite_runtime", "ai_edge_litert")
        loaded = lambda: sorted(m for m in sys.modules if m.split(".")[0] in runtimes)
        assert loaded() == [], loaded()
        load_model({str(paths.demo)!r}).close()
        assert loaded(), "load_model imported no runtime"
        print("ok")
        """
    )
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(paths.root / "device"), env.get("PYTHONPATH", "")])
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "ok"


def test_only_the_runtime_module_imports_a_runtime(paths):
    """Import boundary (STYLE.md): only ddsp_device/model/runtime.py names the runtime modules."""
    offenders = []
    for path in sorted((paths.root / "device" / "ddsp_device").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                names = [node.value]  # importlib.import_module("...") strings
            for name in names:
                if name.split(".")[0] in RUNTIME_PACKAGES.values():
                    offenders.append(f"{path.relative_to(paths.root)}:{node.lineno}: {name}")
    allowed = os.path.join("device", "ddsp_device", "model", "runtime.py")
    assert [o for o in offenders if not o.startswith(allowed)] == []
    assert offenders, "the runtime module should name the runtimes"


def test_quiet_native_stderr_drops_only_the_delegate_banner(capfd):
    from ddsp_device.model.runtime import quiet_native_stderr

    with quiet_native_stderr():
        os.write(2, b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n")
        os.write(2, b"ERROR: something the user must see\n")
    os.write(2, b"after\n")
    assert capfd.readouterr().err == "ERROR: something the user must see\nafter\n"


@pytest.mark.runtime
def test_plain_commands_do_not_print_the_xnnpack_banner(tmp_path):
    """The runtime announces its XNNPACK delegate on fd 2 when it loads the Violin: not for users."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    csv = tmp_path / "a.csv"
    csv.write_text("time_s,f0_hz,loudness\n0,220,0.5\n0.1,220,0.5\n")
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "DDSP_DEVICE_RUNTIME", "HOME")}
    env.update(PYTHONPATH=os.path.join(root, "device"), DDSP_DEVICE_SYSTEM_CONFIG=str(tmp_path / "none"))
    result = subprocess.run(
        [sys.executable, "-m", "ddsp_device.cli", "render", "--controls", str(csv), "--out", str(tmp_path / "a.wav"),
         "--model", os.path.join(root, "models", "Violin.tflite")],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "XNNPACK" not in result.stderr and "wrote" in result.stdout
