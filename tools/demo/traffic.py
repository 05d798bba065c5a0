"""What the demo's applications do and see: HTTP clients streaming held-out digits to two
agents, and MQTT listeners for the camera agent's events (a classifier's per frame, a
detector's per object) and every device's late verdicts."""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass, field

import numpy as np
import paho.mqtt.client as mqtt
import requests
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from edgecascade.shared.v2 import decode_infer_response, encode_infer_request


@dataclass
class Sample:
    """One answer as the application saw it."""

    t: float
    agent: str
    latency_ms: float
    source: str
    escalated: bool
    degraded: bool
    correct: bool
    model_version: str


@dataclass
class DetectionSample:
    """One detection event as an NVR dashboard sees it; `correct`: a true digit of that label
    lies under its box (IoU 0.5) in that frame (None for end events)."""

    t: float
    type: str
    object_id: str
    label: str
    answered_by: str
    escalated: bool
    degraded: bool
    correct: bool | None


@dataclass
class Recorder:
    t0: float = field(default_factory=time.monotonic)
    samples: list[Sample] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    verdicts: list[tuple[float, str, dict[str, object]]] = field(default_factory=list)
    detections: list[DetectionSample] = field(default_factory=list)
    camera_counters: dict[str, float] = field(default_factory=dict)  # scraped from its /metrics
    lock: threading.Lock = field(default_factory=threading.Lock)

    def now(self) -> float:
        return time.monotonic() - self.t0

    def add(self, sample: Sample) -> None:
        with self.lock:
            self.samples.append(sample)

    def error(self, agent: str) -> None:
        with self.lock:
            self.errors[agent] = self.errors.get(agent, 0) + 1


def stream_http(
    agent: str,
    url: str,
    features: np.ndarray,
    labels: np.ndarray,
    rate: float,
    stop: threading.Event,
    rec: Recorder,
) -> None:
    """Send one digit per request at `rate` per second until `stop`, cycling the held-out set."""
    session = requests.Session()
    i = 0
    next_at = time.monotonic()
    while not stop.is_set():
        row = i % len(labels)
        body, headers = encode_infer_request({"input": features[row : row + 1]}, request_id=f"{agent}-{i}")
        started = time.perf_counter()
        try:
            resp = session.post(f"{url}/v2/models/digits-edge/infer", data=body, headers=headers, timeout=10)
            latency = (time.perf_counter() - started) * 1000
            if resp.status_code != 200:
                rec.error(agent)
            else:
                out = decode_infer_response(resp.content, resp.headers)
                prov = out.parameters["provenance"][0]
                rec.add(
                    Sample(
                        rec.now(),
                        agent,
                        latency,
                        prov["source"],
                        prov["escalated"],
                        prov["degraded"],
                        int(out.outputs["label"][0]) == int(labels[row]),
                        str(prov["edge_model"]).split(":")[-1],
                    )
                )
        except requests.RequestException:
            rec.error(agent)
        i += 1
        next_at += 1.0 / rate
        stop.wait(max(0.0, next_at - time.monotonic()))


class MqttListener:
    """Camera events (scored against the video's labels) and late verdicts, from the broker.
    The paho client reconnects by itself when the demo restarts the broker."""

    def __init__(
        self,
        port: int,
        fleet: str,
        camera_agent: str,
        frame_labels: list[int],
        rec: Recorder,
        protocol: int,
        frame_objects: list[list[dict[str, object]]] | None = None,
    ) -> None:
        self.fleet, self.camera_agent, self.labels, self.rec = fleet, camera_agent, frame_labels, rec
        self.objects = frame_objects or []
        version = MQTTProtocolVersion.MQTTv5 if protocol == 5 else MQTTProtocolVersion.MQTTv311
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="demo-app", protocol=version)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(1, 2)
        self.client.connect_async("127.0.0.1", port)

    def start(self) -> None:
        self.client.loop_start()

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(self, client: mqtt.Client, *args: object) -> None:
        client.subscribe(f"edgecascade/{self.fleet}/{self.camera_agent}/events", qos=0)
        client.subscribe(f"edgecascade/{self.fleet}/+/verdicts", qos=1)

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        try:
            body = json.loads(msg.payload)
        except ValueError:
            return
        if msg.topic.endswith("/verdicts"):
            with self.rec.lock:
                self.rec.verdicts.append((self.rec.now(), msg.topic.split("/")[2], body))
            return
        frame = int(body.get("frame", -1))
        if body.get("kind") == "detection":
            self._on_detection(body, frame)
            return
        if not 0 <= frame < len(self.labels):
            return
        model = body.get("model") or {}
        source = str(body.get("answered_by", body.get("source", "edge")))
        self.rec.add(
            Sample(
                self.rec.now(),
                self.camera_agent,
                float("nan"),
                source,
                bool(body.get("escalated")),
                bool(body.get("degraded")),
                str(body.get("label")) == str(self.labels[frame]),
                str(model.get("version", "?")) if source == "edge" else "?",
            )
        )

    def _on_detection(self, body: dict[str, object], frame: int) -> None:
        kind = str(body.get("type"))
        correct = None
        if kind != "end" and 0 <= frame < len(self.objects):
            box = np.array([body.get("box")], dtype=np.float32).reshape(1, 4)
            same = [o["box"] for o in self.objects[frame] if o["label"] == body.get("label")]
            correct = bool(same) and float(_iou(box, np.array(same, dtype=np.float32)).max()) >= 0.5
        self.rec.detections.append(
            DetectionSample(
                self.rec.now(),
                kind,
                str(body.get("id")),
                str(body.get("label")),
                str(body.get("answered_by")),
                bool(body.get("escalated")),
                bool(body.get("degraded")),
                correct,
            )
        )


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    from edgecascade.shared.detection.boxes import iou_matrix

    return iou_matrix(a, b)


_DETECTOR_COUNTER = re.compile(
    r"^edgecascade_model_(\w+?)_(frames|frames_escalated|cloud_answers_unreadable)_total (\S+)$", re.M
)


def scrape_detector_counters(url: str) -> dict[str, float]:
    """The camera agent's detector counters (frames, frames escalated to the cloud detector)
    from its Prometheus /metrics; empty when it does not answer."""
    try:
        text = requests.get(f"{url}/metrics", timeout=2).text
    except requests.RequestException:
        return {}
    return {kind: float(value) for _, kind, value in _DETECTOR_COUNTER.findall(text)}
