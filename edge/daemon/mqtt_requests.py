"""Inference requests over MQTT: a request topic per device; the reply goes to the topic the
request names, with its correlation id. The payload is a V2 JSON infer request (the same
format as the HTTP API). MQTT 5 requests use the Response Topic and Correlation Data
properties; on MQTT 3.1.1 the same fields travel as request parameters `reply_to` and
`correlation_id`. Work is handed to the daemon's executor: paho's network thread never waits."""

from __future__ import annotations

import json
import logging
import threading
from concurrent.futures import Executor
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edgecascade.edge import serving
from edgecascade.edge.agent import Agent
from edgecascade.edge.daemon.metrics import AgentMetrics
from edgecascade.shared.errors import EdgecascadeError
from edgecascade.shared.mqtt import MqttConnection, Topics
from edgecascade.shared.v2 import decode_infer_request, encode_infer_response

log = logging.getLogger(__name__)


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
        self.executor = executor
        self.metrics = metrics
        self.max_inflight = max_inflight
        self.topic = Topics(agent.profile.fleet).requests(agent.profile.device_id)
        self._inflight = 0
        self._lock = threading.Lock()
        self.malformed = 0
        self.answered = 0

    def start(self) -> None:
        self.connection.subscribe(self.topic, self._on_message, qos=1)
        log.info("answering inference requests on %s", self.topic)

    def stop(self, timeout_s: float) -> None:
        self.connection.unsubscribe(self.topic)

    def _on_message(self, msg: mqtt.MQTTMessage) -> None:
        reply_to, correlation = _reply_address(msg)
        with self._lock:
            if self._inflight >= self.max_inflight:
                self.metrics.rejected.labels("mqtt").inc()
                self._reply_error(reply_to, correlation, None, "agent is busy; retry later")
                return
            self._inflight += 1
        self.executor.submit(self._handle, bytes(msg.payload), reply_to, correlation)

    def _handle(self, payload: bytes, reply_to: str | None, correlation: str | None) -> None:
        request_id = None
        try:
            decoded = decode_infer_request(payload, {"content-type": "application/json"})
            request_id = decoded.id
            reply_to = reply_to or _param(decoded.parameters, "reply_to")
            correlation = correlation or _param(decoded.parameters, "correlation_id")
            if not reply_to:
                raise EdgecascadeError(
                    "request names no reply topic (MQTT 5 Response Topic or parameters.reply_to)"
                )
            model = _param(decoded.parameters, "model")
            served, reply = serving.infer_sync(self.agent, model or self.agent.default_name, None, decoded)
            params: dict[str, Any] = {"provenance": reply.provenance}
            if correlation:
                params["correlation_id"] = correlation
            body, _ = encode_infer_response(
                served.name, reply.model_version, request_id, reply.outputs, parameters=params
            )
            self._publish(reply_to, body, correlation)
            self.answered += 1
        except EdgecascadeError as exc:
            self.malformed += 1
            self.metrics.bad_requests.labels("mqtt").inc()
            log.warning("bad MQTT inference request on %s: %s", self.topic, exc)
            self._reply_error(reply_to, correlation, request_id, str(exc))
        finally:
            with self._lock:
                self._inflight -= 1

    def _reply_error(
        self, reply_to: str | None, correlation: str | None, request_id: str | None, message: str
    ) -> None:
        if reply_to:
            body = json.dumps({"error": message, "id": request_id, "correlation_id": correlation}).encode()
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


def _param(params: dict[str, Any], name: str) -> str | None:
    value = params.get(name)
    return str(value) if value is not None else None
