"""The local API's own HTTP/1.1 server (edge/daemon/http_server.py), driven over real loopback
sockets with what clients and attackers send: pipelined and keep-alive requests, bodies in
pieces, Expect: 100-continue, HEAD, malformed request lines, oversized headers, slow
requests, idle connections, upgrades, too many connections and an app that fails."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator, MutableMapping
from typing import Any

import pytest

from edgecascade.edge.daemon.http_server import HttpServer, Limits


async def echo_app(scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
    """Replies with the method, path, query and the length of the body it read whole."""
    if scope["path"] == "/fail":
        raise RuntimeError("boom")
    if scope["path"] == "/silent":
        return
    body = b""
    if scope["method"] in ("POST", "PUT"):
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message["body"]
            if not message["more_body"]:
                break
    doc = {
        "method": scope["method"],
        "path": scope["path"],
        "query": scope["query_string"].decode(),
        "len": len(body),
    }
    reply = json.dumps(doc).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(reply)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": reply})


@pytest.fixture
def server() -> Iterator[HttpServer]:
    srv = HttpServer(
        echo_app,
        "127.0.0.1",
        0,
        limits=Limits(max_connections=8, max_header_bytes=4096, keepalive_s=0.5, request_timeout_s=0.8),
    )
    srv.start()
    yield srv
    srv.stop(2.0)


def _connect(server: HttpServer) -> socket.socket:
    assert server.sockname is not None
    sock = socket.create_connection(server.sockname, timeout=5)
    return sock


def _read_replies(sock: socket.socket, count: int) -> list[tuple[int, dict[str, str], bytes]]:
    """`count` replies (status, headers, body), read by their content-length."""
    buf = b""
    out: list[tuple[int, dict[str, str], bytes]] = []
    while len(out) < count:
        while b"\r\n\r\n" not in buf:
            chunk = sock.recv(65536)
            if not chunk:
                return out
            buf += chunk
        head, buf = buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
        if status == 100:
            continue
        length = int(headers.get("content-length", "0"))
        while len(buf) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            buf += chunk
        out.append((status, headers, buf[:length]))
        buf = buf[length:]
    return out


def _closed_by_peer(sock: socket.socket, within_s: float = 3.0) -> bool:
    sock.settimeout(within_s)
    try:
        while True:
            if not sock.recv(65536):
                return True
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


def test_keep_alive_and_pipelined_requests_are_answered_in_order(server: HttpServer) -> None:
    sock = _connect(server)
    body = b"x" * 1000
    sock.sendall(
        b"GET /a?q=1 HTTP/1.1\r\nHost: t\r\n\r\n"
        + b"POST /b HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n"
        + body
        + b"GET /c%20d HTTP/1.1\r\nHost: t\r\n\r\n"
    )
    replies = _read_replies(sock, 3)
    docs = [json.loads(b) for _, _, b in replies]
    assert [d["path"] for d in docs] == ["/a", "/b", "/c d"]
    assert docs[0]["query"] == "q=1" and docs[1]["len"] == 1000
    assert all(status == 200 and "connection" not in h for status, h, _ in replies)
    sock.sendall(b"GET /again HTTP/1.1\r\nHost: t\r\n\r\n")  # the same connection still serves
    assert json.loads(_read_replies(sock, 1)[0][2])["path"] == "/again"
    sock.close()


def test_a_flood_of_pipelined_requests_is_capped_then_the_connection_closes(server: HttpServer) -> None:
    """Thousands of tiny requests in one read would each hold memory until answered: the
    first `max_pipelined` (32) are answered in order, the last with `connection: close`, then
    the connection closes; the rest are never parsed. Other connections are unaffected."""
    request = b"GET /p HTTP/1.1\r\nHost: t\r\n\r\n"
    sock = _connect(server)
    sock.sendall(request * 5000)
    replies = _read_replies(sock, 5000)
    assert len(replies) == 32 and all(status == 200 for status, _, _ in replies)
    assert [h.get("connection") for _, h, _ in replies] == [None] * 31 + ["close"]
    assert _closed_by_peer(sock)
    sock.close()
    other = _connect(server)  # a pipelining client under the cap gets every reply
    other.sendall(request * 20)
    assert len(_read_replies(other, 20)) == 20
    other.sendall(request)  # and its connection stays open
    assert _read_replies(other, 1)[0][0] == 200
    other.close()


def test_a_body_sent_in_pieces_and_chunked_arrives_whole(server: HttpServer) -> None:
    sock = _connect(server)
    big = 3 * 1024 * 1024  # past the read buffer's high water mark: reading pauses and resumes
    sock.sendall(b"POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % big)
    for _ in range(big // 65536):
        sock.sendall(b"y" * 65536)
    assert json.loads(_read_replies(sock, 1)[0][2])["len"] == big
    sock.sendall(
        b"POST /chunked HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    )
    assert json.loads(_read_replies(sock, 1)[0][2])["len"] == 11
    sock.close()


def test_expect_100_continue_head_and_http_1_0(server: HttpServer) -> None:
    sock = _connect(server)
    sock.sendall(b"POST /e HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
    assert sock.recv(64).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
    sock.sendall(b"abcd")
    assert json.loads(_read_replies(sock, 1)[0][2])["len"] == 4
    sock.sendall(b"HEAD /h HTTP/1.1\r\nHost: t\r\n\r\n")
    sock.settimeout(5)
    head = sock.recv(65536)
    assert head.startswith(b"HTTP/1.1 200 OK") and head.endswith(b"\r\n\r\n")  # headers, no body
    sock.close()
    old = _connect(server)
    old.sendall(b"GET /old HTTP/1.0\r\n\r\n")  # no keep-alive asked: closed after the reply
    status, headers, _ = _read_replies(old, 1)[0]
    assert status == 200 and headers["connection"] == "close" and _closed_by_peer(old)


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"NOT A REQUEST\r\n\r\n",
        b"GET / HTTP/9.9\r\n\r\n",
        b"GET /\x00 HTTP/1.1\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\n",
        b"GET / HTTP/1.1\r\nBad Header\r\n\r\n",
    ],
)
def test_a_malformed_request_gets_400_as_json_and_the_connection_closes(
    server: HttpServer, request_bytes: bytes
) -> None:
    sock = _connect(server)
    sock.sendall(request_bytes)
    status, headers, body = _read_replies(sock, 1)[0]
    assert status == 400 and headers["connection"] == "close"
    assert "malformed HTTP request" in json.loads(body)["error"]
    assert _closed_by_peer(sock)


def test_oversized_or_too_many_headers_get_431(server: HttpServer) -> None:
    for request in (
        b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 5000 + b"\r\n\r\n",
        b"GET /" + b"p" * 5000 + b" HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(150)) + b"\r\n",
    ):
        sock = _connect(server)
        sock.sendall(request)
        status, _, body = _read_replies(sock, 1)[0]
        assert status == 431, body
        assert _closed_by_peer(sock)


def test_a_slow_request_gets_408_and_an_idle_connection_is_closed(server: HttpServer) -> None:
    slow = _connect(server)
    slow.sendall(b"POST /slow HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nonly part")
    started = time.monotonic()
    assert _closed_by_peer(slow)
    assert time.monotonic() - started < 2.5  # request_timeout_s = 0.8
    headers_only = _connect(server)
    headers_only.sendall(b"GET /never HTTP/1.1\r\nHost: t\r\n")  # headers never end (slowloris)
    status, _, body = _read_replies(headers_only, 1)[0]
    assert status == 408 and "in time" in json.loads(body)["error"]
    idle = _connect(server)
    started = time.monotonic()
    assert _closed_by_peer(idle)  # keepalive_s = 0.5 with nothing sent
    assert time.monotonic() - started < 2.0
    assert not server.connections or all(c.closed for c in server.connections)


def test_an_upgrade_is_answered_as_http_1_1_then_closed(server: HttpServer) -> None:
    sock = _connect(server)
    sock.sendall(
        b"GET /ws HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n\x81\x05hello"
    )
    status, headers, body = _read_replies(sock, 1)[0]
    assert status == 200 and json.loads(body)["path"] == "/ws" and headers["connection"] == "close"
    assert _closed_by_peer(sock)


def test_an_app_error_gets_500_without_details_and_the_server_keeps_serving(
    server: HttpServer, caplog: pytest.LogCaptureFixture
) -> None:
    for path in (b"/fail", b"/silent"):
        sock = _connect(server)
        sock.sendall(b"GET " + path + b" HTTP/1.1\r\nHost: t\r\n\r\n")
        status, headers, body = _read_replies(sock, 1)[0]
        assert status == 500 and headers["connection"] == "close"
        assert "boom" not in body.decode() and "see the agent's log" in json.loads(body)["error"]
        assert _closed_by_peer(sock)
    assert "boom" in caplog.text  # the traceback is in the log, not in the reply
    sock = _connect(server)
    sock.sendall(b"GET /ok HTTP/1.1\r\nHost: t\r\n\r\n")
    assert _read_replies(sock, 1)[0][0] == 200


def test_connections_past_the_cap_get_503_and_the_others_still_work(server: HttpServer) -> None:
    held = [_connect(server) for _ in range(8)]
    for sock in held:  # each is open and served (the server has seen it)
        sock.sendall(b"GET /held HTTP/1.1\r\nHost: t\r\n\r\n")
        assert _read_replies(sock, 1)[0][0] == 200
    extra = _connect(server)
    status, _, body = _read_replies(extra, 1)[0]
    assert status == 503 and "too many open connections" in json.loads(body)["error"]
    held[0].sendall(b"GET /still HTTP/1.1\r\nHost: t\r\n\r\n")
    assert _read_replies(held[0], 1)[0][0] == 200
    for sock in held:
        sock.close()


def test_stop_lets_a_request_in_progress_finish(tmp_path: Any) -> None:
    release = threading.Event()

    async def slow_app(scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        import asyncio

        while not release.is_set():
            await asyncio.sleep(0.01)
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})

    srv = HttpServer(slow_app, "127.0.0.1", 0, unix_socket=tmp_path / "api.sock")
    srv.start()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(str(tmp_path / "api.sock"))
    sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
    time.sleep(0.2)
    stopper = threading.Thread(target=srv.stop, args=(5.0,))
    stopper.start()
    time.sleep(0.2)
    release.set()
    status, headers, body = _read_replies(sock, 1)[0]
    stopper.join(10)
    assert (status, body, headers["connection"]) == (200, b"ok", "close")
    assert not stopper.is_alive()


def test_a_port_in_use_is_a_clear_error() -> None:
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    srv = HttpServer(echo_app, "127.0.0.1", port)
    with pytest.raises(Exception, match=rf"could not listen on http://127.0.0.1:{port}"):
        srv.start()
    holder.close()


def test_a_stale_socket_file_is_replaced_but_another_file_is_never_removed(tmp_path: Any) -> None:
    path = tmp_path / "api.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))  # what a killed agent leaves behind
    stale.close()
    srv = HttpServer(echo_app, "127.0.0.1", 0, unix_socket=path)
    srv.start()
    assert path.is_socket() and path.stat().st_mode & 0o777 == 0o666  # like the loopback port
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.connect(str(path))
    client.sendall(b"GET /up HTTP/1.1\r\nHost: t\r\n\r\n")
    assert _read_replies(client, 1)[0][0] == 200
    client.close()
    srv.stop(2.0)
    precious = tmp_path / "notes.txt"
    precious.write_text("keep me")
    with pytest.raises(Exception, match="could not listen"):
        HttpServer(echo_app, "127.0.0.1", 0, unix_socket=precious).start()
    assert precious.read_text() == "keep me"


def _mutations(seed: int, count: int) -> Iterator[bytes]:
    """Valid requests broken at random: bytes flipped, cut, repeated, or CR, LF, NUL, spaces,
    huge and negative numbers put in, chunked framing damaged."""
    import random

    rng = random.Random(seed)
    valid = [
        b"GET /v2/health/ready HTTP/1.1\r\nHost: t\r\n\r\n",
        b"POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello",
        b"POST /up HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    ]
    junk = [b"\r", b"\n", b"\x00", b" ", b":", b"\xff", b"99999999999999999999", b"-1", b"\r\n\r\n", b"%"]
    for _ in range(count):
        data = bytearray(rng.choice(valid))
        for _ in range(rng.randint(1, 4)):
            at = rng.randrange(len(data) + 1)
            action = rng.randrange(4)
            if action == 0 and data:
                data[min(at, len(data) - 1)] ^= 1 << rng.randrange(8)
            elif action == 1:
                del data[at:]
            elif action == 2:
                data[at:at] = rng.choice(junk)
            else:
                data[at:at] = data[at : at + rng.randint(1, 40)] * rng.randint(1, 50)
        yield bytes(data)


def test_a_request_followed_by_a_half_close_is_still_answered(server: HttpServer) -> None:
    sock = _connect(server)
    sock.sendall(
        b"POST /a HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabcGET /b HTTP/1.1\r\nHost: t\r\n\r\n"
    )
    sock.shutdown(socket.SHUT_WR)  # `nc -N` and some clients do this after the request
    replies = _read_replies(sock, 2)
    assert [json.loads(b)["path"] for _, _, b in replies] == ["/a", "/b"]
    assert _closed_by_peer(sock)
    cut = _connect(server)
    cut.sendall(b"POST /c HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc")
    cut.shutdown(socket.SHUT_WR)  # the body can never arrive whole: closed, nothing answered
    assert _closed_by_peer(cut)


def test_broken_requests_never_hang_crash_or_get_more_than_one_reply_each(
    server: HttpServer, caplog: pytest.LogCaptureFixture
) -> None:
    statuses: set[int] = set()
    for data in [*_mutations(seed=13, count=300), b"GET /whole HTTP/1.1\r\nHost: t\r\n\r\n"]:
        sock = _connect(server)
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)  # nothing more comes: the server must answer or close
        sock.settimeout(5)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
        sock.close()
        for line in received.split(b"\r\n"):
            if line.startswith(b"HTTP/"):
                assert line.startswith(b"HTTP/1.1 "), received
                statuses.add(int(line.split()[1]))
    assert statuses <= {100, 200, 400, 408, 431}, statuses
    assert 400 in statuses and 200 in statuses
    assert "unexpected error" not in caplog.text and "Traceback" not in caplog.text
    sock = _connect(server)  # and it still serves
    sock.sendall(b"GET /after HTTP/1.1\r\nHost: t\r\n\r\n")
    assert json.loads(_read_replies(sock, 1)[0][2])["path"] == "/after"
