"""systemd's notify protocol, spoken over ``$NOTIFY_SOCKET`` without libsystemd.

Under ``Type=notify`` (or ``Type=notify-reload``) systemd passes the path of a datagram socket in
``$NOTIFY_SOCKET``; the service sends newline-separated ``KEY=value`` assignments to it
(``READY=1``, ``STATUS=…``, ``WATCHDOG=1``; see ``sd_notify(3)``). A leading ``@`` names a socket
in Linux's abstract namespace. With ``WatchdogSec=`` set, systemd also passes ``$WATCHDOG_USEC``
(and ``$WATCHDOG_PID``); a service that does not send ``WATCHDOG=1`` within that time is killed
with SIGABRT and, with ``Restart=on-failure``, started again.

Usage::

    notifier = Notifier.from_env()          # a no-op notifier outside systemd
    interval_s = notifier.watchdog_interval_s()
    ...
    notifier.ready()                        # after the first period is written
    notifier.status("Violin, load 23 %, 0 xruns")
    notifier.watchdog()                     # at least every interval_s / 2, from audio progress

Nothing here raises for a send that fails (systemd busy, socket gone): failures are counted in
:attr:`Notifier.send_failures` and logged once, because a daemon must not die because journald is
slow. The socket is non-blocking and each message is one ``sendto``, cheap enough for a control
thread a few times per second. It is not meant for the audio thread (it allocates and may take
the logging lock).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Mapping

log = logging.getLogger(__name__)


def _socket_address(value: str) -> bytes | None:
    """``$NOTIFY_SOCKET`` as an ``AF_UNIX`` address, None when it is not one we can use."""
    if value.startswith("@"):
        return b"\0" + value[1:].encode()  # abstract namespace
    if value.startswith("/"):
        return os.fsencode(value)
    return None  # e.g. systemd ≥ 254's "vsock:…", which a device service does not get


class Notifier:
    """Sends sd_notify messages to one socket; every call is a no-op when there is none.

    Args:
        address: the value of ``$NOTIFY_SOCKET`` (a path, or ``@name`` for the abstract
            namespace), or None for a notifier that does nothing.
        watchdog_usec: the value of ``$WATCHDOG_USEC``, None when unset.
        watchdog_pid: the value of ``$WATCHDOG_PID``, None when unset.

    Attributes:
        address: the socket's name as given, or None.
        sent: messages handed to the socket.
        send_failures: messages that could not be sent.
    """

    def __init__(
        self,
        address: str | None = None,
        *,
        watchdog_usec: str | None = None,
        watchdog_pid: str | None = None,
    ):
        self.address = address or None
        self.sent = 0
        self.send_failures = 0
        self._logged_failure = False
        self._lock = threading.Lock()  # taken only on failure, and by close()
        self._sockaddr: bytes | None = None
        self._sock: socket.socket | None = None
        self._watchdog_usec = watchdog_usec
        self._watchdog_pid = watchdog_pid
        if self.address is None:
            return
        self._sockaddr = _socket_address(self.address)
        if self._sockaddr is None:
            log.warning("NOTIFY_SOCKET=%s: not a unix socket address; not notifying systemd", self.address)
            return
        try:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            sock.setblocking(False)
        except OSError as err:
            log.warning("NOTIFY_SOCKET=%s: cannot create a socket (%s); not notifying systemd", self.address, err)
            return
        self._sock = sock

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Notifier":
        """A notifier for ``$NOTIFY_SOCKET``; one that does nothing when it is unset or empty."""
        env = os.environ if environ is None else environ
        return cls(
            env.get("NOTIFY_SOCKET") or None,
            watchdog_usec=env.get("WATCHDOG_USEC"),
            watchdog_pid=env.get("WATCHDOG_PID"),
        )

    @property
    def enabled(self) -> bool:
        """True when messages go somewhere (the socket is set and usable)."""
        return self._sock is not None

    # -- the protocol ---------------------------------------------------------------------------

    def send(self, *assignments: str) -> bool:
        """Send ``KEY=value`` assignments as one datagram.

        Returns:
            True when the datagram was handed to the socket; False when disabled or it failed
            (counted in :attr:`send_failures`, logged the first time only).
        """
        sock = self._sock
        if sock is None:
            return False
        try:
            sock.sendto("\n".join(assignments).encode(), self._sockaddr)
        except (OSError, ValueError) as err:  # ValueError: the socket was closed meanwhile
            self._failed(err)
            return False
        self.sent += 1
        return True

    def ready(self, status: str | None = None) -> bool:
        """``READY=1``: start-up (or a reload) is complete. ``status`` adds a ``STATUS=`` line."""
        if status is None:
            return self.send("READY=1")
        return self.send("READY=1", "STATUS=" + _one_line(status))

    def reloading(self) -> bool:
        """``RELOADING=1`` with ``MONOTONIC_USEC=`` (which ``Type=notify-reload`` needs, systemd
        ≥ 253; older versions ignore it). Send :meth:`ready` when the reload is done."""
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.send("RELOADING=1", f"MONOTONIC_USEC={usec}")

    def stopping(self) -> bool:
        """``STOPPING=1``: shutting down."""
        return self.send("STOPPING=1")

    def status(self, text: str) -> bool:
        """``STATUS=text``, shown by ``systemctl status`` (newlines become spaces)."""
        return self.send("STATUS=" + _one_line(text))

    def watchdog(self) -> bool:
        """``WATCHDOG=1``: the service is alive."""
        return self.send("WATCHDOG=1")

    def extend_timeout(self, usec: int) -> bool:
        """``EXTEND_TIMEOUT_USEC=usec``: the current start, reload or stop needs ``usec`` more µs."""
        return self.send(f"EXTEND_TIMEOUT_USEC={int(usec)}")

    def watchdog_interval_s(self) -> float | None:
        """The watchdog timeout from ``$WATCHDOG_USEC`` in seconds; None when there is no
        watchdog for this process (unset, malformed, zero, ``$WATCHDOG_PID`` names another
        process, or nowhere to send to). Send :meth:`watchdog` at least every half of it."""
        if self._sock is None or not self._watchdog_usec:
            return None
        if self._watchdog_pid:
            try:
                if int(self._watchdog_pid) != os.getpid():
                    return None
            except ValueError:
                return None
        try:
            usec = int(self._watchdog_usec)
        except ValueError:
            return None
        return usec / 1e6 if usec > 0 else None

    # -- life cycle -----------------------------------------------------------------------------

    def close(self) -> None:
        """Close the socket; later calls do nothing. Closing twice is harmless."""
        with self._lock:
            sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()

    def __enter__(self) -> "Notifier":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Notifier({self.address!r}, sent={self.sent}, send_failures={self.send_failures})"

    def _failed(self, err: BaseException) -> None:
        with self._lock:
            self.send_failures += 1
            first = not self._logged_failure
            self._logged_failure = True
        if first:
            log.warning(
                "NOTIFY_SOCKET=%s: cannot notify systemd (%s); further failures are only counted",
                self.address,
                err,
            )


def _one_line(text: str) -> str:
    return " ".join(str(text).splitlines())
