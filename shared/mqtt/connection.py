"""One paho-mqtt client per process, done the way users expect of an MQTT citizen:
callback API v2, subscriptions renewed in on_connect (so they survive reconnects), a retained
offline will and a retained online message, reconnect backoff, TLS and credentials, and
QoS 1 publishes whose PUBACK the caller can wait for."""

from __future__ import annotations

import logging
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from edgecascade.shared.errors import ConfigError, TransportError

log = logging.getLogger(__name__)

MessageHandler = Callable[[mqtt.MQTTMessage], None]


@dataclass
class MqttSettings:
    host: str = "127.0.0.1"
    port: int = 1883
    client_id: str = ""
    username: str | None = None
    password: str | None = None
    protocol: int = 5  # 5 or 4 (3.1.1)
    keepalive_s: int = 30
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    reconnect_min_s: float = 0.5
    reconnect_max_s: float = 30.0
    presence_topic: str | None = None  # retained online/offline, offline as the will
    clean_start: bool = True
    # Manual acknowledgement: a QoS 1 message is PUBACKed only when its handler calls ack(),
    # so a consumer that failed to store it leaves it with the broker for redelivery.
    manual_ack: bool = False
    # MQTT 5 Maximum Packet Size: the broker must not send this client a bigger packet (it
    # drops it instead), so no publish to our topics can make paho read it whole into memory.
    max_packet_bytes: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class MqttConnection:
    """Call `subscribe()` any time (it is re-applied on every connect), `start()` once,
    `publish()` from any thread, `stop()` at exit (publishes the retained offline presence)."""

    def __init__(self, settings: MqttSettings) -> None:
        self.settings = settings
        version = MQTTProtocolVersion.MQTTv5 if settings.protocol == 5 else MQTTProtocolVersion.MQTTv311
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=settings.client_id,
            protocol=version,
            clean_session=None if version == MQTTProtocolVersion.MQTTv5 else settings.clean_start,
            manual_ack=settings.manual_ack,
        )
        if settings.username is not None:
            self.client.username_pw_set(settings.username, settings.password)
        if settings.tls_ca:
            try:
                self.client.tls_set(
                    ca_certs=settings.tls_ca,
                    certfile=settings.tls_cert,
                    keyfile=settings.tls_key,
                    cert_reqs=ssl.CERT_REQUIRED,
                )
            except ssl.SSLError as exc:  # a file that is there but not PEM: ssl's traceback before
                named = {"CA": settings.tls_ca, "certificate": settings.tls_cert, "key": settings.tls_key}
                files = ", ".join(f"{what} {path}" for what, path in named.items() if path)
                raise ConfigError(
                    f"MQTT TLS files unusable ({files}; expected PEM): {exc.reason or exc}"
                ) from None
        if settings.presence_topic:
            self.client.will_set(settings.presence_topic, b"offline", qos=1, retain=True)
        self.client.reconnect_delay_set(int(max(1, settings.reconnect_min_s)), int(settings.reconnect_max_s))
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self._subs: dict[str, tuple[int, MessageHandler]] = {}
        self._lock = threading.Lock()
        self.connected = threading.Event()
        self.refused_reason: str | None = None
        self.on_connect_hooks: list[Callable[[], None]] = []

    # -- lifecycle --------------------------------------------------------------------
    def start(self, wait_s: float | None = None) -> bool:
        """Connect in the background (retrying forever). With `wait_s`, wait that long for the
        first connection and return whether it came up; an offline start is not an error."""
        properties = None
        if self.settings.max_packet_bytes and self.settings.protocol == 5:
            from paho.mqtt.packettypes import PacketTypes
            from paho.mqtt.properties import Properties

            properties = Properties(PacketTypes.CONNECT)
            properties.MaximumPacketSize = self.settings.max_packet_bytes
        self.client.connect_async(
            self.settings.host, self.settings.port, keepalive=self.settings.keepalive_s, properties=properties
        )
        self.client.loop_start()
        return self.connected.wait(wait_s) if wait_s else self.connected.is_set()

    def stop(self, timeout_s: float = 2.0) -> None:
        if self.settings.presence_topic and self.connected.is_set():
            info = self.client.publish(self.settings.presence_topic, b"offline", qos=1, retain=True)
            try:
                info.wait_for_publish(timeout_s)
            except (RuntimeError, ValueError):
                log.warning("could not publish offline presence before disconnecting")
        self.connected.clear()
        self.client.disconnect()
        self.client.loop_stop()

    # -- subscriptions ------------------------------------------------------------------
    def subscribe(self, topic: str, handler: MessageHandler, qos: int = 1) -> None:
        with self._lock:
            self._subs[topic] = (qos, handler)
        if self.connected.is_set():
            self.client.subscribe(topic, qos)

    def unsubscribe(self, topic: str) -> None:
        with self._lock:
            self._subs.pop(topic, None)
        if self.connected.is_set():
            self.client.unsubscribe(topic)

    # -- publishing -----------------------------------------------------------------------
    def publish(
        self, topic: str, payload: bytes | str, qos: int = 1, retain: bool = False, properties: Any = None
    ) -> mqtt.MQTTMessageInfo:
        """Queue a publish. For QoS 1 the returned info's `is_published()` becomes true on PUBACK.
        paho keeps unacknowledged messages only in memory: durable senders must keep their own copy."""
        info = self.client.publish(topic, payload, qos=qos, retain=retain, properties=properties)
        if info.rc == mqtt.MQTT_ERR_QUEUE_SIZE:
            raise TransportError("MQTT client queue is full", reason_code=info.rc)
        return info

    def publish_and_wait(
        self, topic: str, payload: bytes | str, timeout_s: float, qos: int = 1, retain: bool = False
    ) -> bool:
        """Publish and wait for the PUBACK. Returns False on timeout or while disconnected."""
        if not self.connected.is_set():
            return False
        info = self.publish(topic, payload, qos=qos, retain=retain)
        try:
            info.wait_for_publish(timeout_s)
        except (RuntimeError, ValueError):
            return False
        return info.is_published()

    def ack(self, msg: mqtt.MQTTMessage) -> None:
        """Acknowledge a message received on a manual-ack connection (no-op otherwise)."""
        if self.settings.manual_ack and msg.qos > 0:
            self.client.ack(msg.mid, msg.qos)

    # -- paho callbacks -------------------------------------------------------------------
    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any
    ) -> None:
        if reason_code.is_failure:
            self.refused_reason = str(reason_code)
            log.error(
                "MQTT broker %s:%s refused the connection: %s",
                self.settings.host,
                self.settings.port,
                reason_code,
            )
            return
        self.refused_reason = None
        log.info("MQTT connected to %s:%s", self.settings.host, self.settings.port)
        with self._lock:
            subs = list(self._subs.items())
        for topic, (qos, _) in subs:
            client.subscribe(topic, qos)
        if self.settings.presence_topic:
            client.publish(self.settings.presence_topic, b"online", qos=1, retain=True)
        self.connected.set()
        for hook in list(self.on_connect_hooks):
            hook()

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any
    ) -> None:
        if self.connected.is_set():
            log.warning(
                "MQTT disconnected from %s:%s (%s); reconnecting",
                self.settings.host,
                self.settings.port,
                reason_code,
            )
        self.connected.clear()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            handlers = [
                h for t, (_, h) in self._subs.items() if mqtt.topic_matches_sub(_strip_share(t), msg.topic)
            ]
        for handler in handlers:
            try:
                handler(msg)
            except Exception:  # a handler bug must not kill paho's network thread
                log.exception("handler for %s failed on a message", msg.topic)


def _strip_share(topic: str) -> str:
    """'$share/group/a/b' -> 'a/b' for matching incoming messages."""
    if topic.startswith("$share/"):
        return topic.split("/", 2)[2]
    return topic
