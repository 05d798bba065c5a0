"""The lifecycle every long-running part of the daemon implements (telemetry uplink, update
subscriber, camera source, local API). The daemon starts them in order and stops them in reverse."""

from __future__ import annotations

from typing import Protocol


class Service(Protocol):
    name: str

    def start(self) -> None:
        """Begin work in background threads; return promptly. Must not raise for a missing
        network (an offline start is normal on a device)."""

    def stop(self, timeout_s: float) -> None:
        """Finish in-flight work (flush what must not be lost) within `timeout_s`, then return."""
