"""Detection quality: greedy matching at an IoU threshold, recall and precision."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgecascade.shared.detection.boxes import iou_matrix
from edgecascade.shared.detection.detections import Detection


@dataclass
class MatchCounts:
    """True positives (right class, IoU >= threshold, each object matched once), false
    positives and missed objects, summed over images."""

    tp: int = 0
    fp: int = 0
    fn: int = 0

    def add(self, other: MatchCounts) -> None:
        self.tp += other.tp
        self.fp += other.fp
        self.fn += other.fn

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0


def match(
    detections: list[Detection], gt_boxes: np.ndarray, gt_classes: np.ndarray, iou_threshold: float = 0.5
) -> MatchCounts:
    """Match one image's detections (highest score first) to its ground truth (xyxy boxes)."""
    order = sorted(detections, key=lambda d: -d.score)
    gt_boxes = np.asarray(gt_boxes, dtype=np.float32).reshape(-1, 4)
    taken = np.zeros(len(gt_boxes), dtype=bool)
    counts = MatchCounts()
    if order and len(gt_boxes):
        ious = iou_matrix(np.array([d.box for d in order], dtype=np.float32), gt_boxes)
    for i, det in enumerate(order):
        hit = -1
        if len(gt_boxes):
            candidates = np.flatnonzero(
                (ious[i] >= iou_threshold) & ~taken & (np.asarray(gt_classes) == det.class_id)
            )
            if len(candidates):
                hit = int(candidates[np.argmax(ious[i][candidates])])
        if hit >= 0:
            taken[hit] = True
            counts.tp += 1
        else:
            counts.fp += 1
    counts.fn = int((~taken).sum())
    return counts
