"""Box formats and IoU. Every box here is float32 `[..., 4]`; xyxy is the internal format.

xyxy     x_min, y_min, x_max, y_max      (Pascal VOC, ONNX NonMaxSuppression center_point_box=0)
yxyx     y_min, x_min, y_max, x_max      (TFLite SSD post-processing, normalized 0..1)
cxcywh   x_center, y_center, width, height (YOLO, ONNX center_point_box=1)
xywh     x_min, y_min, width, height     (COCO)
"""

from __future__ import annotations

import numpy as np

BOX_FORMATS = ("xyxy", "yxyx", "cxcywh", "xywh")


def to_xyxy(boxes: np.ndarray, fmt: str) -> np.ndarray:
    """Convert `[..., 4]` boxes in `fmt` to xyxy (a new float32 array)."""
    b = np.asarray(boxes, dtype=np.float32)
    if b.shape[-1:] != (4,):
        raise ValueError(f"boxes must have a last dimension of 4, got shape {list(b.shape)}")
    if fmt == "xyxy":
        return b.copy()
    if fmt == "yxyx":
        return b[..., [1, 0, 3, 2]]
    if fmt == "cxcywh":
        half = b[..., 2:] / 2
        return np.concatenate([b[..., :2] - half, b[..., :2] + half], axis=-1)
    if fmt == "xywh":
        return np.concatenate([b[..., :2], b[..., :2] + b[..., 2:]], axis=-1)
    raise ValueError(f"unknown box format {fmt!r}; known: {list(BOX_FORMATS)}")


def from_xyxy(boxes: np.ndarray, fmt: str) -> np.ndarray:
    """Convert xyxy `[..., 4]` boxes to `fmt`."""
    b = np.asarray(boxes, dtype=np.float32)
    if fmt == "xyxy":
        return b.copy()
    if fmt == "yxyx":
        return b[..., [1, 0, 3, 2]]
    if fmt == "cxcywh":
        return np.concatenate([(b[..., :2] + b[..., 2:]) / 2, b[..., 2:] - b[..., :2]], axis=-1)
    if fmt == "xywh":
        return np.concatenate([b[..., :2], b[..., 2:] - b[..., :2]], axis=-1)
    raise ValueError(f"unknown box format {fmt!r}; known: {list(BOX_FORMATS)}")


def area(boxes: np.ndarray) -> np.ndarray:
    """Area of xyxy boxes; inverted boxes count as empty."""
    wh = np.clip(boxes[..., 2:] - boxes[..., :2], 0, None)
    return wh[..., 0] * wh[..., 1]


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every xyxy box in `a` ([N, 4]) with every one in `b` ([M, 4]) -> [N, M]."""
    a = np.asarray(a, dtype=np.float32).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float32).reshape(-1, 4)
    top_left = np.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter_wh = np.clip(bottom_right - top_left, 0, None)
    inter = inter_wh[..., 0] * inter_wh[..., 1]
    union = area(a)[:, None] + area(b)[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0).astype(np.float32)
