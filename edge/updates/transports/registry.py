"""Which transport serves which manifest route. Implementations are imported only when a
manifest names their route, so a device without `requests` still updates over MQTT."""

from __future__ import annotations

import importlib
from typing import Protocol

from edgecascade.edge.updates.transports.base import ArtifactTransport, TransportContext
from edgecascade.shared.errors import UpdateError

TRANSPORTS: dict[str, str] = {
    "mqtt": "edgecascade.edge.updates.transports.mqtt_chunks:MqttChunkTransport",
    "http": "edgecascade.edge.updates.transports.http_range:HttpRangeTransport",
}


class _TransportClass(Protocol):
    def from_context(self, context: TransportContext) -> ArtifactTransport: ...


def check_route(route: str) -> None:
    """UpdateError naming the known routes if this agent has no transport for `route`."""
    if route not in TRANSPORTS:
        raise UpdateError(
            f"unknown artifact route {route!r}; this agent knows {', '.join(sorted(TRANSPORTS))}"
        )


class TransportPool:
    """One transport per route, made on first use from the registry; `close` frees them all."""

    def __init__(self, context: TransportContext) -> None:
        self.context = context
        self._made: dict[str, ArtifactTransport] = {}

    def __call__(self, route: str) -> ArtifactTransport:
        if route not in self._made:
            check_route(route)
            module_name, cls_name = TRANSPORTS[route].split(":")
            cls: _TransportClass = getattr(importlib.import_module(module_name), cls_name)
            self._made[route] = cls.from_context(self.context)
        return self._made[route]

    def made(self, route: str) -> ArtifactTransport | None:
        """The transport already made for `route`, if any (for its counters)."""
        return self._made.get(route)

    def close(self) -> None:
        for transport in self._made.values():
            transport.close()
        self._made.clear()
