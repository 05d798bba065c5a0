"""The cloud API bounds a request's head (request line and headers): a client cannot make the
server hold a header of any size (real server process, raw sockets on loopback)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.support.cloud_server import CloudServer


@pytest.fixture(scope="module")
def server(cloud_repo: Path) -> Iterator[CloudServer]:
    srv = CloudServer(cloud_repo, log_path=cloud_repo.parent / "http-protocol-server.log").start()
    try:
        yield srv
    finally:
        srv.stop()


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def _endless_head(port: int, start: bytes, filler: bytes, mib: int) -> tuple[int, bytes]:
    """Send `start`, then up to `mib` MiB of `filler` without ending the head; return the MiB
    the server took before it closed the connection, and what it answered."""
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(start)
        try:
            for sent in range(mib):  # noqa: B007 - `sent` is what came through
                sock.sendall(filler * ((1 << 20) // len(filler)))
        except (BrokenPipeError, ConnectionResetError):
            pass
        try:
            answer = sock.recv(4096)
        except (ConnectionResetError, TimeoutError):
            answer = b""
    return sent, answer


@pytest.mark.parametrize(
    ("what", "start", "filler"),
    [
        ("one huge header", b"GET /v2/health/ready HTTP/1.1\r\nHost: x\r\nX-Big: ", b"a"),
        ("many headers", b"GET /v2/health/ready HTTP/1.1\r\nHost: x\r\n", b"X-Header: value\r\n"),
        ("a huge URL", b"GET /v2/models/", b"a"),
    ],
)
def test_a_head_that_never_ends_is_answered_431_without_taking_the_memory(
    server: CloudServer, what: str, start: bytes, filler: bytes
) -> None:
    assert server.proc is not None
    before = _rss_mib(server.proc.pid)
    sent, answer = _endless_head(server.port, start, filler, mib=64)
    grown = _rss_mib(server.proc.pid) - before
    assert answer.startswith(b"HTTP/1.1 431 "), (what, sent, answer[:100])
    assert sent < 8 and grown < 20, (what, sent, grown)  # was: all 64 MiB read, RSS +70 MiB
    # Ordinary heads, also long ones, and the server itself are unaffected.
    long_ok = requests.get(server.url + "/v2/health/ready", headers={"X-Long": "a" * 30_000}, timeout=5)
    assert long_ok.status_code == 200
    assert "Traceback" not in server.log_tail(200_000)
