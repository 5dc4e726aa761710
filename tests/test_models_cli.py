"""``ddsp-device models``: check in a child process, list, add, use, remove (real files, real runtime)."""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest
from ddsp_device import models_cli
from ddsp_device.daemon.state import StateStore
from ddsp_device.daemon.status import StatusServer
from ddsp_device.errors import ModelError
from ddsp_device.library import validate_model_name
from ddsp_device.models_cli import (
    FAULT_ENV,
    MAX_MODEL_BYTES,
    CheckResult,
    check_model_file,
)

pytestmark = pytest.mark.runtime

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "models"
DEMO = ROOT / "models" / "TestFixture.tflite"


@pytest.fixture(autouse=True)
def env(tmp_path, monkeypatch):
    """State and runtime directories in tmp_path; never /etc, /var/lib or /run."""
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path / "state"))
    monkeypatch.setenv("RUNTIME_DIRECTORY", str(tmp_path / "run"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "xdg"))
    # the active model is TestFixture, so that "Violin" is free for the tests to add and remove
    (tmp_path / "config.toml").write_text('[model]\nname = "TestFixture"\n')
    monkeypatch.setenv("DDSP_DEVICE_SYSTEM_CONFIG", str(tmp_path / "config.toml"))
    monkeypatch.delenv(FAULT_ENV, raising=False)
    (tmp_path / "run").mkdir()
    return tmp_path


@pytest.fixture
def models_dir(env) -> Path:
    return env / "state" / "models"


class _NoTty(io.StringIO):
    def isatty(self) -> bool:
        return False


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ddsp-device")
    sub = parser.add_subparsers(dest="command")
    models_cli.add_parser(sub)
    return parser


def models(*argv: str, stdin: io.StringIO | None = None) -> tuple[int, str, str]:
    """Run ``ddsp-device models ARGV`` as the CLI would; return (status, stdout, stderr)."""
    args = _parser().parse_args(["models", *map(str, argv)])
    out, err = io.StringIO(), io.StringIO()
    status = models_cli.run(args, out, err, stdin if stdin is not None else _NoTty())
    return status, out.getvalue(), err.getvalue()


def assert_error_lines(err: str) -> list[str]:
    lines = err.splitlines()
    assert lines, "expected at least one error line"
    assert all(line.startswith("error: ") for line in lines), err
    assert "Traceback" not in err
    return lines


# -- check: good files ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "window", "state", "quantised"),
    [
        (DEMO, 8, 0, True),
        (FIXTURES / "float_window.tflite", None, 0, False),
        (FIXTURES / "state.tflite", 1, None, None),
    ],
)
def test_check_playable_model_reports_the_contract(path, window, state, quantised):
    status, out, err = models("check", path, "--json")
    assert status == 0, err
    assert err == ""
    doc = json.loads(out)
    assert doc["ok"] is True and doc["problems"] == []
    info = doc["info"]
    model = info["model"]
    if window is not None:
        assert model["window_frames"] == window
    if state is not None:
        assert model["state_size"] == state
    else:
        assert model["state_size"] > 0
    if quantised is not None:
        assert model["quantised_inputs"] is quantised and model["quantised_outputs"] is quantised
    names = {t["name"] for t in info["tensors"]}
    assert {"f0_hz", "loudness", "harmonic_amps", "harmonic_dist", "noise_mags"} <= names
    for tensor in info["tensors"]:
        assert tensor["dtype"] in ("float32", "int8")
        assert all(d > 0 for d in tensor["shape_signature"])
        assert (tensor["quantisation"] is not None) == (tensor["dtype"] == "int8")
    assert info["runtime"]["name"] in ("tflite-runtime", "ai-edge-litert")
    assert model["runtime_name"] == info["runtime"]["name"]
    assert info["inference"]["steps"] >= 1 and info["inference"]["step_ms"] > 0
    assert info["file_size_bytes"] == path.stat().st_size and len(info["sha256"]) == 64


def test_check_text_report_names_tensors_metadata_and_runtime():
    status, out, err = models("check", DEMO)
    assert status == 0, err
    assert out.startswith(f"{DEMO}: playable")
    for text in ("f0_hz", "harmonic_dist", "noise_mags", "[1, 8, 65]", "int8", "scale", "zero point",
                 "T = 8", "window model", "licence", "Apache-2.0", "metadata.json", "runtime", "inference"):
        assert text in out, text


def test_check_model_file_api():
    result = check_model_file(DEMO)
    assert isinstance(result, CheckResult)
    assert result.ok and result.problems == []
    assert result.info["model"]["name"] == "TestFixture"
    assert result.to_dict()["ok"] is True


def test_check_bare_file_takes_the_config_fallbacks(tmp_path):
    status, out, _ = models("check", FIXTURES / "float_window.tflite", "--json")
    assert status == 0
    assert json.loads(out)["info"]["model"]["frame_rate_hz"] == 250.0


# -- check: anything else -------------------------------------------------------------------------


def _flex(tmp_path):
    return FIXTURES / "flex.tflite"


def _write(tmp_path, name, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


MALFORMED = {
    "empty": (lambda d: _write(d, "empty.tflite", b""), "empty file"),
    "truncated": (lambda d: _write(d, "cut.tflite", DEMO.read_bytes()[: DEMO.stat().st_size // 2]), "truncated"),
    "header only": (lambda d: _write(d, "head.tflite", DEMO.read_bytes()[:64]), "truncated or corrupt"),
    "random": (lambda d: _write(d, "random.tflite", random.Random(1).randbytes(4096)), "not a TFLite"),
    "random with TFL3": (
        lambda d: _write(d, "tfl3.tflite", b"\x1c\x00\x00\x00TFL3" + random.Random(2).randbytes(4096)),
        "truncated or corrupt",
    ),
    "text": (lambda d: _write(d, "notes.tflite", b"hello, this is not a model\n" * 10), "not a TFLite"),
    "wrong names": (lambda d: FIXTURES / "wrong_names.tflite", "missing output tensor(s) harmonic_amps"),
    "wrong dtype": (lambda d: FIXTURES / "wrong_dtype.tflite", "f0_hz: dtype int32 not supported"),
    "wrong harmonics": (lambda d: FIXTURES / "wrong_harmonics.tflite", "harmonic_amps: shape [1, 8, 60]"),
    "dynamic": (lambda d: FIXTURES / "dynamic_shape.tflite", "f0_hz: dynamic shape [1, -1]"),
    "flex": (_flex, "needs Flex (SELECT_TF_OPS) ops: FlexCosh"),
    "bad metadata": (
        lambda d: _write(d, "meta.tflite", _with_zip(_flatbuffer(DEMO.read_bytes()), b'{"sample_rate_hz": "fast"}')),
        "sample_rate_hz: must be an integer",
    ),
    "missing": (lambda d: d / "nothing-here.tflite", "no such file"),
    "directory": (lambda d: d, "is a directory"),
}


def _flatbuffer(data: bytes) -> bytes:
    import zipfile

    buffer = io.BytesIO(data)
    with zipfile.ZipFile(buffer) as archive:
        start = min(info.header_offset for info in archive.infolist())
    return data[:start]


def _with_zip(data: bytes, member: bytes) -> bytes:
    import zipfile

    buffer = io.BytesIO(data)
    with zipfile.ZipFile(buffer, mode="a") as archive:
        archive.writestr("metadata.json", member)
    return buffer.getvalue()


@pytest.mark.parametrize("kind", list(MALFORMED))
def test_check_refuses_malformed_file_with_one_line_per_problem(tmp_path, kind):
    build, expected = MALFORMED[kind]
    path = build(tmp_path)
    status, out, err = models("check", path)
    assert status == 1
    lines = assert_error_lines(err)
    assert any(expected in line for line in lines), err
    assert "NOT playable" in out
    result = check_model_file(path)
    assert not result.ok and result.problems


def test_check_refuses_a_300_mb_file_before_reading_it(tmp_path):
    big = tmp_path / "big.tflite"
    with open(big, "wb") as file:
        file.truncate(300 * 1024 * 1024)  # sparse: nothing is written, nothing may be read
    started = time.monotonic()
    status, _, err = models("check", big)
    assert time.monotonic() - started < 2.0
    assert status == 1
    (line,) = assert_error_lines(err)
    assert "300.0 MiB" in line and f"{MAX_MODEL_BYTES // 1024 // 1024}.0 MiB limit" in line


def test_check_size_limit_is_a_parameter():
    result = check_model_file(DEMO, size_limit_bytes=1000)
    assert not result.ok
    assert "over the 1000 B limit" in result.problems[0]


def test_check_a_fifo_does_not_block(tmp_path):
    fifo = tmp_path / "pipe.tflite"
    os.mkfifo(fifo)
    result = check_model_file(fifo, timeout_s=5)
    assert not result.ok and "not a regular file" in result.problems[0]


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_check_unreadable_file(tmp_path):
    path = _write(tmp_path, "secret.tflite", DEMO.read_bytes())
    path.chmod(0)
    result = check_model_file(path)
    assert not result.ok and "Permission denied" in result.problems[0]


def test_a_crash_in_the_child_is_reported_not_suffered(monkeypatch):
    monkeypatch.setenv(FAULT_ENV, "crash")
    status, _, err = models("check", DEMO)
    assert status == 1
    (line,) = assert_error_lines(err)
    assert line == f"error: the TFLite runtime crashed while loading {DEMO} (signal 11, SIGSEGV)"


def test_a_hanging_child_is_killed_after_the_timeout(monkeypatch):
    monkeypatch.setenv(FAULT_ENV, "hang")
    started = time.monotonic()
    result = check_model_file(DEMO, timeout_s=1.0)
    assert time.monotonic() - started < 5.0
    assert not result.ok and "did not finish within 1 s" in result.problems[0]


def test_a_child_without_a_report(monkeypatch):
    monkeypatch.setenv(FAULT_ENV, "exit")
    result = check_model_file(DEMO)
    assert not result.ok
    assert result.problems == [
        f"{DEMO}: the model check ended without a report (exit status 3): simulated failure before the report"
    ]


def test_child_can_be_run_by_hand():
    proc = subprocess.run(
        [sys.executable, "-m", "ddsp_device.model.check", "--child", str(DEMO)],
        capture_output=True, timeout=30, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["ok"] is True and report["info"]["model"]["name"] == "TestFixture"


# -- names ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["Violin", "My Violin", "violin-2", "Flöte_3", "a.b", "x" * 200])
def test_plain_names_are_accepted(name):
    assert validate_model_name(name) == name


@pytest.mark.parametrize(
    ("name", "rule"),
    [
        ("", "empty"),
        ("a/b", "path separator"),
        ("../x", "path separator"),
        ("a\\b", "path separator"),
        ("..", "'..'"),
        ("a..b", "'..'"),
        (".hidden", "starts with '.'"),
        ("-rf", "starts with '-'"),
        (" Violin", "white space"),
        ("Violin\n", "white space"),
        ("Vio\x07lin", "control character"),
        ("Vio\tlin", "control character"),
        ("Violin.tflite", "ends in .tflite"),
        ("Violin.TFLITE", "ends in .tflite"),
        ("x" * 201, "longer than 200 bytes"),
        ("bad\udcff", "not valid UTF-8"),
    ],
)
def test_names_that_are_not_plain_are_refused_naming_the_rule(name, rule):
    with pytest.raises(ModelError, match=None) as caught:
        validate_model_name(name)
    assert rule in str(caught.value)
    assert "\n" not in str(caught.value)


# -- add ------------------------------------------------------------------------------------------


def test_add_copies_atomically_under_the_file_stem(tmp_path, models_dir):
    source = _write(tmp_path, "Violin.tflite", DEMO.read_bytes())
    status, out, err = models("add", source)
    assert status == 0, err
    target = models_dir / "Violin.tflite"
    assert target.read_bytes() == DEMO.read_bytes()
    assert target.stat().st_mode & 0o777 == 0o644
    assert sorted(p.name for p in models_dir.iterdir()) == ["Violin.tflite"]  # no temp file left
    assert f"added Violin (9.2 KiB) as {target}" in out
    assert "models use Violin" in out


def test_add_with_name_and_stem_of_another_suffix(tmp_path, models_dir):
    source = _write(tmp_path, "export.bin", DEMO.read_bytes())
    assert models("add", source)[0] == 0
    assert (models_dir / "export.tflite").is_file()
    assert models("add", source, "--name", "Cello")[0] == 0
    assert (models_dir / "Cello.tflite").is_file()


def test_add_refuses_an_existing_name_unless_forced(tmp_path, models_dir):
    assert models("add", DEMO, "--name", "Violin")[0] == 0
    other = FIXTURES / "float_window.tflite"
    status, _, err = models("add", other, "--name", "Violin")
    assert status == 1
    assert assert_error_lines(err) == [
        f"error: model 'Violin' already exists ({models_dir / 'Violin.tflite'}); add --force to replace it"
    ]
    assert (models_dir / "Violin.tflite").read_bytes() == DEMO.read_bytes()
    status, _, err = models("add", other, "--name", "Violin", "--force")
    assert status == 0, err
    assert (models_dir / "Violin.tflite").read_bytes() == other.read_bytes()
    assert sorted(p.name for p in models_dir.iterdir()) == ["Violin.tflite"]


def test_add_refuses_a_broken_file_and_writes_nothing(tmp_path, models_dir):
    status, _, err = models("add", FIXTURES / "wrong_names.tflite")
    assert status == 1
    assert any("missing output tensor(s)" in line for line in assert_error_lines(err))
    assert not (models_dir / "wrong_names.tflite").exists()
    assert [p for p in models_dir.iterdir()] == []


def test_add_crash_in_check_writes_nothing(monkeypatch, models_dir):
    monkeypatch.setenv(FAULT_ENV, "crash")
    status, _, err = models("add", DEMO, "--name", "Violin")
    assert status == 1 and "signal 11" in err
    assert not (models_dir / "Violin.tflite").exists()


@pytest.mark.parametrize(("name", "rule"), [("../evil", "path separator"), (".x", "starts with '.'"),
                                            ("a..b", "'..'"), ("X.tflite", "ends in .tflite"), ("", "empty")])
def test_add_refuses_names_that_are_not_plain(env, name, rule):
    status, _, err = models("add", DEMO, "--name", name)
    assert status == 1
    (line,) = assert_error_lines(err)
    assert rule in line
    assert not (env / "state" / "models").exists() or not any((env / "state" / "models").iterdir())
    assert not (env / "state" / "evil.tflite").exists()


def test_add_refuses_a_file_stem_that_is_not_a_name(tmp_path):
    source = _write(tmp_path, ".hidden.tflite", DEMO.read_bytes())
    status, _, err = models("add", source)
    assert status == 1
    assert "choose one with --name" in err


# -- list -----------------------------------------------------------------------------------------


def test_list_shows_each_name_once_with_broken_files(tmp_path, models_dir):
    models_dir.mkdir(parents=True)
    (models_dir / "TestFixture.tflite").write_bytes((FIXTURES / "float_window.tflite").read_bytes())  # shadows
    (models_dir / "Broken.tflite").write_bytes(b"\x00" * 100)
    (models_dir / "State.tflite").write_bytes((FIXTURES / "state.tflite").read_bytes())
    (models_dir / ".Hidden.tflite").write_bytes(DEMO.read_bytes())
    (models_dir / "notes.txt").write_text("not a model")

    status, out, err = models("list", "--json")
    assert status == 0, err
    doc = json.loads(out)
    by_name = {m["name"]: m for m in doc["models"]}
    assert sorted(by_name) == ["Broken", "State", "TestFixture", "Violin"]  # Violin: the bundled one
    shadowing = by_name["TestFixture"]
    assert shadowing["path"] == str(models_dir / "TestFixture.tflite")  # the one that plays
    assert shadowing["shadows"] == [str(DEMO)]
    assert shadowing["ok"] and shadowing["window_frames"] == 8 and shadowing["quantised_inputs"] is False
    assert shadowing["active"] is True and doc["active"]["name"] == "TestFixture"
    broken = by_name["Broken"]
    assert broken["ok"] is False and broken["active"] is False
    assert "not a TFLite" in broken["problems"][0] or "corrupt" in broken["problems"][0]
    assert by_name["State"]["state_size"] > 0 and by_name["State"]["source"] == "models directory"
    assert doc["daemon"] is None

    status, out, err = models("list")
    assert status == 0 and err == ""
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "SIZE", "RATE", "FRAMES", "T", "I/O", "LICENCE", "DIRECTORY"]
    assert any(line.startswith("*") and "TestFixture" in line and "float/float" in line for line in lines)
    assert any("broken:" in line for line in lines)
    assert "* active: TestFixture ([model] name in the config)" in out


def test_list_survives_a_crashing_check(monkeypatch):
    monkeypatch.setenv(FAULT_ENV, "crash")
    status, out, _ = models("list", "--json")
    assert status == 0
    entries = json.loads(out)["models"]
    assert [e["name"] for e in entries] == ["TestFixture", "Violin"]  # the bundled models
    for entry in entries:
        assert entry["ok"] is False and "signal 11" in entry["problems"][0]


def test_list_marks_the_selected_model_active(tmp_path, models_dir):
    assert models("add", DEMO, "--name", "Violin")[0] == 0
    assert models("use", "Violin")[0] == 0
    doc = json.loads(models("list", "--json")[1])
    assert [m["name"] for m in doc["models"] if m["active"]] == ["Violin"]
    assert doc["active"]["why"] == "chosen with 'models use'"


def test_list_never_marks_a_model_that_does_not_play_active(env, models_dir):
    """The selection is a broken file (it broke after `models use`): the daemon would play
    [model] name instead, and that is what list marks."""
    models_dir.mkdir(parents=True)
    (models_dir / "Broken.tflite").write_bytes(DEMO.read_bytes()[:500])
    (env / "state" / "state.json").write_text(json.dumps({"version": 1, "selected_model": "Broken"}))
    doc = json.loads(models("list", "--json")[1])
    assert [m["name"] for m in doc["models"] if m["active"]] == ["TestFixture"]
    assert doc["active"]["name"] == "TestFixture"
    assert "'Broken', chosen with 'models use', does not play" in doc["active"]["why"]


def test_list_marks_what_the_running_daemon_plays(env, models_dir):
    """The daemon refused the selection (say, out of memory) and plays TestFixture: that is active."""
    assert models("add", DEMO, "--name", "Violin")[0] == 0
    assert models("use", "Violin")[0] == 0
    playing = {"pid": 4242, "model": "TestFixture", "model_path": str(DEMO)}
    with StatusServer(lambda: playing, env / "run" / "status.sock"):
        status, out, err = models("list", "--json")
        text = models("list")[1]
    assert status == 0, err
    doc = json.loads(out)
    assert [m["name"] for m in doc["models"] if m["active"]] == ["TestFixture"]
    assert doc["active"] == {"name": "TestFixture", "why": "playing in the daemon (pid 4242)", "path": str(DEMO)}
    assert "* active: TestFixture (playing in the daemon (pid 4242))" in text


def test_a_hostile_selection_is_never_listed_or_resolved(env):
    (env / "state").mkdir(exist_ok=True)
    (env / "state" / "state.json").write_text(json.dumps({"version": 1, "selected_model": "../../../etc/passwd"}))
    doc = json.loads(models("list", "--json")[1])
    assert doc["active"]["name"] == "TestFixture" and "passwd" not in json.dumps(doc)


# -- use ------------------------------------------------------------------------------------------


def test_use_without_a_daemon_persists_the_selection(env, models_dir):
    assert models("add", DEMO, "--name", "Violin")[0] == 0
    status, out, err = models("use", "Violin")
    assert status == 0, err
    assert "no daemon running; it will play Violin on its next start" in out
    assert StateStore(env / "state").selected_model == "Violin"
    assert json.loads((env / "state" / "state.json").read_text())["selected_model"] == "Violin"


def test_use_a_bundled_model(env):
    status, out, err = models("use", "TestFixture")
    assert status == 0, err
    assert StateStore(env / "state").selected_model == "TestFixture"


def test_use_refuses_unknown_broken_and_path(env, models_dir):
    status, _, err = models("use", "Nope")
    assert status == 1 and "model 'Nope': not found in" in err
    models_dir.mkdir(parents=True)
    (models_dir / "Broken.tflite").write_bytes(DEMO.read_bytes()[:500])
    status, _, err = models("use", "Broken")
    assert status == 1
    (line,) = assert_error_lines(err)  # one line: the refusal and its reason
    assert line.startswith("error: model 'Broken' does not play, not selecting it: ")
    assert "truncated" in line
    status, _, err = models("use", str(DEMO))
    assert status == 1 and "takes a model name, not a file" in err
    assert StateStore(env / "state").selected_model is None


HUP_RECORDER = """
import signal, sys, time
log = sys.argv[1]
def on_hup(signum, frame):
    with open(log, "a") as f:
        f.write("HUP\\n")
signal.signal(signal.SIGHUP, on_hup)
print("ready", flush=True)
end = time.monotonic() + 60
while time.monotonic() < end:
    time.sleep(0.05)
"""


@pytest.fixture
def fake_daemon(env):
    """A child process (its command line says ddsp-device) that records each SIGHUP in a file."""
    log = env / "hups.log"
    proc = subprocess.Popen([sys.executable, "-c", HUP_RECORDER, str(log), "fake-ddsp-device"],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    yield proc, log
    proc.kill()
    proc.wait(5)


def _hups(log: Path) -> int:
    return log.read_text().count("HUP") if log.exists() else 0


def test_use_sends_sighup_to_the_daemon(env, fake_daemon):
    proc, log = fake_daemon
    with StatusServer(lambda: {"pid": proc.pid, "model": "TestFixture"}, env / "run" / "status.sock"):
        status, out, err = models("use", "TestFixture", "--wait", "0")
    assert status == 0, err
    assert f"asked the daemon (pid {proc.pid}) to reload" in out
    deadline = time.monotonic() + 5
    while _hups(log) < 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert _hups(log) == 1
    assert proc.poll() is None  # SIGHUP recorded, not fatal


def test_use_waits_for_the_daemon_to_switch(env, fake_daemon, models_dir):
    proc, log = fake_daemon
    assert models("add", DEMO, "--name", "Violin")[0] == 0

    def provider():
        switched = _hups(log) > 0
        return {"pid": proc.pid, "model": "Violin" if switched else "TestFixture",
                "counters": {"reloads": 1 if switched else 0}}

    with StatusServer(provider, env / "run" / "status.sock"):
        status, out, err = models("use", "Violin", "--wait", "10")
    assert status == 0, err
    assert "the daemon is playing Violin" in out


def test_use_reports_a_refusal_by_the_daemon(env, fake_daemon, models_dir):
    proc, log = fake_daemon
    assert models("add", DEMO, "--name", "Violin")[0] == 0

    def provider():
        refused = _hups(log) > 0
        return {"pid": proc.pid, "model": "TestFixture", "counters": {"reloads": 1 if refused else 0},
                "last_reload_error": "Violin: out of memory" if refused else None}

    with StatusServer(provider, env / "run" / "status.sock"):
        status, out, err = models("use", "Violin")
    assert status == 1
    assert assert_error_lines(err) == [
        "error: the daemon did not switch to Violin and still plays TestFixture: Violin: out of memory"
    ]
    assert StateStore(env / "state").selected_model == "Violin"  # the choice stays for the next start


def test_use_does_not_signal_a_process_that_is_not_the_daemon(env):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        with StatusServer(lambda: {"pid": sleeper.pid}, env / "run" / "status.sock"):
            status, _, err = models("use", "TestFixture")
        assert status == 1 and "not a ddsp-device process" in err
        assert sleeper.poll() is None
    finally:
        sleeper.kill()
        sleeper.wait(5)


# -- remove ---------------------------------------------------------------------------------------


def test_remove_needs_yes_without_a_terminal(env, models_dir):
    assert models("add", DEMO, "--name", "Violin")[0] == 0
    status, _, err = models("remove", "Violin")
    assert status == 1 and "add --yes" in err
    assert (models_dir / "Violin.tflite").exists()
    status, out, err = models("remove", "Violin", "--yes")
    assert status == 0, err
    assert f"removed Violin ({models_dir / 'Violin.tflite'})" in out
    assert not (models_dir / "Violin.tflite").exists()


def test_remove_asks_on_a_terminal(env, models_dir):
    assert models("add", DEMO, "--name", "Violin")[0] == 0
    status, out, _ = models("remove", "Violin", stdin=_Tty("n\n"))
    assert status == 1 and "nothing removed" in out
    assert (models_dir / "Violin.tflite").exists()
    status, out, _ = models("remove", "Violin", stdin=_Tty("y\n"))
    assert status == 0 and not (models_dir / "Violin.tflite").exists()


def test_remove_refuses_the_active_model(env, models_dir):
    assert models("add", DEMO, "--name", "Violin")[0] == 0
    assert models("use", "Violin")[0] == 0
    status, _, err = models("remove", "Violin", "--yes")
    assert status == 1
    assert assert_error_lines(err) == [
        "error: Violin is the active model (chosen with 'models use'); choose another first: "
        "ddsp-device models use OTHER"
    ]
    assert (models_dir / "Violin.tflite").exists()


def test_remove_refuses_what_the_daemon_plays(env, models_dir):
    assert models("add", DEMO, "--name", "Violin")[0] == 0
    with StatusServer(lambda: {"model": "Violin"}, env / "run" / "status.sock"):
        status, _, err = models("remove", "Violin", "--yes")
    assert status == 1 and "is playing Violin" in err
    assert (models_dir / "Violin.tflite").exists()


def test_remove_refuses_bundled_and_unknown_models(env, models_dir):
    status, _, err = models("remove", "TestFixture", "--yes")
    assert status == 1
    assert "bundled with ddsp-device" in err and "only models in" in err
    assert DEMO.exists()
    status, _, err = models("remove", "Nope", "--yes")
    assert status == 1 and f"no model 'Nope' in {models_dir}" in err
    status, _, err = models("remove", "../models/TestFixture", "--yes")
    assert status == 1 and "path separator" in err


def test_remove_a_shadowing_copy_reveals_the_bundled_one(env, models_dir):
    assert models("use", "Other")[0] == 1  # nothing selected
    assert models("add", FIXTURES / "float_window.tflite", "--name", "Spare")[0] == 0
    assert models("add", DEMO, "--name", "TestFixture")[0] == 0
    assert models("use", "Spare")[0] == 0
    status, out, err = models("remove", "TestFixture", "--yes")
    assert status == 0, err
    assert f"the name TestFixture now means {DEMO}" in out


def test_config_errors_exit_2(env, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[model]\nruntime = 'onnx'\n")
    args = _parser().parse_args(["models", "list"])
    args.config, args.overrides = str(bad), []
    err = io.StringIO()
    assert models_cli.run(args, io.StringIO(), err) == 2
    assert_error_lines(err.getvalue())


# -- use: a daemon this user may not signal -------------------------------------------------------


@pytest.fixture
def not_permitted(monkeypatch):
    """SIGHUP is not permitted (the daemon runs as the service's user, this is someone else)."""
    from ddsp_device.daemon import client

    sent = []

    def refuse(pid):
        sent.append(pid)
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(client, "_send_sighup", refuse)
    return sent


def test_use_asks_over_the_socket_when_it_may_not_signal(env, fake_daemon, not_permitted):
    proc, log = fake_daemon
    requests = []

    def on_reload():
        requests.append(1)
        return {"reloads": 0}

    def provider():
        return {"pid": proc.pid, "model": "TestFixture" if not requests else "TestFixture",
                "counters": {"reloads": len(requests)}}

    with StatusServer(provider, env / "run" / "status.sock", on_reload=on_reload):
        status, out, err = models("use", "TestFixture", "--wait", "5")
    assert status == 0, err
    assert not_permitted == [proc.pid] and requests == [1]
    assert f"asked the daemon (pid {proc.pid}) to reload over its status socket" in out
    assert "the daemon is playing TestFixture" in out
    assert "sudo" not in out + err


def test_use_names_sudo_only_when_the_socket_refuses_too(env, fake_daemon, not_permitted):
    proc, log = fake_daemon
    with StatusServer(lambda: {"pid": proc.pid, "counters": {"reloads": 0}}, env / "run" / "status.sock"):
        status, _, err = models("use", "TestFixture")
    assert status == 1
    (line,) = assert_error_lines(err)
    assert f"not allowed to signal the daemon (pid {proc.pid}), and it refused the request" in line
    assert line.endswith("run 'sudo systemctl reload ddsp-device' to switch now")


def test_reload_requests_are_limited_to_the_socket_group():
    from ddsp_device.daemon.status import reload_allowed

    group = 4242
    assert reload_allowed(0, 0, set(), daemon_uid=999, socket_gid=group)  # root
    assert reload_allowed(999, 999, set(), daemon_uid=999, socket_gid=group)  # the daemon's user
    assert reload_allowed(1000, 1000, {27, group}, daemon_uid=999, socket_gid=group)  # a member
    assert reload_allowed(1000, group, set(), daemon_uid=999, socket_gid=group)  # primary group
    assert not reload_allowed(1000, 1000, {27}, daemon_uid=999, socket_gid=group)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to ask as another user")
def test_a_user_outside_the_group_is_refused_by_the_kernel_credentials(env, tmp_path):
    """nobody (not in the socket's group) connects through an open socket: the daemon refuses."""
    import tempfile

    requests = []
    open_dir = tempfile.TemporaryDirectory(prefix="ddsp-open-", dir="/tmp")  # pytest's own are 0700
    os.chmod(open_dir.name, 0o755)
    sock = Path(open_dir.name) / "status.sock"
    with open_dir, StatusServer(lambda: {}, sock, on_reload=lambda: requests.append(1) or {"reloads": 0}) as server:
        sock.chmod(0o666)  # only the credentials stand in the way
        answer = json.loads(_ask_as(65534, sock, b"reload\n"))
        assert answer["error"].startswith("reload refused: uid 65534 is not root, the daemon's user or a member of group")
        assert requests == [] and server.reloads_refused == 1


def _ask_as(uid: int, sock_path: Path, request: bytes) -> bytes:
    """Send ``request`` on the unix socket as user ``uid`` (no groups) from a forked child; the answer."""
    import socket as socket_mod

    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: only system calls, then _exit
        code = 1
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            client = socket_mod.socket(socket_mod.AF_UNIX, socket_mod.SOCK_STREAM)
            client.settimeout(5)
            client.connect(str(sock_path))
            client.sendall(request)
            client.shutdown(socket_mod.SHUT_WR)
            while chunk := client.recv(65536):
                os.write(write_end, chunk)
            code = 0
        except BaseException as err:  # noqa: BLE001 - say why in the parent's assertion
            os.write(write_end, repr(err).encode())
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as answer:
        data = answer.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, data
    return data
