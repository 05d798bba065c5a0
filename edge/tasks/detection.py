"""Detectors: decode detections, decide whether the frame is hard (a detection in the
uncertain score band, or a count rule), ask the cloud detector about hard frames, and answer
with the detections (label, score, box) and their provenance.

The cloud detector need not share the edge detector's outputs or input size: the device asks
`cloud serve` for the standard decoded outputs (shared/detection/served.py), or decodes a peer
cloud's own outputs with the format its [[models]] entry describes (cloud_detection), and can
send the frame itself for the cloud model's own input pipeline."""

from __future__ import annotations

import logging
import time

import cv2
import numpy as np
import orjson

from edgecascade.edge.config.models import CloudDetectionSection, DetectionPolicySection
from edgecascade.edge.tasks.base import (
    OutputInfo,
    Task,
    TaskParts,
    TaskReply,
    TaskRequest,
    ask_cloud,
    provenance_record,
)
from edgecascade.edge.tasks.tensor import model_outputs
from edgecascade.shared.detection.decoders import Decoder, LabeledDetection, decoder_for
from edgecascade.shared.detection.served import (
    SERVED_NAMES,
    SERVED_OUTPUTS,
    from_served,
    serves_decoded,
    to_served,
)
from edgecascade.shared.errors import ConfigError, InputError
from edgecascade.shared.model_card import DetectionCard, ModelCard

log = logging.getLogger(__name__)

#: Decoded outputs served beside the model's own: the standard ones, padded to the most
#: detections in the batch, and each frame's detections as JSON with their provenance source.
DECODED = [
    *(OutputInfo(name, datatype, list(shape)) for name, datatype, shape in SERVED_OUTPUTS),
    OutputInfo("detections", "BYTES", [-1]),
    OutputInfo("source", "BYTES", [-1]),
]

Frames = list[list[LabeledDetection]]


class DetectionPolicy:
    """Hard when a detection scores inside [low, high), or the confident count breaks a rule."""

    def __init__(self, config: DetectionPolicySection) -> None:
        self.config = config

    def reported(self, found: list[LabeledDetection]) -> list[LabeledDetection]:
        return [d for d in found if d.score >= self.config.report_threshold]

    def decide(self, found: list[LabeledDetection]) -> str | None:
        c = self.config
        for d in found:
            if c.uncertain_low <= d.score < c.uncertain_high:
                return f"{d.label} score {d.score:.3f} in uncertain band [{c.uncertain_low:.2f}, {c.uncertain_high:.2f})"
        count = len(self.reported(found))
        if c.min_count is not None and count < c.min_count:
            return f"{count} detections < min_count {c.min_count}"
        if c.max_count is not None and count > c.max_count:
            return f"{count} detections > max_count {c.max_count}"
        return None


class CloudAnswerReader:
    """What to ask the cloud detector for, and how to read its answer, from the [[models]]
    entry's cloud_detection and (by default) the edge card's own detection section."""

    def __init__(self, config: CloudDetectionSection, edge_card: ModelCard) -> None:
        assert edge_card.detection is not None  # the card validator requires it for detectors
        self.config = config
        self.card: DetectionCard = config.card or edge_card.detection
        self.labels = config.labels if config.labels is not None else edge_card.labels
        self._decode: Decoder = decoder_for(self.card.format)
        own = [
            self.card.boxes_output,
            self.card.scores_output,
            self.card.classes_output,
            self.card.count_output,
        ]
        self.outputs: list[str] | None = {
            "decoded": list(SERVED_NAMES),
            "outputs": [n for n in own if n is not None],
            "auto": None,
        }[config.answer]

    def read(self, outputs: dict[str, np.ndarray]) -> Frames:
        """The detections of a cloud answer; InputError when it does not decode."""
        if self.config.answer == "decoded" or (self.config.answer == "auto" and serves_decoded(outputs)):
            return from_served(outputs)
        return self._decode(outputs, self.card, self.labels)


class DetectionTask(Task):
    kind = "detection"

    def __init__(self, parts: TaskParts) -> None:
        super().__init__(parts)
        self.policy = DetectionPolicy(parts.entry.detection)
        cloud = parts.entry.cloud_detection
        if cloud.send == "image" and not parts.send_raw_input:
            raise ConfigError(
                f"model {parts.entry.name!r}: cloud_detection.send = 'image' sends the frame itself; "
                "it needs cloud.send_raw_input = true",
                key="models.cloud_detection.send",
            )
        self._decoder_of: object = None
        self._decoder: Decoder = decoder_for(self.card.detection.format if self.card.detection else "")
        self._reader_of: object = None
        self._reader = CloudAnswerReader(cloud, self.card)
        self.escalated = 0
        self.frames = 0
        self.cloud_unreadable = 0

    def output_info(self) -> list[OutputInfo]:
        own = model_outputs(self.card, self.slot.current.backend.signature.outputs)
        return own + DECODED

    def decode(self, outputs: dict[str, np.ndarray]) -> Frames:
        card = self.card
        assert card.detection is not None  # the card validator requires it for detectors
        if card is not self._decoder_of:  # per model (swaps change it), not per frame
            self._decoder_of, self._decoder = card, decoder_for(card.detection.format)
        return self._decoder(outputs, card.detection, card.labels)

    def cloud_reader(self) -> CloudAnswerReader:
        card = self.card
        if card is not self._reader_of:  # the edge card's defaults follow model swaps
            self._reader_of, self._reader = card, CloudAnswerReader(self.parts.entry.cloud_detection, card)
        return self._reader

    def infer(self, request: TaskRequest) -> TaskReply:
        start = time.perf_counter()
        prepared_for, inputs = self.prepared_inputs(request)
        model, outputs = self.slot.run(inputs, prepared_for)
        frames = self.decode(outputs)
        records = []
        answers: Frames = []
        single = len(frames) == 1
        observed = bool(self.parts.observers)
        for i, found in enumerate(frames):
            self.frames += 1
            self.parts.budget.record_request()  # the budget's fraction counts every frame
            request_id = request.request_id if single else f"{request.request_id or ''}#{i}"
            hard = self.policy.decide(found)
            source, reason, cloud_ref, degraded = "edge", "confident", None, False
            if hard is not None:
                reader = self.cloud_reader()
                sent = self._cloud_inputs(request, inputs, i)
                outcome = ask_cloud(self.parts, sent, hard, request_id or "", reader.outputs)
                read = self._read_cloud(reader, outcome.outputs) if outcome.outputs is not None else None
                if isinstance(read, list):
                    found, source, reason, cloud_ref = read, "cloud", hard, outcome.model
                    self.escalated += 1
                elif read is not None:  # an answer that does not decode: the edge's, degraded
                    reason, degraded = f"{hard}; {read}", True
                else:
                    reason, degraded = outcome.degraded_reason or hard, True
            reported = self.policy.reported(found)
            answers.append(reported)
            record = provenance_record(
                request_id,
                source,
                model.ref,
                escalated=hard is not None,
                degraded=degraded,
                reason=reason,
                cloud_model=cloud_ref,
                latency_ms=(time.perf_counter() - start) * 1000.0,
            )
            record["detections"] = [d.to_dict() for d in reported]
            records.append(record)
            if observed:  # the summary is for the observers only
                top = max(reported, key=lambda d: d.score, default=None)
                self.notify(
                    record,
                    model.ref,
                    cloud_ref,
                    label=top.label if top else "",
                    confidence=float(top.score) if top else 0.0,
                )
        reply = dict(outputs)
        reply.update(to_served(answers))
        reply["detections"] = np.array([orjson.dumps(r["detections"]) for r in records], dtype=object)
        reply["source"] = np.array([r["source"].encode() for r in records], dtype=object)
        return TaskReply(reply, records, model.card.version)

    def _read_cloud(
        self, reader: CloudAnswerReader, outputs: dict[str, np.ndarray]
    ) -> list[LabeledDetection] | str:
        """The cloud's detections of one frame, or why they cannot be read (a degraded reason)."""
        try:
            frames = reader.read(outputs)
        except InputError as exc:
            self.cloud_unreadable += 1
            if self.cloud_unreadable % 100 == 1:
                log.warning(
                    "model %s: the cloud detector's answer does not decode (%d so far): %s; "
                    "set [[models]] cloud_detection to the cloud model's format",
                    self.parts.entry.name,
                    self.cloud_unreadable,
                    exc,
                )
            return f"cloud answer unreadable: {exc}"
        if len(frames) != 1:
            self.cloud_unreadable += 1
            return f"cloud answer unreadable: {len(frames)} frames for one"
        return frames[0]

    def _cloud_inputs(
        self, request: TaskRequest, prepared: dict[str, np.ndarray], i: int
    ) -> dict[str, np.ndarray]:
        """Frame `i` as the cloud gets it: the edge model's prepared tensors, or (send = image)
        each image input as the image itself, for the cloud model's own pipeline."""
        one = {n: a[i : i + 1] for n, a in prepared.items()}
        if self.parts.entry.cloud_detection.send != "image":
            return one
        for name, value in request.inputs.items():
            image = _image_bytes(value, i)
            if image is not None:
                one[name] = np.array([image], dtype=object)
        return one

    def counters(self) -> dict[str, float]:
        return {
            "frames": float(self.frames),
            "frames_escalated": float(self.escalated),
            "cloud_answers_unreadable": float(self.cloud_unreadable),
            "escalations_denied_by_budget": float(self.parts.budget.denied),
        }


def _image_bytes(value: object, i: int) -> bytes | None:
    """Example `i` of an input as encoded image bytes, if it is an image (BYTES, or a uint8 HxW
    or HxWx3 picture, sent as PNG: lossless); None for a tensor."""
    if isinstance(value, bytes | bytearray):
        return bytes(value) if i == 0 else None
    if not isinstance(value, np.ndarray):
        return None
    if value.dtype == object:
        flat = value.reshape(-1)
        item = flat[i] if i < len(flat) else None
        return item if isinstance(item, bytes) else None
    if value.dtype == np.uint8 and value.ndim in (2, 3) and i == 0:
        ok, png = cv2.imencode(".png", value)
        return png.tobytes() if ok else None
    return None
