"""Labelled detections (label, score, box) from a detector's outputs, by the card's
`detection.format`: one decoder per format, registered in DECODERS ("module:function", imported
when a card names it). SSD-style post-processed outputs (boxes, classes, scores, count) and raw
anchor outputs reduced by non-maximum suppression. The agent and the cloud both decode here, so
an edge detector and a cloud detector of different formats give one kind of answer.

A decoder is `(outputs by name, DetectionCard, labels) -> one list of LabeledDetection per
example, best first`."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from edgecascade.shared.detection.anchors import card_anchors
from edgecascade.shared.detection.boxes import to_xyxy
from edgecascade.shared.detection.detections import anchor_kept
from edgecascade.shared.errors import InputError, ModelError
from edgecascade.shared.model_card import DetectionCard


@dataclass(frozen=True, slots=True)
class LabeledDetection:
    """One object: `box` is (x_min, y_min, x_max, y_max), in the card's units (0..1 when normalized)."""

    label: str
    class_index: int
    score: float
    box: tuple[float, float, float, float]

    def to_dict(self) -> dict[str, object]:
        return {
            "label": self.label,
            "class_index": self.class_index,
            "score": self.score,
            "box": list(self.box),
        }


def decode_postprocessed(
    outputs: dict[str, np.ndarray], card: DetectionCard, labels: list[str]
) -> list[list[LabeledDetection]]:
    """One list of detections per example, best first, from SSD-style post-processed outputs."""
    try:
        boxes = np.asarray(outputs[card.boxes_output], dtype=np.float32)
        scores = np.asarray(outputs[card.scores_output], dtype=np.float32)
        classes = np.asarray(outputs[card.classes_output]) if card.classes_output else np.zeros(scores.shape)
    except KeyError as exc:
        raise InputError(f"detector outputs lack {exc}; the card's detection section names it") from None
    if boxes.ndim != 3 or boxes.shape[-1] != 4 or scores.shape != boxes.shape[:2]:
        raise InputError(
            f"detector outputs have boxes {list(boxes.shape)} and scores {list(scores.shape)}; "
            "expected [N, D, 4] and [N, D]"
        )
    counts = (
        np.asarray(outputs[card.count_output]).reshape(-1).astype(np.int64)
        if card.count_output
        else np.full(scores.shape[0], scores.shape[1])
    )
    xyxy = to_xyxy(boxes, card.box_format)
    result = []
    # Vectorised per frame: keep valid, finite scores above the floor, best first; one
    # .tolist() per array instead of a numpy scalar per value (this runs on every frame).
    for i in range(scores.shape[0]):
        n = int(min(max(counts[i], 0), scores.shape[1]))
        row = scores[i, :n]
        keep = np.flatnonzero(np.isfinite(row) & (row >= card.min_score))
        order = keep[np.argsort(-row[keep], kind="stable")]
        indices = (classes[i, order].astype(np.int64) + card.label_offset).tolist()
        found = [
            LabeledDetection(
                labels[c] if 0 <= c < len(labels) else str(c), c, score, (b[0], b[1], b[2], b[3])
            )
            for c, score, b in zip(indices, row[order].tolist(), xyxy[i, order].tolist(), strict=True)
        ]
        result.append(found)
    return result


def decode_anchors(
    outputs: dict[str, np.ndarray], card: DetectionCard, labels: list[str]
) -> list[list[LabeledDetection]]:
    """One list of detections per example, best first, from raw per-anchor class scores and
    boxes, decoded against the card's anchors and reduced by bounded NMS."""
    spec = card.anchors
    if spec is None:
        raise InputError("detection.format = anchors needs detection.anchors in the card")
    try:
        scores = np.asarray(outputs[card.scores_output], dtype=np.float32)
        deltas = np.asarray(outputs[card.boxes_output], dtype=np.float32)
    except KeyError as exc:
        raise InputError(f"detector outputs lack {exc}; the card's detection section names it") from None
    anchors = card_anchors(spec)
    width = "4" if spec.box_coding == "offsets" else ">=4"
    if (
        scores.ndim != 3
        or deltas.ndim != 3
        or deltas.shape[:2] != scores.shape[:2]
        or not (deltas.shape[2] == 4 or (deltas.shape[2] > 4 and spec.box_coding == "center_size"))
        or scores.shape[1] != len(anchors)
    ):
        raise InputError(
            f"detector outputs have scores {list(scores.shape)} and boxes {list(deltas.shape)}; expected "
            f"[N, {len(anchors)}, classes] and [N, {len(anchors)}, {width}] for the card's anchors"
        )
    result = []
    offset, known = card.label_offset, len(labels)
    for i in range(scores.shape[0]):
        # Straight to labelled detections: no intermediate Detection per object (every frame).
        classes, kept, boxes = anchor_kept(
            scores[i : i + 1], deltas[i : i + 1], spec, score_threshold=card.min_score
        )
        result.append(
            [
                LabeledDetection(
                    labels[c] if 0 <= (c := k + offset) < known else str(c),
                    c,
                    score,
                    (b[0], b[1], b[2], b[3]),
                )
                for k, score, b in zip(classes, kept, boxes, strict=True)
            ]
        )
    return result


Decoder = Callable[[dict[str, np.ndarray], DetectionCard, list[str]], list[list[LabeledDetection]]]

DECODERS: dict[str, str] = {
    "postprocessed": "edgecascade.shared.detection.decoders:decode_postprocessed",
    "anchors": "edgecascade.shared.detection.decoders:decode_anchors",
}


def decoder_for(fmt: str) -> Decoder:
    """The decoder of a card's detection format; ModelError naming the known formats."""
    target = DECODERS.get(fmt)
    if target is None:
        raise ModelError(f"unknown detection format {fmt!r}; known formats: {', '.join(DECODERS)}")
    module_name, func_name = target.split(":")
    decoder: Decoder = getattr(importlib.import_module(module_name), func_name)
    return decoder
