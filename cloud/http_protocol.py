"""uvicorn's HTTP/1.1 protocol (httptools) with a bound on each request's head.

httptools keeps the request line and headers in memory until the head ends, however long it
is: a client that sent a header of hundreds of megabytes, or never ended one, held that much
memory of the server. Here a head still unfinished after `MAX_HEAD_BYTES` is answered 431 and
its connection closed (h11, uvicorn's other protocol, has such a bound too:
`h11_max_incomplete_event_size`)."""

from __future__ import annotations

import logging

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger(__name__)

#: Most bytes of a request line plus headers; tokens, model names and tritonclient's headers
#: take well under 2 KiB.
MAX_HEAD_BYTES = 64 * 1024

_TOO_LARGE = b"request line and headers are over the limit of %d bytes\n" % MAX_HEAD_BYTES
_RESPONSE_431 = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
    b"content-type: text/plain; charset=utf-8\r\n"
    b"connection: close\r\n"
    b"content-length: %d\r\n\r\n%s" % (len(_TOO_LARGE), _TOO_LARGE)
)


class BoundedHttpProtocol(HttpToolsProtocol):
    """Counts the bytes fed to the parser while a request's head is incomplete. A read that
    ends one message and starts the next is not counted, so the bound is MAX_HEAD_BYTES plus
    at most one read."""

    _in_head = True  # waiting for (the rest of) a request line and headers
    _head_bytes = 0
    _message_ended = False  # a message ended in the read being fed

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_bytes = 0
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._in_head = True
        self._message_ended = True
        super().on_message_complete()

    def data_received(self, data: bytes) -> None:
        self._message_ended = False
        super().data_received(data)
        if not self._in_head or self._message_ended or self.transport.is_closing():
            return
        self._head_bytes += len(data)
        if self._head_bytes > MAX_HEAD_BYTES:
            log.warning("refused a request from %s: its head is over %d bytes", self.client, MAX_HEAD_BYTES)
            if self.cycle is None or self.cycle.response_complete:
                self.transport.write(_RESPONSE_431)
            self.transport.close()
