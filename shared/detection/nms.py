"""Greedy non-maximum suppression with bounded work: at most `max_candidates` boxes (the
highest scores) enter, at most `max_detections` leave, so a model that scores every anchor
high costs the same as one that does not.

Hard NMS keeps the best box of each cluster of overlapping boxes; weighted NMS (MediaPipe's
`WEIGHTED` algorithm, which its face detectors are configured with) keeps the cluster's best
score but replaces its box by the score-weighted mean of the cluster's boxes."""

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
    order, kept, _ = _clusters(
        boxes, scores, iou_threshold, score_threshold, max_candidates, max_detections, classes, False
    )
    return order[np.asarray(kept, dtype=np.int64)]


def weighted_non_max_suppression(
    boxes: np.ndarray,
    scores: np.ndarray,
    *,
    iou_threshold: float = 0.5,
    score_threshold: float = 0.0,
    max_candidates: int = 1000,
    max_detections: int = 100,
    classes: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(indices of each cluster's best box, [K, 4] merged boxes), best first: the kept boxes are
    those of non_max_suppression, each replaced by the score-weighted mean of the boxes it
    suppressed and itself."""
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float32).reshape(-1)
    order, kept, clusters = _clusters(
        boxes, scores, iou_threshold, score_threshold, max_candidates, max_detections, classes, True
    )
    merged = np.zeros((len(kept), 4), dtype=np.float32)
    for k, members in enumerate(clusters):
        w = scores[order[members]]
        merged[k] = (boxes[order[members]] * w[:, None]).sum(axis=0) / w.sum()
    return order[np.asarray(kept, dtype=np.int64)], merged


def _clusters(
    boxes: np.ndarray,
    scores: np.ndarray,
    iou_threshold: float,
    score_threshold: float,
    max_candidates: int,
    max_detections: int,
    classes: np.ndarray | None,
    with_members: bool,
) -> tuple[np.ndarray, list[int], list[np.ndarray]]:
    """(candidates in descending score order, the kept positions in that order, and with
    `with_members` per kept box the positions of its cluster: itself and the boxes it
    suppresses that no better box took)."""
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
        return order.astype(np.int64), [], []
    cand_boxes = boxes[order]
    if classes is not None:
        # Offsetting each class far apart makes one pass class-aware.
        cls = np.asarray(classes).reshape(-1)[order].astype(np.float32)
        span = float(np.abs(cand_boxes).max()) + 1.0
        cand_boxes = cand_boxes + (cls * 2 * span)[:, None]
    overlaps = iou_matrix(cand_boxes, cand_boxes)  # at most max_candidates^2
    suppressed = np.zeros(len(order), dtype=bool)
    kept: list[int] = []
    clusters: list[np.ndarray] = []
    for i in range(len(order)):
        if suppressed[i]:
            continue
        kept.append(i)
        taken = overlaps[i] > iou_threshold
        if with_members:
            members = taken & ~suppressed
            members[i] = True  # a box of zero area overlaps nothing, not even itself
            clusters.append(np.flatnonzero(members))
        if len(kept) >= max_detections:
            break
        suppressed |= taken
    return order, kept, clusters
