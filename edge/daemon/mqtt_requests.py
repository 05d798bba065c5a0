"""Inference requests over MQTT: a request topic per device; the reply goes to the topic the
request names, with its correlation id. The payload is a V2 JSON infer request (the same
format as the HTTP API). MQTT 5 requests use the Response Topic and Correlation Data
properties; on MQTT 3.1.1 the same fields travel as request parameters `reply_to` and
`correlation_id`. Every request is answered by the same `AgentV2.answer` as the HTTP API, on this
server's own event loop thread (escalations and image decoding go to the daemon's executor), so
paho's network thread never waits. Every request gets a reply; one that names no reply topic
cannot, and is counted (`unanswerable`) and logged instead."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from concurrent.futures import Executor
from typing import Any

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edgecascade.edge.agent import Agent
from edgecascade.edge.daemon.metrics import AgentMetrics
from edgecascade.edge.daemon.v2_service import AgentV2
from edgecascade.shared.mqtt import MqttConnection, Topics
from edgecascade.shared.v2 import CORRELATION_ID_KEY, JSON_TYPE, REPLY_TO_KEY, Reply, error_reply

log = logging.getLogger(__name__)

_JSON_HEADERS = {"content-type": JSON_TYPE}


class MqttRequestServer:
    name = "mqtt-requests"

    def __init__(
        self,
        agent: Agent,
        connection: MqttConnection,
        executor: Executor,
        metrics: AgentMetrics,
        max_inflight: int,
    ) -> None:
        self.agent = agent
        self.connection = connection
        self.v2 = AgentV2(agent, executor)
        self.metrics = metrics
        self.max_inflight = max_inflight
        self.topic = Topics(agent.profile.fleet).request_filter(agent.profile.device_id)
        self._inflight = 0
        self._lock = threading.Lock()
        self.malformed = 0
        self.answered = 0
        self.unanswerable = 0  # requests that named no reply topic: logged, cannot be answered
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="mqtt-requests", daemon=True)

    def start(self) -> None:
        self._thread.start()
        self.connection.subscribe(self.topic, self._on_message, qos=1)
        log.info("answering inference requests on %s", self.topic)

    def stop(self, timeout_s: float) -> None:
        self.connection.unsubscribe(self.topic)
        deadline = time.monotonic() + timeout_s
        while self._inflight and time.monotonic() < deadline:  # let in-flight requests finish
            time.sleep(0.01)
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout_s)

    def _on_message(self, msg: mqtt.MQTTMessage) -> None:
        reply_to, correlation = _reply_address(msg)
        payload = bytes(msg.payload)
        with self._lock:
            busy = self._inflight >= self.max_inflight
            if not busy:
                self._inflight += 1
        if busy:
            self.metrics.rejected.labels("mqtt").inc()
            params = _parameters(payload)
            reply_to = reply_to or _text(params.get(REPLY_TO_KEY))
            correlation = correlation or _text(params.get(CORRELATION_ID_KEY))
            self._send(error_reply(503, "agent is busy; retry later"), payload, reply_to, correlation)
            return
        asyncio.run_coroutine_threadsafe(self._handle(payload, reply_to, correlation), self._loop)

    async def _handle(self, payload: bytes, reply_to: str | None, correlation: str | None) -> None:
        try:
            # MQTT 3.1.1 carries the correlation id as a parameter; it is echoed either way.
            params = _parameters(payload)
            correlation = correlation or _text(params.get(CORRELATION_ID_KEY))
            reply = await self.v2.answer(
                None,  # the model parameters.model names, else the agent's first
                None,
                payload,
                _JSON_HEADERS,
                binary_allowed=False,  # an MQTT payload has no header for the JSON's length
                compression=False,
                parameters={CORRELATION_ID_KEY: correlation} if correlation else None,
            )
            self._send(reply, payload, reply_to or _text(params.get(REPLY_TO_KEY)), correlation)
        except Exception:  # noqa: BLE001 - publishing failed or a bug: never lost silently
            log.exception("MQTT inference request on %s could not be answered", self.topic)
        finally:
            with self._lock:
                self._inflight -= 1

    def _send(self, reply: Reply, payload: bytes, reply_to: str | None, correlation: str | None) -> None:
        if reply.status == 200:
            self.answered += 1
        else:
            self.malformed += 1
            self.metrics.bad_requests.labels("mqtt").inc()
            log.warning("MQTT inference request on %s answered %d: %s", self.topic, reply.status, reply.error)
        if not reply_to:
            self.unanswerable += 1
            log.warning(
                "MQTT inference request on %s (%d bytes) names no reply topic (MQTT 5 Response Topic or "
                "parameters.reply_to); not answered (%d so far)",
                self.topic,
                len(payload),
                self.unanswerable,
            )
            return
        body = reply.body
        if reply.status != 200:
            # No HTTP status on MQTT: the error reply carries it.
            doc = orjson.loads(body)
            doc["status"] = reply.status
            if correlation:
                doc[CORRELATION_ID_KEY] = correlation
            body = orjson.dumps(doc)
        self._publish(reply_to, body, correlation)

    def _publish(self, topic: str, body: bytes, correlation: str | None) -> None:
        props = None
        if self.connection.settings.protocol == 5 and correlation:
            props = Properties(PacketTypes.PUBLISH)
            props.CorrelationData = correlation.encode()
        self.connection.publish(topic, body, qos=1, properties=props)


def _reply_address(msg: mqtt.MQTTMessage) -> tuple[str | None, str | None]:
    props = getattr(msg, "properties", None)
    reply = getattr(props, "ResponseTopic", None) if props else None
    corr = getattr(props, "CorrelationData", None) if props else None
    return reply, corr.decode(errors="replace") if isinstance(corr, bytes) else corr


def _parameters(payload: bytes) -> dict[str, Any]:
    """The request's `parameters`, read leniently so that a request the decoder refuses can
    still be answered on the reply topic it names; {} when there is none."""
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return {}
    params = doc.get("parameters") if isinstance(doc, dict) else None
    return params if isinstance(params, dict) else {}


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None
