"""The local API's HTTP/1.1 server: an ASGI app on asyncio in a background thread, as a Service.

httptools (llhttp, the parser of Node.js) reads the requests; this module only runs the
connections: one request at a time per connection (pipelined ones wait their turn), the body
handed to the app in chunks with reading paused while it has not taken them, keep-alive
with an idle timeout, a deadline for a request to arrive whole, and a cap on open
connections. It is what the agent needs of uvicorn and Starlette, which cost ~30 ms of
imports and start-up on every restart of the device (issue 13's start-to-ready budget)
and are not installed on the device any more; the cloud API still runs on uvicorn."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
from collections import deque
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httptools

from edgecascade.shared.errors import UnavailableError

log = logging.getLogger(__name__)

#: The ASGI shapes this server speaks (edge/daemon/local_api.py is the app).
Message = MutableMapping[str, Any]
Scope = Message
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Connections the kernel queues before they are accepted (a burst of clients at start-up).
_BACKLOG = 2048
#: A body chunk buffer above this pauses reading until the app has taken it.
_HIGH_WATER = 256 * 1024
#: How long a connection closed with requests still unread keeps reading (and dropping) them.
_LINGER_S = 2.0
_REASONS = {
    100: "Continue",
    200: "OK",
    202: "Accepted",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
    429: "Too Many Requests",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


class Limits:
    """What one connection may cost; defaults fit a device's local API."""

    def __init__(
        self,
        *,
        max_connections: int = 256,
        max_header_bytes: int = 64 * 1024,
        max_headers: int = 100,
        keepalive_s: float = 5.0,
        request_timeout_s: float = 30.0,
        max_pipelined: int = 32,
    ) -> None:
        self.max_connections = max_connections
        #: Requests parsed but not answered on one connection. One read can hold thousands of
        #: tiny pipelined requests (~1.4 KiB of memory each); past this, the connection answers
        #: the ones it has and closes (clients resend unanswered pipelined requests).
        self.max_pipelined = max_pipelined
        self.max_header_bytes = max_header_bytes
        self.max_headers = max_headers
        self.keepalive_s = keepalive_s
        self.request_timeout_s = request_timeout_s


class _PipelineFull(Exception):
    """Raised from a parser callback to stop parsing the rest of a read."""


def _plain_reply(status: int, text: str) -> bytes:
    """A reply written by the server itself (the app never saw the request); it closes."""
    body = json.dumps({"error": text}).encode()
    head = f"HTTP/1.1 {status} {_REASONS.get(status, '')}\r\ncontent-type: application/json\r\n"
    head += f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    return head.encode("latin-1") + body


class _Exchange:
    """One request on a connection: its scope, its body as it arrives, and its reply."""

    def __init__(self, conn: _Connection, scope: Message, keep_alive: bool) -> None:
        self.conn = conn
        self.scope = scope
        self.keep_alive = keep_alive
        self.chunks: deque[bytes] = deque()
        self.buffered = 0
        self.body_done = False
        self.delivered = False  # the whole body has been handed to the app
        self.arrived = asyncio.Event()  # set whenever a chunk, the end or a disconnect arrives
        self.started = False
        self.finished = False
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []

    def add_body(self, data: bytes) -> None:
        if self.finished:
            return  # answered without reading it all: the rest is read and dropped
        self.chunks.append(data)
        self.buffered += len(data)
        self.arrived.set()
        if self.buffered > _HIGH_WATER:
            self.conn.pause()

    def end_body(self) -> None:
        self.body_done = True
        self.arrived.set()

    async def receive(self) -> Message:
        while not self.delivered and not self.chunks and not self.body_done and not self.conn.closed:
            self.arrived.clear()
            await self.arrived.wait()
        if self.delivered or (self.conn.closed and not self.chunks):
            await self.conn.lost.wait()  # ASGI: after the body, receive() waits for a disconnect
            return {"type": "http.disconnect"}
        data = self.chunks.popleft() if len(self.chunks) == 1 else b"".join(self.chunks)
        self.chunks.clear()
        self.buffered = 0
        self.delivered = self.body_done
        self.conn.resume_for(self)
        return {"type": "http.request", "body": data, "more_body": not self.body_done}

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start" and not self.started:
            self.started = True
            self.status = int(message["status"])
            self.headers = list(message.get("headers", []))
        elif kind == "http.response.body" and self.started and not self.finished:
            if message.get("more_body", False):
                raise RuntimeError("the local API sends each reply in one body message")
            self.finished = True
            self.chunks.clear()
            self.conn.write_reply(self, message.get("body", b""))
        else:
            raise RuntimeError(f"unexpected ASGI message {kind!r} at this point of the reply")


class _Connection(asyncio.Protocol):
    def __init__(self, server: HttpServer) -> None:
        self.server = server
        self.limits = server.limits
        self.parser = httptools.HttpRequestParser(self)
        self.transport: Any = None  # asyncio's or uvloop's transport
        self.closed = False
        self.lost = asyncio.Event()
        self.paused = False
        self.draining = False  # reads no more: answers what is queued, then closes
        # Parsed requests not yet answered, oldest first: the first is running. `parsing` is
        # the one whose body is still arriving (the last, or None between requests).
        self.queue: deque[_Exchange] = deque()
        self.parsing: _Exchange | None = None
        self.in_message = False
        self._url = bytearray()
        self._headers: list[tuple[bytes, bytes]] = []
        self._header_bytes = 0
        self._timer: asyncio.TimerHandle | None = None

    # -- transport events ---------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.server.connections.add(self)
        if len(self.server.connections) > self.limits.max_connections:
            self._write(_plain_reply(503, "too many open connections to the local API; retry later"))
            self.close()
            return
        self._arm(self.limits.keepalive_s)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.lost.set()
        self.server.connections.discard(self)
        self._disarm()
        for exchange in self.queue:
            exchange.arrived.set()

    def eof_received(self) -> bool | None:
        """The client will send nothing more (a half-close): requests that arrived whole are
        still answered, then the connection closes; a request cut short is dropped."""
        if self.in_message or not self.queue:
            return None  # asyncio closes the transport
        self.queue[-1].keep_alive = False  # the connection closes after the last reply
        return True  # keep the transport open for the replies

    def data_received(self, data: bytes) -> None:
        if self.draining:
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            if not isinstance(exc.__context__, _PipelineFull):
                self._parse_error(exc)
                return
            self.queue[-1].keep_alive = False
            self.draining = True
            self.pause()
        except httptools.HttpParserUpgrade:
            # Upgrades (websocket, h2c) are not offered: the request is answered as plain
            # HTTP/1.1 and the connection closes after it (what follows is not HTTP/1.1).
            if self.parsing is not None:
                self.on_message_complete()
            if self.queue:
                self.queue[-1].keep_alive = False
            self.pause()
        except httptools.HttpParserError as exc:
            self._parse_error(exc)

    def _parse_error(self, exc: httptools.HttpParserError) -> None:
        if self._header_bytes > self.limits.max_header_bytes:
            self._fail(431, "request line and headers are over the local API's limit")
        else:
            self._fail(400, f"malformed HTTP request: {exc}")

    # -- parser callbacks -----------------------------------------------------------------------
    def on_message_begin(self) -> None:
        self.in_message = True
        self._url.clear()
        self._headers = []
        self._header_bytes = 0
        self._arm(self.limits.request_timeout_s)

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._count_header_bytes(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name.lower(), value))
        over = len(self._headers) > self.limits.max_headers
        self._count_header_bytes(len(name) + len(value) + (self.limits.max_header_bytes if over else 0))

    def on_headers_complete(self) -> None:
        url = httptools.parse_url(bytes(self._url))
        raw_path = url.path or b"/"
        scope: Message = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": self.parser.get_http_version(),
            "method": self.parser.get_method().decode("ascii", "replace"),
            "scheme": "http",
            "path": unquote(raw_path.decode("latin-1")),
            "raw_path": raw_path,
            "query_string": url.query or b"",
            "headers": self._headers,
            "server": self.server.sockname,
        }
        exchange = _Exchange(self, scope, self.parser.should_keep_alive())
        self.parsing = exchange
        self.queue.append(exchange)
        if dict(self._headers).get(b"expect", b"").lower() == b"100-continue":
            self._write(b"HTTP/1.1 100 Continue\r\n\r\n")
        if len(self.queue) == 1:
            self._start(exchange)

    def on_body(self, body: bytes) -> None:
        if self.parsing is not None:
            self.parsing.add_body(body)

    def on_message_complete(self) -> None:
        self.in_message = False
        self._disarm()
        if self.parsing is not None:
            self.parsing.end_body()
            self.parsing = None
        if len(self.queue) > 1:
            self.pause()  # pipelined requests wait their turn: read no more until they are answered
        if len(self.queue) >= self.limits.max_pipelined:
            raise _PipelineFull  # the rest of this read is not parsed (data_received)

    # -- replies --------------------------------------------------------------------------------
    def _start(self, exchange: _Exchange) -> None:
        self.server.inflight += 1
        task = asyncio.ensure_future(self._run(exchange))
        self.server.tasks.add(task)  # the loop keeps only a weak reference to a task
        task.add_done_callback(self.server.tasks.discard)

    async def _run(self, exchange: _Exchange) -> None:
        scope = exchange.scope
        try:
            await self.server.app(scope, exchange.receive, exchange.send)
        except Exception:
            log.exception("local API: unexpected error answering %s %s", scope["method"], scope["path"])
        finally:
            self.server.inflight -= 1
        if not exchange.finished:
            # The app failed or gave no reply: answer 500 if nothing was sent yet; either way
            # nothing sensible can follow on this connection.
            exchange.keep_alive = False
            if not exchange.started:
                self._write(_plain_reply(500, "internal server error; see the agent's log"))
        self._next(exchange)

    def write_reply(self, exchange: _Exchange, body: bytes) -> None:
        status = exchange.status
        parts = [f"HTTP/1.1 {status} {_REASONS.get(status, '')}\r\n".encode("latin-1")]
        parts += [name + b": " + value + b"\r\n" for name, value in exchange.headers]
        if not exchange.keep_alive or self.server.stopping:
            exchange.keep_alive = False
            parts.append(b"connection: close\r\n")
        parts.append(b"\r\n")
        if exchange.scope["method"] != "HEAD":
            parts.append(body)
        self._write(b"".join(parts))

    def _next(self, exchange: _Exchange) -> None:
        """After a reply: close, start the next pipelined request, or wait for one."""
        if self.queue and self.queue[0] is exchange:
            self.queue.popleft()
        if self.closed:
            return
        if not exchange.keep_alive:
            if self.draining:
                self._linger_close()
            else:
                self.close()
            return
        if self.queue:  # the next pipelined request
            self._start(self.queue[0])
            self.resume_for(self.queue[0])
        else:
            self.resume()
            if not self.in_message:
                self._arm(self.limits.keepalive_s)

    # -- connection control ---------------------------------------------------------------------
    def _fail(self, status: int, why: str) -> None:
        if not any(e.started for e in self.queue):
            self._write(_plain_reply(status, why))
        self.close()

    def _count_header_bytes(self, n: int) -> None:
        self._header_bytes += n
        if self._header_bytes > self.limits.max_header_bytes:
            raise httptools.HttpParserError("request line and headers too large")

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self.closed:
            self.transport.write(data)

    def pause(self) -> None:
        if not self.paused and not self.closed:
            self.paused = True
            self.transport.pause_reading()

    def resume(self) -> None:
        if self.paused and not self.closed and not self.draining:
            self.paused = False
            self.transport.resume_reading()

    def resume_for(self, exchange: _Exchange) -> None:
        """Read again once `exchange` (the running request) has room and nothing else waits."""
        if len(self.queue) <= 1 and exchange.buffered <= _HIGH_WATER:
            self.resume()

    def _linger_close(self) -> None:
        """Close while the client may still be sending (requests past the pipelining cap,
        unread): a close with unread data makes the kernel send a reset, which can destroy
        replies still in flight. So: FIN after the replies, then read and drop whatever
        arrives until the client closes too, for at most _LINGER_S."""
        if self.closed:
            return
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.paused = False
        self.transport.resume_reading()
        self._disarm()
        self._timer = asyncio.get_running_loop().call_later(_LINGER_S, self.close)

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.closed = True
            self.transport.close()

    def idle(self) -> bool:
        return not self.queue and not self.in_message

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._timer = asyncio.get_running_loop().call_later(seconds, self._time_out)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _time_out(self) -> None:
        """Idle past keep-alive, or a request that did not arrive whole in time: close."""
        self._timer = None
        if self.in_message and not any(e.started for e in self.queue):
            self._write(_plain_reply(408, "the request did not arrive whole in time"))
        if self.idle() or self.in_message:
            self.close()


class HttpServer:
    """The Service: `start()` returns once the socket listens (UnavailableError if it
    cannot); `stop()` stops accepting, lets requests in progress finish, then closes."""

    name = "http-api"

    def __init__(
        self, app: App, host: str, port: int, unix_socket: Path | None = None, *, limits: Limits | None = None
    ) -> None:
        self.app = app
        self.host, self.port, self.unix_socket = host, port, unix_socket
        self.limits = limits or Limits()
        self.connections: set[_Connection] = set()
        self.tasks: set[asyncio.Future[None]] = set()
        self.inflight = 0
        self.stopping = False
        self.sockname: tuple[str, int] | None = None
        self.address = str(unix_socket) if unix_socket else f"http://{host}:{port}"
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.AbstractServer | None = None
        self._thread: threading.Thread | None = None
        self._listening = threading.Event()
        self._error: BaseException | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._serve, name="http-api", daemon=True)
        self._thread.start()
        self._listening.wait(10)
        if self._error is not None or self._server is None:
            raise UnavailableError(
                f"local API could not listen on {self.address} ({self._error or 'timed out'})"
            ) from self._error
        log.info("local API listening on %s", self.address)

    def stop(self, timeout_s: float) -> None:
        loop = self._loop
        if loop is None or self._thread is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(self._shut_down(timeout_s), loop).result(timeout_s + 1)
        except (
            Exception
        ) as exc:  # the loop is gone, or closing took too long: the thread ends with the process
            log.warning("local API did not stop cleanly: %s", exc)
        self._thread.join(timeout_s)

    # -- the loop's thread --------------------------------------------------------------------------
    def _serve(self) -> None:
        loop = _new_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            self._server = loop.run_until_complete(self._listen())
        except BaseException as exc:  # reported by start(), in the caller's thread
            self._error = exc
            self._listening.set()
            loop.close()
            return
        self._listening.set()
        try:
            loop.run_forever()
        finally:
            loop.close()

    async def _listen(self) -> asyncio.AbstractServer:
        loop = asyncio.get_running_loop()
        if self.unix_socket is not None:
            if self.unix_socket.is_socket():
                self.unix_socket.unlink()  # left by an agent that was killed; anything else stays
            server = await loop.create_unix_server(
                lambda: _Connection(self), str(self.unix_socket), backlog=_BACKLOG
            )
            # Any local user may connect, as to the loopback port (and as under uvicorn before).
            self.unix_socket.chmod(0o666)
            self.sockname = ("unix", 0)
            return server
        server = await loop.create_server(
            lambda: _Connection(self),
            self.host,
            self.port,
            family=socket.AF_UNSPEC,
            reuse_address=True,
            backlog=_BACKLOG,
        )
        host, port = server.sockets[0].getsockname()[:2]
        self.sockname = (host, port)
        self.address = f"http://{self.host}:{port}"
        return server

    async def _shut_down(self, timeout_s: float) -> None:
        self.stopping = True
        if self._server is not None:
            self._server.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        for conn in list(self.connections):
            if conn.idle():
                conn.close()
        while self.inflight and loop.time() < deadline:
            await asyncio.sleep(0.01)
        for conn in list(self.connections):
            conn.close()
        loop.call_soon(loop.stop)


def _new_loop() -> asyncio.AbstractEventLoop:
    """uvloop's loop where it is installed (about twice as fast per request), else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()
