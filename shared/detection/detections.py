"""Detections as callers see them, from either kind of detector output."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgecascade.shared.detection.anchors import card_anchors, decode_center_size, decode_deltas
from edgecascade.shared.detection.boxes import to_xyxy
from edgecascade.shared.detection.nms import non_max_suppression, weighted_non_max_suppression
from edgecascade.shared.model_card import AnchorDecoding

#: Logits are clipped here before the sigmoid, as MediaPipe does, so exp() cannot overflow float32.
_LOGIT_LIMIT = 80.0


@dataclass(frozen=True)
class Detection:
    """One object: class index, score 0..1, box as normalized xyxy."""

    class_id: int
    score: float
    box: tuple[float, float, float, float]

    def label(self, labels: list[str] | None) -> str:
        if labels and 0 <= self.class_id < len(labels):
            return labels[self.class_id]
        return str(self.class_id)


def from_ssd_outputs(
    boxes: np.ndarray,
    classes: np.ndarray,
    scores: np.ndarray,
    count: np.ndarray | None = None,
    *,
    box_format: str = "yxyx",
    score_threshold: float = 0.0,
) -> list[Detection]:
    """Detections of one image from post-processed outputs (TFLite SSD style): boxes [1, N, 4],
    classes [1, N], scores [1, N] and optionally count [1] (only the first `count` are valid)."""
    b = to_xyxy(np.asarray(boxes).reshape(-1, 4), box_format)
    c = np.asarray(classes).reshape(-1)
    s = np.asarray(scores, dtype=np.float32).reshape(-1)
    n = min(len(b), len(c), len(s))
    if count is not None:
        n = min(n, max(0, int(np.asarray(count).reshape(-1)[0])))
    return [
        Detection(int(c[i]), float(s[i]), tuple(float(v) for v in b[i]))  # type: ignore[arg-type]
        for i in range(n)
        if s[i] >= score_threshold
    ]


def from_raw_outputs(
    class_scores: np.ndarray,
    deltas: np.ndarray,
    anchors_cxcywh: np.ndarray,
    *,
    background: int | None = 0,
    score_threshold: float = 0.3,
    iou_threshold: float = 0.5,
    max_detections: int = 20,
    class_aware: bool = False,
) -> list[Detection]:
    """Detections of one image from raw anchor outputs: per-anchor class scores [1, A, C]
    (probabilities; column `background` is "no object") and box offsets [1, A, 4], decoded
    against `anchors_cxcywh` and reduced by NMS (across classes unless `class_aware`, since two
    classes on one object are one wrong answer). Class ids skip the background."""
    s = np.asarray(class_scores, dtype=np.float32).reshape(len(anchors_cxcywh), -1)
    boxes = decode_deltas(deltas, anchors_cxcywh)
    return _reduce(s, boxes, background, score_threshold, iou_threshold, max_detections, class_aware)


def from_anchor_outputs(
    class_scores: np.ndarray, raw_boxes: np.ndarray, spec: AnchorDecoding, *, score_threshold: float
) -> list[Detection]:
    """Detections of one image from raw anchor outputs as a card's `detection.anchors` describes
    them: scores [1, A, C] (probabilities or logits), boxes [1, A, >=4] by its box coding."""
    return _as_detections(*anchor_kept(class_scores, raw_boxes, spec, score_threshold=score_threshold))


def anchor_kept(
    class_scores: np.ndarray, raw_boxes: np.ndarray, spec: AnchorDecoding, *, score_threshold: float
) -> Kept:
    """`from_anchor_outputs` as (class ids, scores, xyxy boxes) lists, best first: for a caller
    that builds its own detection objects (the agent's decoder) without a Detection each."""
    anchors = card_anchors(spec)
    s = np.asarray(class_scores, dtype=np.float32).reshape(len(anchors), -1)
    if spec.score_activation == "sigmoid":
        s = (1.0 / (1.0 + np.exp(-np.clip(s, -_LOGIT_LIMIT, _LOGIT_LIMIT)))).astype(np.float32)
    if spec.box_coding == "center_size":
        boxes = decode_center_size(raw_boxes, anchors, spec.image_size)
    else:
        boxes = decode_deltas(raw_boxes, anchors)
    return _kept(
        s,
        boxes,
        spec.background_class,
        score_threshold,
        spec.nms_iou,
        spec.max_detections,
        False,
        weighted=spec.nms == "weighted",
    )


#: Kept detections as plain lists: class ids, scores, boxes (x_min, y_min, x_max, y_max).
Kept = tuple[list[int], list[float], list[list[float]]]


def _reduce(
    s: np.ndarray,
    boxes: np.ndarray,
    background: int | None,
    score_threshold: float,
    iou_threshold: float,
    max_detections: int,
    class_aware: bool,
) -> list[Detection]:
    return _as_detections(
        *_kept(s, boxes, background, score_threshold, iou_threshold, max_detections, class_aware)
    )


def _kept(
    s: np.ndarray,
    boxes: np.ndarray,
    background: int | None,
    score_threshold: float,
    iou_threshold: float,
    max_detections: int,
    class_aware: bool,
    *,
    weighted: bool = False,
) -> Kept:
    if background is not None:
        s = np.delete(s, background, axis=1)
    best = s.argmax(axis=1)
    best_score = s[np.arange(len(s)), best]
    classes = best if class_aware else None
    if weighted:
        keep, merged = weighted_non_max_suppression(
            boxes,
            best_score,
            iou_threshold=iou_threshold,
            score_threshold=score_threshold,
            max_detections=max_detections,
            classes=classes,
        )
        return best[keep].tolist(), best_score[keep].tolist(), merged.tolist()
    keep = non_max_suppression(
        boxes,
        best_score,
        iou_threshold=iou_threshold,
        score_threshold=score_threshold,
        max_detections=max_detections,
        classes=classes,
    )
    # One .tolist() per array: the same Python ints and floats as int()/float() per value.
    return best[keep].tolist(), best_score[keep].tolist(), boxes[keep].tolist()


def _as_detections(classes: list[int], scores: list[float], boxes: list[list[float]]) -> list[Detection]:
    return [
        Detection(c, score, (b[0], b[1], b[2], b[3]))
        for c, score, b in zip(classes, scores, boxes, strict=True)
    ]
