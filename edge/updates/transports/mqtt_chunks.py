"""The mqtt route: numbered, hashed chunks as retained QoS 1 messages."""

from __future__ import annotations

import logging
import threading
import time

import paho.mqtt.client as mqtt

from edgecascade.edge.updates.staging import StagedBlob
from edgecascade.edge.updates.transports.base import Progress, TransportContext
from edgecascade.shared.errors import UpdateError
from edgecascade.shared.mqtt import MqttConnection

log = logging.getLogger(__name__)


class MqttChunkTransport:
    """Chunk i is the retained QoS 1 message on `<blob.topic>/<i>`. Subscribing delivers every
    retained chunk; after a stall (or a reconnect, which renews subscriptions) the device
    subscribes again and keeps only chunks it lacks."""

    def __init__(self, connection: MqttConnection, *, stall_timeout_s: float, timeout_s: float) -> None:
        self.connection = connection
        self.stall_timeout_s = stall_timeout_s
        self.timeout_s = timeout_s

    def fetch(self, staged: StagedBlob, stop: threading.Event, on_progress: Progress) -> None:
        topic = f"{staged.blob.topic}/+"
        prefix = staged.blob.topic + "/"

        def on_chunk(msg: mqtt.MQTTMessage) -> None:
            suffix = msg.topic[len(prefix) :]
            if not suffix.isdigit():
                return
            if staged.write_chunk(int(suffix), bytes(msg.payload)):
                on_progress(staged)

        deadline = time.monotonic() + self.timeout_s
        self.connection.subscribe(topic, on_chunk, qos=1)
        try:
            while not staged.done.is_set() and not stop.is_set():
                staged.progressed.clear()
                if staged.done.wait(0) or staged.progressed.wait(self.stall_timeout_s):
                    if time.monotonic() > deadline:
                        break
                    continue
                if time.monotonic() > deadline:
                    break
                if staged.rejected_chunks:
                    raise UpdateError(
                        f"{staged.rejected_chunks} chunks failed the SHA-256 in the signed manifest (tampered?)"
                    )
                log.info("download of %s stalled; subscribing again", staged.blob.topic)
                self.connection.unsubscribe(topic)
                self.connection.subscribe(topic, on_chunk, qos=1)
        finally:
            self.connection.unsubscribe(topic)
        if not staged.done.is_set() and not stop.is_set():
            raise UpdateError(f"download timed out with {len(staged.missing_sorted())} chunks missing")

    @classmethod
    def from_context(cls, context: TransportContext) -> MqttChunkTransport:
        cfg = context.config
        return cls(context.connection, stall_timeout_s=cfg.stall_timeout_s, timeout_s=cfg.download_timeout_s)

    def close(self) -> None:
        """Nothing to free: the connection is the agent's."""
