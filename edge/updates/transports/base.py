"""The artifact transport interface: how a verified blob's bytes reach the device.

A transport is chosen by the manifest's `route` through the registry (registry.py); adding a
route (object storage, a file share) is one module with a class like these plus one line there."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from edgecascade.edge.config.updates import UpdatesSection
from edgecascade.edge.updates.staging import StagedBlob
from edgecascade.shared.mqtt import MqttConnection

Progress = Callable[[StagedBlob], None]


@dataclass(frozen=True)
class TransportContext:
    """What a transport may use: the agent's MQTT connection, the profile's [updates], and how
    to verify an HTTPS server (requests' `verify=`: a CA file, or True for the system's CAs)."""

    connection: MqttConnection
    config: UpdatesSection
    verify: bool | str = True


class ArtifactTransport(Protocol):
    """Fills a StagedBlob, resumably: it fetches only the chunks still missing."""

    def fetch(self, staged: StagedBlob, stop: threading.Event, on_progress: Progress) -> None:
        """Fill `staged` until done. Raises UpdateError on timeout; returns early if `stop` is set."""

    def close(self) -> None:
        """Free connections; called when the updater stops."""
