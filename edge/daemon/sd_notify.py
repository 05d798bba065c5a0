"""systemd's service notification protocol (sd_notify(3)) without a library.

Under `Type=notify` systemd passes `$NOTIFY_SOCKET`, a datagram socket (a path, or an abstract
name starting with `@`); the service sends `READY=1` once it serves, `STOPPING=1` when it
begins to stop and, when `WatchdogSec=` is set, `WATCHDOG=1` at least every `$WATCHDOG_USEC`
microseconds (half of it is the recommended period). Outside systemd every call does nothing."""

from __future__ import annotations

import logging
import os
import socket
import time

log = logging.getLogger(__name__)


class SystemdNotifier:
    """Sends state lines to `$NOTIFY_SOCKET`; a do-nothing object when it is unset."""

    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        # An abstract socket ("@name") is addressed with a leading NUL byte.
        self._address = "\0" + address[1:] if address.startswith("@") else address
        self.watchdog_interval_s = _watchdog_interval(env)
        self._last_ping = 0.0

    @property
    def enabled(self) -> bool:
        return bool(self._address)

    def notify(self, state: str) -> bool:
        """Send one state line such as "READY=1"; False when not under systemd or on failure."""
        if not self._address:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.connect(self._address)
                sock.sendall(state.encode())
        except OSError as exc:
            # Not fatal: the agent still serves; systemd will report the missing notification.
            log.warning("cannot notify systemd at %s: %s", self._address.lstrip("\0"), exc)
            return False
        return True

    def ready(self, status: str = "") -> bool:
        return self.notify("READY=1" + (f"\nSTATUS={status}" if status else ""))

    def stopping(self) -> bool:
        return self.notify("STOPPING=1")

    def watchdog(self, now: float | None = None) -> bool:
        """Ping the watchdog if half its interval has passed since the last ping."""
        if self.watchdog_interval_s is None:
            return False
        now = time.monotonic() if now is None else now
        if now - self._last_ping < self.watchdog_interval_s / 2:
            return False
        self._last_ping = now
        return self.notify("WATCHDOG=1")


def _watchdog_interval(env: os._Environ[str] | dict[str, str]) -> float | None:
    """The watchdog interval in seconds, if systemd asked this process (by pid) for pings."""
    usec = env.get("WATCHDOG_USEC", "")
    pid = env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid and pid.isdigit() and int(pid) != os.getpid():
        return None
    return int(usec) / 1_000_000
