"""A real TCP proxy in front of a real server that misbehaves on demand: slow, 500, garbage,
connection reset or no answer at all. Switch `proxy.mode` at any time; new requests see it.

Modes: "pass" (forward), "delay" (forward, holding each response `delay_s`), "http_500",
"garbage" (200 with a body that is no V2 response), "reset" (RST on connect), "blackhole"
(read the request, never answer)."""

from __future__ import annotations

import socket
import struct
import threading
import time

from edgecascade.tools.mqtt_broker import free_port

MODES = ("pass", "delay", "http_500", "garbage", "reset", "blackhole")
_CANNED = {
    "http_500": b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\n"
    b'Content-Length: 27\r\nConnection: close\r\n\r\n{"error": "upstream broke"}',
    "garbage": b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 24\r\n"
    b"Connection: close\r\n\r\n<html>not v2 at all</htm",
}


class FaultyProxy:
    def __init__(self, upstream_port: int, *, upstream_host: str = "127.0.0.1", mode: str = "pass") -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = free_port()
        self.mode = mode
        self.delay_s = 0.0
        self.connections = 0
        self._stop = threading.Event()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def set_mode(self, mode: str, delay_s: float = 0.0) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; one of {MODES}")
        self.mode, self.delay_s = mode, delay_s

    def start(self) -> FaultyProxy:
        self._stop.clear()
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        listener.settimeout(0.1)
        self._listener = listener
        self._thread = threading.Thread(target=self._accept_loop, name="faulty-proxy", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening and cut every open connection."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2)
        if self._listener is not None:
            self._listener.close()
        with self._lock:
            for sock in self._sockets:
                _close(sock)
            self._sockets.clear()

    def __enter__(self) -> FaultyProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            self._track(client)
            threading.Thread(target=self._serve, args=(client, self.mode), daemon=True).start()

    def _serve(self, client: socket.socket, mode: str) -> None:
        if mode == "reset":
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            _close(client)
            return
        if mode in _CANNED or mode == "blackhole":
            _read_request(client)
            if mode == "blackhole":
                self._stop.wait()
            else:
                client.sendall(_CANNED[mode])
            _close(client)
            return
        try:
            upstream = socket.create_connection(self.upstream, timeout=5)
        except OSError:
            _close(client)  # upstream down: the client sees the connection close
            return
        self._track(upstream)
        waiting = threading.Event()  # the client sent data that awaits a response
        threading.Thread(target=self._pump, args=(client, upstream, waiting, False), daemon=True).start()
        self._pump(upstream, client, waiting, True)

    def _pump(self, src: socket.socket, dst: socket.socket, waiting: threading.Event, response: bool) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if not response:
                    waiting.set()
                elif waiting.is_set():
                    waiting.clear()
                    if self.mode == "delay" and self.delay_s > 0:
                        time.sleep(self.delay_s)
                dst.sendall(data)
        except OSError:
            pass  # either side closed; the other is closed below
        finally:
            _close(src)
            _close(dst)


def _read_request(sock: socket.socket) -> None:
    """Read one HTTP request (headers and Content-Length body) so the client is not reset mid-send."""
    sock.settimeout(5)
    data = b""
    try:
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                return
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        while len(body) < length:
            chunk = sock.recv(65536)
            if not chunk:
                return
            body += chunk
    except (OSError, ValueError):
        return


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()
