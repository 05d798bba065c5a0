"""Artifact transports, one per manifest route (see registry.py)."""

from edgecascade.edge.updates.transports.base import ArtifactTransport, Progress, TransportContext
from edgecascade.edge.updates.transports.registry import TRANSPORTS, TransportPool, check_route

__all__ = ["TRANSPORTS", "ArtifactTransport", "Progress", "TransportContext", "TransportPool", "check_route"]
