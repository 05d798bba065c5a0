"""The real agent under systemd's notification protocol: READY=1 once it serves, WATCHDOG=1
pings at half the watchdog interval, STOPPING=1 on SIGTERM. The socket is a real datagram
socket made by the test, as systemd would pass it."""

from __future__ import annotations

import signal
import socket
import time
from pathlib import Path

import pytest
import requests

from edgecascade.edge.daemon.sd_notify import SystemdNotifier
from edgecascade.tools.mqtt_broker import free_port
from tests.edge.daemon.support import DaemonProcess, write_profile


@pytest.mark.parametrize("abstract", [False, True])
def test_agent_sends_ready_then_watchdog_then_stopping(tmp_path: Path, abstract: bool) -> None:
    address = f"\0edgecascade-test-{time.monotonic_ns()}" if abstract else str(tmp_path / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    sock.settimeout(30)
    port = free_port()
    env = {
        "NOTIFY_SOCKET": "@" + address[1:] if abstract else address,
        "WATCHDOG_USEC": "2000000",  # pings every second
    }
    daemon = DaemonProcess(write_profile(tmp_path, api_port=port), port, tmp_path / "d.log", env=env)
    try:
        # start() itself waits for /v2/health/ready; READY=1 must have come before or with it.
        daemon.start()
        first = sock.recv(4096).decode()
        assert first.splitlines()[0] == "READY=1", first
        assert requests.get(daemon.url + "/v2/health/ready", timeout=5).status_code == 200
        started = time.monotonic()
        pings = [sock.recv(4096).decode() for _ in range(2)]
        assert pings == ["WATCHDOG=1", "WATCHDOG=1"]
        assert time.monotonic() - started < 5
        daemon.signal(signal.SIGTERM)
        messages = []
        while "STOPPING=1" not in messages:
            messages.append(sock.recv(4096).decode())
        assert set(messages) <= {"WATCHDOG=1", "STOPPING=1"}
        assert daemon.wait() == 0
    finally:
        daemon.stop()
        sock.close()


def test_outside_systemd_nothing_is_sent() -> None:
    notifier = SystemdNotifier(environ={})
    assert not notifier.enabled
    assert notifier.ready() is False and notifier.watchdog() is False


def test_watchdog_for_another_pid_is_ignored(tmp_path: Path) -> None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "n"))
    env = {"NOTIFY_SOCKET": str(tmp_path / "n"), "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"}
    notifier = SystemdNotifier(environ=env)
    assert notifier.watchdog_interval_s is None and notifier.watchdog() is False
    assert notifier.ready() is True
    assert sock.recv(100) == b"READY=1"
    sock.close()
