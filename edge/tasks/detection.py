"""Detectors: decode detections, decide whether the frame is hard (a detection in the
uncertain score band, or a count rule), ask the cloud detector about hard frames, and answer
with the detections (label, score, box) and their provenance."""

from __future__ import annotations

import time

import numpy as np
import orjson

from edgecascade.edge.config.models import DetectionPolicySection
from edgecascade.edge.tasks.base import (
    OutputInfo,
    Task,
    TaskParts,
    TaskReply,
    TaskRequest,
    ask_cloud,
    provenance_record,
)
from edgecascade.edge.tasks.detections import Decoder, Detection, decoder_for
from edgecascade.edge.tasks.tensor import model_outputs

#: Decoded outputs served beside the model's own: padded to the most detections in the batch.
DECODED = [
    OutputInfo("detection_boxes", "FP32", [-1, -1, 4]),
    OutputInfo("detection_scores", "FP32", [-1, -1]),
    OutputInfo("detection_labels", "BYTES", [-1, -1]),
    OutputInfo("detection_count", "INT64", [-1]),
    OutputInfo("detections", "BYTES", [-1]),
    OutputInfo("source", "BYTES", [-1]),
]


class DetectionPolicy:
    """Hard when a detection scores inside [low, high), or the confident count breaks a rule."""

    def __init__(self, config: DetectionPolicySection) -> None:
        self.config = config

    def reported(self, found: list[Detection]) -> list[Detection]:
        return [d for d in found if d.score >= self.config.report_threshold]

    def decide(self, found: list[Detection]) -> str | None:
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


class DetectionTask(Task):
    kind = "detection"

    def __init__(self, parts: TaskParts) -> None:
        super().__init__(parts)
        self.policy = DetectionPolicy(parts.entry.detection)
        self._decoder_of: object = None
        self._decoder: Decoder = decoder_for(self.card.detection.format if self.card.detection else "")
        self.escalated = 0
        self.frames = 0

    def output_info(self) -> list[OutputInfo]:
        own = model_outputs(self.card, self.slot.current.backend.signature.outputs)
        return own + DECODED

    def decode(self, outputs: dict[str, np.ndarray]) -> list[list[Detection]]:
        card = self.card
        assert card.detection is not None  # the card validator requires it for detectors
        if card is not self._decoder_of:  # per model (swaps change it), not per frame
            self._decoder_of, self._decoder = card, decoder_for(card.detection.format)
        return self._decoder(outputs, card.detection, card.labels)

    def infer(self, request: TaskRequest) -> TaskReply:
        start = time.perf_counter()
        inputs = self.model_inputs(request)
        model, outputs = self.slot.run(inputs)
        frames = self.decode(outputs)
        records = []
        answers: list[list[Detection]] = []
        for i, found in enumerate(frames):
            self.frames += 1
            request_id = request.request_id if len(frames) == 1 else f"{request.request_id or ''}#{i}"
            hard = self.policy.decide(found)
            source, reason, cloud_ref, degraded = "edge", "confident", None, False
            if hard is not None:
                one = {n: a[i : i + 1] for n, a in inputs.items()}
                outcome = ask_cloud(self.parts, one, hard, request_id or "")
                if outcome.outputs is not None:
                    found = self.decode(outcome.outputs)[0]
                    source, reason, cloud_ref = "cloud", hard, outcome.model
                    self.escalated += 1
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
            top = max(reported, key=lambda d: d.score, default=None)
            self.notify(
                record,
                model.ref,
                cloud_ref,
                label=top.label if top else "",
                confidence=float(top.score) if top else 0.0,
            )
        return TaskReply({**outputs, **_decoded(answers, records)}, records, model.card.version)

    def counters(self) -> dict[str, float]:
        return {
            "frames": float(self.frames),
            "frames_escalated": float(self.escalated),
            "escalations_denied_by_budget": float(self.parts.budget.denied),
        }


def _decoded(answers: list[list[Detection]], records: list[dict[str, object]]) -> dict[str, np.ndarray]:
    width = max((len(a) for a in answers), default=0)
    n = len(answers)
    boxes = np.zeros((n, width, 4), dtype=np.float32)
    scores = np.zeros((n, width), dtype=np.float32)
    labels = np.full((n, width), b"", dtype=object)
    for i, found in enumerate(answers):
        if found:
            boxes[i, : len(found)] = [d.box for d in found]
            scores[i, : len(found)] = [d.score for d in found]
            labels[i, : len(found)] = [d.label.encode() for d in found]
    return {
        "detection_boxes": boxes,
        "detection_scores": scores,
        "detection_labels": labels,
        "detection_count": np.array([len(a) for a in answers], dtype=np.int64),
        "detections": np.array([orjson.dumps(r["detections"]) for r in records], dtype=object),
        "source": np.array([str(r["source"]).encode() for r in records], dtype=object),
    }
