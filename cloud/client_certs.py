"""Client-certificate authentication for the REST front end.

uvicorn verifies a presented certificate against `tls_client_ca` during the handshake but does
not pass it to the app, so this HTTP protocol records each connection's verified common name,
keyed by the peer address that uvicorn puts into the ASGI scope as `client`."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from edgecascade.cloud.http_protocol import BoundedHttpProtocol

#: (peer host, peer port) -> the verified certificate's common name, for open connections of
#: this process. Forwarded-for headers are off with client certificates (cloud/server.py), so a
#: scope's `client` is always the real TCP peer.
_PEERS: dict[tuple[str, int], str] = {}


def common_name(cert: Mapping[str, Any]) -> str | None:
    """The subject's commonName of a certificate dict as `SSLSocket.getpeercert()` gives it."""
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return None


class CertificateHttpProtocol(BoundedHttpProtocol):
    """uvicorn's HTTP/1.1 protocol (with its bounded request heads), plus the peer certificate's identity."""

    _peer: tuple[str, int] | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        cert = transport.get_extra_info("peercert")
        peer = transport.get_extra_info("peername")
        name = common_name(cert) if cert else None
        if name and peer:
            self._peer = (str(peer[0]), int(peer[1]))
            _PEERS[self._peer] = name

    def connection_lost(self, exc: Exception | None) -> None:
        if self._peer is not None:
            _PEERS.pop(self._peer, None)
        super().connection_lost(exc)


def certificate_identity(scope: Mapping[str, Any]) -> str | None:
    """The device id a verified client certificate gives this request's connection, if any."""
    client = scope.get("client")
    if not client:
        return None
    return _PEERS.get((str(client[0]), int(client[1])))
