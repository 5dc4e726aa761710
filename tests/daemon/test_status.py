"""The status socket: a real server in a temp dir, the client, and the text for humans."""

from __future__ import annotations

import json
import math
import os
import socket
import stat
import threading
import time
from pathlib import Path

import pytest

from ddsp_device import __version__
from ddsp_device.errors import DdspDeviceError
from ddsp_device.daemon import status as status_mod
from ddsp_device.daemon.status import (
    DaemonNotRunningError,
    StatusError,
    StatusServer,
    find_socket,
    format_status,
    query_status,
    runtime_dir,
)

FULL = {
    "version": "0.1.0",
    "pid": 1234,
    "model": "Violin",
    "tone": {"value": 0.25, "from": "knob"},
    "uptime_s": 93784.5,
    "cpu_load": 0.231,
    "period_ms": {"p50": 1.2, "p99": 2.5, "max": 4.1},
    "budget_ms": 5.333,
    "xruns": 0,
    "late_periods": 2,
    "audio": {"device": "hw:CARD=sndrpihifiberry,DEV=0", "rate": 48000, "period": 256, "periods": 2},
    "sensors": [
        {"name": "ribbon", "address": 0x48, "state": "ok", "faults": 0, "retries": 3},
        {"name": "breath", "address": 0x18, "state": "fault", "faults": 12, "retries": 40},
    ],
    "counters": {"xruns": 12, "faults": 3, "starts": 7},
}


@pytest.fixture
def sock_path(tmp_path) -> Path:
    return tmp_path / "status.sock"


# -- server and client ----------------------------------------------------------------------------


def test_server_answers_client(sock_path):
    calls = []

    def provider():
        calls.append(threading.current_thread().name)
        return {"model": "Violin", "xruns": 3}

    with StatusServer(provider, sock_path) as server:
        assert stat.S_ISSOCK(os.stat(sock_path).st_mode)
        assert stat.S_IMODE(os.stat(sock_path).st_mode) == 0o660
        doc = query_status(sock_path)
        assert doc == {"model": "Violin", "xruns": 3, "pid": os.getpid(), "version": __version__}
        assert query_status(str(sock_path))["xruns"] == 3
        assert server.answered == 2
        assert calls and all(name != threading.current_thread().name for name in calls)
    assert not sock_path.exists()


def test_provider_raising_answers_error_and_server_lives(sock_path, caplog):
    state = {"fail": True}

    def provider():
        if state["fail"]:
            raise RuntimeError("sensor table locked")
        return {"model": "Violin"}

    with StatusServer(provider, sock_path) as server:
        for _ in range(3):
            doc = query_status(sock_path)
            assert doc["error"] == "status provider failed: RuntimeError: sensor table locked"
            assert doc["pid"] == os.getpid()
        state["fail"] = False
        assert query_status(sock_path) == {"model": "Violin", "pid": os.getpid(), "version": __version__}
        assert server.running
    assert sum("status provider failed" in r.getMessage() and r.levelname == "WARNING" for r in caplog.records) == 1


def test_provider_returning_garbage(sock_path):
    with StatusServer(lambda: ["not", "a", "dict"], sock_path):
        assert "not a dict" in query_status(sock_path)["error"]


def test_unencodable_values_are_sent_as_plain_json(sock_path):
    class Odd:
        def __str__(self):
            return "odd"

    provider = lambda: {"path": Path("/x"), "nan": math.nan, "odd": Odd(), "t": (1, 2), 3: "int key"}  # noqa: E731
    with StatusServer(provider, sock_path):
        doc = query_status(sock_path)
    assert doc["path"] == "/x" and doc["nan"] is None and doc["odd"] == "odd" and doc["t"] == [1, 2]
    assert doc["3"] == "int key"


def test_numpy_values(sock_path):
    np = pytest.importorskip("numpy")
    provider = lambda: {"cpu_load": np.float32(0.5), "xruns": np.int64(3), "p": np.array([1.0, np.inf])}  # noqa: E731
    with StatusServer(provider, sock_path):
        doc = query_status(sock_path)
    assert doc["cpu_load"] == 0.5 and doc["xruns"] == 3 and doc["p"] == [1.0, None]


def test_slow_provider_answers_error_within_timeout(sock_path):
    release = threading.Event()
    slow = {"on": True}

    def provider():
        if slow["on"]:
            release.wait(10)
        return {"model": "Violin"}

    with StatusServer(provider, sock_path, provider_timeout_s=0.2) as server:
        start = time.monotonic()
        doc = query_status(sock_path, timeout_s=5.0)
        assert time.monotonic() - start < 2.0
        assert "did not produce its status" in doc["error"]
        slow["on"] = False
        release.set()
        deadline = time.monotonic() + 5.0
        while "error" in (doc := query_status(sock_path, timeout_s=5.0)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert doc["model"] == "Violin"
        assert server.running


def test_close_is_prompt_and_twice_harmless(sock_path):
    server = StatusServer(lambda: {}, sock_path, accept_timeout_s=5.0)
    time.sleep(0.05)  # the server thread is waiting
    start, cpu = time.monotonic(), time.process_time()
    server.close()
    assert time.monotonic() - start < 2.5  # woken, not waiting out accept_timeout_s (5 s)
    assert time.process_time() - cpu < 0.2  # and not spinning
    assert not server.running
    server.close()
    assert not sock_path.exists()
    with pytest.raises(DaemonNotRunningError):
        query_status(sock_path)


def test_client_that_never_reads_does_not_stop_the_server(sock_path):
    big = {"blob": "x" * 2_000_000}
    with StatusServer(lambda: big, sock_path, send_timeout_s=0.2) as server:
        lazy = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        lazy.connect(str(sock_path))
        time.sleep(0.5)
        with pytest.raises(StatusError, match="more than"):
            query_status(sock_path, timeout_s=5.0)
        lazy.close()
        assert server.running
        assert server.errors >= 1


def test_stale_socket_is_replaced(sock_path):
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(sock_path))
    dead.close()  # a daemon that died without cleaning up
    with pytest.raises(DaemonNotRunningError, match="nothing listens"):
        query_status(sock_path)
    with StatusServer(lambda: {"model": "Violin"}, sock_path):
        assert query_status(sock_path)["model"] == "Violin"


def test_refuses_a_live_socket_and_a_non_socket(sock_path, tmp_path):
    with StatusServer(lambda: {}, sock_path):
        with pytest.raises(StatusError, match="another ddsp-device daemon"):
            StatusServer(lambda: {}, sock_path)
        assert query_status(sock_path)["pid"] == os.getpid()  # the first still answers
    regular = tmp_path / "file.sock"
    regular.write_text("keep me")
    with pytest.raises(StatusError, match="not a socket"):
        StatusServer(lambda: {}, regular)
    assert regular.read_text() == "keep me"


def test_close_leaves_a_socket_that_is_not_ours(sock_path):
    server = StatusServer(lambda: {}, sock_path)
    os.unlink(sock_path)
    other = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    other.bind(str(sock_path))
    try:
        server.close()
        assert sock_path.exists()
    finally:
        other.close()


def test_client_errors_when_no_daemon(sock_path):
    with pytest.raises(DaemonNotRunningError) as info:
        query_status(sock_path)
    message = str(info.value)
    assert message == f"no ddsp-device daemon is running (no socket at {sock_path})"
    assert isinstance(info.value, DdspDeviceError) and isinstance(info.value, OSError)
    assert "\n" not in message


def test_client_errors_when_socket_does_not_answer(sock_path):
    mute = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    mute.bind(str(sock_path))
    mute.listen(1)  # accepts into the backlog, never answers
    try:
        start = time.monotonic()
        with pytest.raises(StatusError, match="did not answer within 0.3 s"):
            query_status(sock_path, timeout_s=0.3)
        assert time.monotonic() - start < 2.0
    finally:
        mute.close()


def test_client_errors_on_garbage(sock_path):
    liar = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    liar.bind(str(sock_path))
    liar.listen(1)

    def answer_once(payload):
        conn, _ = liar.accept()
        conn.sendall(payload)
        conn.close()

    try:
        for payload, match in [(b"{not json", "invalid answer"), (b"[1]", "not an object"), (b"", "without answering")]:
            t = threading.Thread(target=answer_once, args=(payload,))
            t.start()
            with pytest.raises(StatusError, match=match):
                query_status(sock_path)
            t.join()
    finally:
        liar.close()


# -- where the socket lives -----------------------------------------------------------------------


def test_runtime_dir_prefers_systemd(monkeypatch, tmp_path):
    monkeypatch.setenv("RUNTIME_DIRECTORY", f"{tmp_path}/a:{tmp_path}/b")
    assert runtime_dir() == tmp_path / "a"


def test_default_path_for_development(monkeypatch, tmp_path):
    monkeypatch.delenv("RUNTIME_DIRECTORY", raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    monkeypatch.setattr(status_mod, "DEFAULT_RUNTIME_DIR", tmp_path / "missing")
    with StatusServer(lambda: {"model": "m"}, None) as server:
        assert server.path == tmp_path / "ddsp-device" / "status.sock"
        assert stat.S_IMODE(os.stat(tmp_path / "ddsp-device").st_mode) == 0o700
        assert find_socket() == server.path
        assert query_status()["model"] == "m"
    with pytest.raises(DaemonNotRunningError, match=r"^no ddsp-device daemon is running \(no socket at "):
        query_status()


def test_dev_dir_owned_by_others_is_refused(monkeypatch, tmp_path):
    monkeypatch.delenv("RUNTIME_DIRECTORY", raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    monkeypatch.setattr(status_mod, "DEFAULT_RUNTIME_DIR", tmp_path / "missing")
    (tmp_path / "ddsp-device").mkdir(mode=0o777)
    os.chmod(tmp_path / "ddsp-device", 0o777)
    with pytest.raises(StatusError, match="writable by others"):
        StatusServer(lambda: {}, None)


# -- format_status --------------------------------------------------------------------------------


def test_format_full():
    text = format_status(FULL)
    lines = text.splitlines()
    assert lines[0] == "ddsp-device 0.1.0, pid 1234"
    assert "model     Violin" in lines
    assert "tone      +0.25 (brighter, from the knob)" in lines
    assert "uptime    1 d 02:03:04" in lines
    assert "CPU load  23 %" in lines
    assert "compute   p50 1.20 ms, p99 2.50 ms, max 4.10 ms of 5.33 ms per period (max 77 %)" in lines
    assert "xruns     0" in lines
    assert "late      2 periods over budget" in lines
    assert "audio     hw:CARD=sndrpihifiberry,DEV=0, 48000 Hz, 256 frames × 2 periods" in lines
    assert "  ribbon  0x48     ok          0        3" in lines
    assert "  breath  0x18     fault      12       40" in lines
    assert lines[-1] == "counters  faults 3, starts 7, xruns 12"
    assert "-" not in text.replace("ddsp-device", "")


def test_format_empty_shows_dashes():
    lines = format_status({}).splitlines()
    assert lines[0] == "ddsp-device -, pid -"
    assert "model     -" in lines
    assert "tone      -" in lines
    assert "uptime    -" in lines
    assert "CPU load  -" in lines
    assert "compute   p50 - ms, p99 - ms, max - ms of - ms per period" in lines
    assert "audio     -" in lines
    assert "sensors   -" in lines
    assert "counters  -" in lines


def test_format_partial_and_malformed():
    text = format_status(
        {
            "error": "the daemon did not produce its status within 1 s",
            "model": None,
            "uptime_s": "soon",
            "cpu_load": math.nan,
            "period_ms": {"p99": 2.0},
            "budget_ms": 0,
            "xruns": True,
            "audio": {"device": "default", "rate": 44100.0},
            "sensors": [{"name": "ribbon"}, "junk", {"address": "emulated", "faults": 2}],
            "counters": {},
        }
    )
    lines = text.splitlines()
    assert "error     the daemon did not produce its status within 1 s" in lines
    assert "uptime    -" in lines and "CPU load  -" in lines and "xruns     -" in lines
    assert "compute   p50 - ms, p99 2.00 ms, max - ms of 0.00 ms per period" in lines
    assert "audio     default, 44100 Hz, - frames × - periods" in lines
    assert "  ribbon  -         -           -        -" in lines
    assert "  -       -         -           -        -" in lines  # not a mapping
    assert "  -       emulated  -           2        -" in lines
    assert "counters  none" in lines


@pytest.mark.parametrize(
    "tone, line",
    [
        ({"value": -1.0, "from": "config"}, "tone      -1.00 (darker, from config)"),
        ({"value": 0.0, "from": "config"}, "tone      +0.00 (flat, from config)"),
        ({"value": 0.5}, "tone      +0.50 (brighter)"),
        ({"value": "dark"}, "tone      -"),
        (0.3, "tone      -"),
    ],
)
def test_format_tone(tone, line):
    assert line in format_status({"tone": tone}).splitlines()


def test_format_accepts_non_mapping():
    assert format_status(None).startswith("ddsp-device -")  # type: ignore[arg-type]


def test_format_short_uptime_and_round_trip(sock_path):
    with StatusServer(lambda: {**FULL, "uptime_s": 59.9}, sock_path):
        doc = query_status(sock_path)
    assert json.loads(json.dumps(doc)) == doc
    assert "uptime    00:00:59" in format_status(doc).splitlines()


def test_format_says_which_settings_wait_for_a_restart():
    text = format_status({**FULL, "restart_needed": ["audio.sample_rate", "audio.period_size"]})
    assert "restart   needed for audio.sample_rate, audio.period_size (running at the old values)" in text
    assert "restart" not in format_status(FULL)
