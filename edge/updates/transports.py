"""Artifact transports: numbered, hashed chunks over MQTT, or HTTP(S) Range requests.

Both fill a StagedBlob and are resumable: they fetch only the chunks still missing."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

import paho.mqtt.client as mqtt

from edge.updates.staging import StagedBlob
from shared.errors import UpdateError
from shared.mqtt import MqttConnection

log = logging.getLogger(__name__)

Progress = Callable[[StagedBlob], None]


class ArtifactTransport(Protocol):
    def fetch(self, staged: StagedBlob, stop: threading.Event, on_progress: Progress) -> None:
        """Fill `staged` until done. Raises UpdateError on timeout; returns early if `stop` is set."""


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


class HttpRangeTransport:
    """GET <blob.url> with `Range: bytes=a-b` per missing chunk; connection errors are retried
    with backoff until the overall timeout."""

    def __init__(self, *, request_timeout_s: float, timeout_s: float, verify: bool | str = True) -> None:
        import requests

        self.session = requests.Session()
        self.session.verify = verify
        self.request_timeout_s = request_timeout_s
        self.timeout_s = timeout_s

    def fetch(self, staged: StagedBlob, stop: threading.Event, on_progress: Progress) -> None:
        import requests

        url = staged.blob.url
        if not url:
            raise UpdateError("manifest route is http but the artifact has no url")
        deadline = time.monotonic() + self.timeout_s
        delay = 0.1
        while not staged.done.is_set() and not stop.is_set():
            if time.monotonic() > deadline:
                raise UpdateError(f"download timed out with {len(staged.missing_sorted())} chunks missing")
            try:
                for index in staged.missing_sorted():
                    if stop.is_set():
                        return
                    start, end = staged.blob.chunk_bounds(index)
                    resp = self.session.get(
                        url, headers={"Range": f"bytes={start}-{end - 1}"}, timeout=self.request_timeout_s
                    )
                    if resp.status_code != 206:
                        raise UpdateError(f"artifact server answered {resp.status_code} to a range request")
                    if not staged.write_chunk(index, resp.content):
                        raise UpdateError(
                            f"chunk {index} failed the SHA-256 in the signed manifest (tampered?)"
                        )
                    on_progress(staged)
                delay = 0.1
            except requests.RequestException as exc:
                log.warning("artifact download from %s failed (%s); retrying in %.1fs", url, exc, delay)
                stop.wait(delay)
                delay = min(delay * 2, 5.0)

    def close(self) -> None:
        self.session.close()
