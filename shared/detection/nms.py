"""Greedy non-maximum suppression with bounded work: at most `max_candidates` boxes (the
highest scores) enter, at most `max_detections` leave, so a model that scores every anchor
high costs the same as one that does not."""

from __future__ import annotations

import numpy as np

from edgecascade.shared.detection.boxes import iou_matrix


def non_max_suppression(
    boxes: np.ndarray,
    scores: np.ndarray,
    *,
    iou_threshold: float = 0.5,
    score_threshold: float = 0.0,
    max_candidates: int = 1000,
    max_detections: int = 100,
    classes: np.ndarray | None = None,
) -> np.ndarray:
    """Indices of the kept xyxy `boxes` ([N, 4]) in descending score order.

    With `classes` ([N] ints) boxes of different classes never suppress each other."""
    scores = np.asarray(scores, dtype=np.float32).reshape(-1)
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    if len(scores) != len(boxes):
        raise ValueError(f"{len(boxes)} boxes but {len(scores)} scores")
    candidates = np.flatnonzero(scores >= score_threshold)
    if len(candidates) > max_candidates:
        top = np.argpartition(-scores[candidates], max_candidates - 1)[:max_candidates]
        candidates = candidates[top]
    order = candidates[np.argsort(-scores[candidates], kind="stable")]
    if len(order) == 0:
        return np.zeros(0, dtype=np.int64)
    cand_boxes = boxes[order]
    if classes is not None:
        # Offsetting each class far apart makes one pass class-aware.
        cls = np.asarray(classes).reshape(-1)[order].astype(np.float32)
        span = float(np.abs(cand_boxes).max()) + 1.0
        cand_boxes = cand_boxes + (cls * 2 * span)[:, None]
    overlaps = iou_matrix(cand_boxes, cand_boxes)  # at most max_candidates^2
    suppressed = np.zeros(len(order), dtype=bool)
    keep: list[int] = []
    for i in range(len(order)):
        if suppressed[i]:
            continue
        keep.append(i)
        if len(keep) >= max_detections:
            break
        suppressed |= overlaps[i] > iou_threshold
    return order[np.asarray(keep, dtype=np.int64)]
