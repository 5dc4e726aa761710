"""The structural flatbuffer check that keeps truncated files away from the runtimes.

tflite-runtime 2.14 has no flatbuffer verifier and dies with SIGSEGV on a truncated model, so
the sweep over every cut point runs in a child process: a crash fails the test instead of
killing the test run.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from ddsp_device.errors import ModelError
from ddsp_device.model.flatbuffer import check_flatbuffer


def test_good_fixtures_pass_and_list_their_operators(paths):
    summary = check_flatbuffer(paths.demo.read_bytes(), "demo")
    assert summary.schema_version == 3
    assert summary.custom_codes == ()
    assert summary.builtin_codes
    flex = check_flatbuffer((paths.fixtures / "flex.tflite").read_bytes(), "flex")
    assert "FlexCosh" in flex.custom_codes


def test_every_cut_of_the_flatbuffer_is_refused(paths, flatbuffer_part):
    data = flatbuffer_part(paths.demo.read_bytes())
    for cut in range(len(data)):
        with pytest.raises(ModelError, match="empty file|not a TFLite flatbuffer|truncated or corrupt"):
            check_flatbuffer(data[:cut], "cut")


def test_wrong_schema_version(paths):
    data = bytearray(paths.float_window.read_bytes())
    # Model.version is the first field of the root table; find it through the vtable.
    root = int.from_bytes(data[0:4], "little")
    vtable = root - int.from_bytes(data[root : root + 4], "little", signed=True)
    offset = int.from_bytes(data[vtable + 4 : vtable + 6], "little")
    data[root + offset : root + offset + 4] = (2).to_bytes(4, "little")
    with pytest.raises(ModelError, match="schema version 2, expected 3"):
        check_flatbuffer(bytes(data), "old")


@pytest.mark.runtime
def test_loading_every_truncation_never_crashes_the_runtime(paths, tmp_path):
    """load_model on every prefix of TestFixture (and a sample of the others) in a child process:
    each must raise ModelError, except the prefix that is exactly the bare flatbuffer."""
    script = textwrap.dedent(
        """
        import sys
        from ddsp_device.errors import ModelError
        from ddsp_device.model import load_model

        source, target, step = sys.argv[1], sys.argv[2], int(sys.argv[3])
        data = open(source, "rb").read()
        loaded = []
        for cut in range(0, len(data), step):
            with open(target, "wb") as file:
                file.write(data[:cut])
            try:
                load_model(target).close()
                loaded.append(cut)
            except ModelError:
                pass
        print("loaded", loaded)
        """
    )
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(paths.root / "device"), env.get("PYTHONPATH", "")])
    for source, step in ((paths.demo, 1), (paths.state, 3), (paths.float_window, 3)):
        result = subprocess.run(
            [sys.executable, "-c", script, str(source), str(tmp_path / "cut.tflite"), str(step)],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
        )
        assert result.returncode == 0, f"{source.name}: child died ({result.returncode}): {result.stderr[-2000:]}"
        loaded = eval(result.stdout.strip().split("loaded", 1)[1])  # noqa: S307 - our own output
        data = source.read_bytes()
        start = data.find(b"PK\x03\x04")
        # Only the exact flatbuffer (zip cut off entirely) may load, as a bare file.
        assert all(cut == start for cut in loaded), f"{source.name}: prefixes {loaded} loaded"
