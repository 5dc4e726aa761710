"""The sd_notify protocol against a real AF_UNIX datagram socket, as systemd would bind it."""

from __future__ import annotations

import logging
import os
import socket
import time

import pytest

from ddsp_device.daemon.notify import Notifier


@pytest.fixture
def receiver(tmp_path):
    """A datagram socket bound to a path; yields (NOTIFY_SOCKET value, socket)."""
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(2.0)
    yield str(path), sock
    sock.close()


@pytest.fixture
def abstract_receiver():
    """A datagram socket in the abstract namespace; yields ("@name", socket)."""
    name = f"ddsp-device-test-{os.getpid()}-{os.urandom(4).hex()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(b"\0" + name.encode())
    sock.settimeout(2.0)
    yield "@" + name, sock
    sock.close()


def receive(sock: socket.socket) -> list[str]:
    return sock.recv(4096).decode().split("\n")


def test_messages_arrive_as_key_value_lines(receiver):
    address, sock = receiver
    with Notifier.from_env({"NOTIFY_SOCKET": address}) as notifier:
        assert notifier.enabled
        assert notifier.ready()
        assert receive(sock) == ["READY=1"]
        notifier.status("Violin, load 23 %,\n0 xruns")
        assert receive(sock) == ["STATUS=Violin, load 23 %, 0 xruns"]
        notifier.watchdog()
        assert receive(sock) == ["WATCHDOG=1"]
        notifier.stopping()
        assert receive(sock) == ["STOPPING=1"]
        notifier.extend_timeout(5_000_000)
        assert receive(sock) == ["EXTEND_TIMEOUT_USEC=5000000"]
        notifier.ready(status="playing Violin")
        assert receive(sock) == ["READY=1", "STATUS=playing Violin"]
        assert notifier.sent == 6
        assert notifier.send_failures == 0


def test_reloading_carries_monotonic_usec(receiver):
    address, sock = receiver
    notifier = Notifier(address)
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    notifier.reloading()
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    first, second = receive(sock)
    assert first == "RELOADING=1"
    key, value = second.split("=")
    assert key == "MONOTONIC_USEC"
    assert before <= int(value) <= after
    notifier.close()


def test_abstract_namespace(abstract_receiver):
    address, sock = abstract_receiver
    notifier = Notifier.from_env({"NOTIFY_SOCKET": address})
    assert notifier.ready()
    assert receive(sock) == ["READY=1"]
    notifier.close()


@pytest.mark.parametrize("env", [{}, {"NOTIFY_SOCKET": ""}])
def test_without_socket_every_call_is_a_no_op(env):
    notifier = Notifier.from_env(env)
    assert not notifier.enabled
    assert notifier.ready() is False
    assert notifier.reloading() is False
    assert notifier.status("x") is False
    assert notifier.watchdog() is False
    assert notifier.stopping() is False
    assert notifier.extend_timeout(1) is False
    assert notifier.watchdog_interval_s() is None
    assert notifier.sent == notifier.send_failures == 0
    notifier.close()
    notifier.close()


def test_from_env_reads_os_environ(receiver, monkeypatch):
    address, sock = receiver
    monkeypatch.setenv("NOTIFY_SOCKET", address)
    notifier = Notifier.from_env()
    notifier.watchdog()
    assert receive(sock) == ["WATCHDOG=1"]
    notifier.close()


def test_unusable_address_disables_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING):
        notifier = Notifier.from_env({"NOTIFY_SOCKET": "vsock:2:1234"})
    assert not notifier.enabled
    assert notifier.ready() is False
    assert "vsock:2:1234" in caplog.text


def test_send_failures_are_counted_and_logged_once(tmp_path, caplog):
    notifier = Notifier(str(tmp_path / "nobody-listens.sock"))
    with caplog.at_level(logging.WARNING):
        for _ in range(5):
            assert notifier.watchdog() is False
    assert notifier.send_failures == 5
    assert notifier.sent == 0
    assert len([r for r in caplog.records if "cannot notify systemd" in r.getMessage()]) == 1


def test_a_full_receiver_does_not_block(receiver):
    address, sock = receiver
    notifier = Notifier(address)
    start = time.monotonic()
    for _ in range(5000):  # nobody reads: the receive queue fills up
        notifier.status("x" * 200)
    assert time.monotonic() - start < 2.0
    assert notifier.send_failures > 0
    assert notifier.sent + notifier.send_failures == 5000


def test_closed_notifier_does_nothing(receiver):
    address, sock = receiver
    notifier = Notifier(address)
    notifier.close()
    notifier.close()
    assert notifier.ready() is False
    assert notifier.send_failures == 0


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"WATCHDOG_USEC": "10000000"}, 10.0),
        ({"WATCHDOG_USEC": "500000", "WATCHDOG_PID": str(os.getpid())}, 0.5),
        ({"WATCHDOG_USEC": "10000000", "WATCHDOG_PID": str(os.getpid() + 1)}, None),
        ({"WATCHDOG_USEC": "10000000", "WATCHDOG_PID": "not-a-pid"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "ten"}, None),
        ({"WATCHDOG_USEC": ""}, None),
        ({}, None),
    ],
)
def test_watchdog_interval(receiver, env, expected):
    address, _ = receiver
    notifier = Notifier.from_env({"NOTIFY_SOCKET": address, **env})
    assert notifier.watchdog_interval_s() == expected
    notifier.close()


def test_no_watchdog_without_a_socket():
    assert Notifier.from_env({"WATCHDOG_USEC": "10000000"}).watchdog_interval_s() is None
