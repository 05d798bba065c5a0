"""Anchor grids and the SSD-style decoding of a model's raw box offsets."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgecascade.shared.detection.boxes import from_xyxy


@dataclass(frozen=True)
class GridAnchors:
    """Square anchors of `size` pixels every `stride` pixels over an image of `image_size`
    (height, width), in row-major order: the order of a fully convolutional head's cells.

    `offset` is where the first anchor's top-left corner sits."""

    image_size: tuple[int, int]
    size: int
    stride: int
    offset: int = 0

    @property
    def grid(self) -> tuple[int, int]:
        h, w = self.image_size
        return (h - self.size - self.offset) // self.stride + 1, (
            w - self.size - self.offset
        ) // self.stride + 1

    def xyxy(self, normalized: bool = True) -> np.ndarray:
        """[rows*cols, 4] anchor boxes, normalized to 0..1 by default."""
        rows, cols = self.grid
        ys = self.offset + np.arange(rows, dtype=np.float32) * self.stride
        xs = self.offset + np.arange(cols, dtype=np.float32) * self.stride
        yy, xx = np.meshgrid(ys, xs, indexing="ij")
        boxes = np.stack([xx, yy, xx + self.size, yy + self.size], axis=-1).reshape(-1, 4)
        if normalized:
            h, w = self.image_size
            return (boxes / np.array([w, h, w, h], dtype=np.float32)).astype(np.float32)
        return boxes.astype(np.float32)

    def cxcywh(self, normalized: bool = True) -> np.ndarray:
        return from_xyxy(self.xyxy(normalized), "cxcywh")


def decode_deltas(
    deltas: np.ndarray, anchors_cxcywh: np.ndarray, variances: tuple[float, float] = (0.1, 0.2)
) -> np.ndarray:
    """SSD decoding: `deltas` [N, 4] = (dx, dy, dw, dh) relative to each anchor -> xyxy boxes.

    center = anchor_center + d_xy * variance0 * anchor_wh; wh = anchor_wh * exp(d_wh * variance1)
    (the exponent is clipped so a wild output cannot overflow)."""
    d = np.asarray(deltas, dtype=np.float32).reshape(-1, 4)
    a = np.asarray(anchors_cxcywh, dtype=np.float32).reshape(-1, 4)
    if len(d) != len(a):
        raise ValueError(f"{len(d)} box offsets but {len(a)} anchors")
    centers = a[:, :2] + d[:, :2] * variances[0] * a[:, 2:]
    sizes = a[:, 2:] * np.exp(np.clip(d[:, 2:] * variances[1], -8.0, 8.0))
    return np.concatenate([centers - sizes / 2, centers + sizes / 2], axis=-1)


def encode_deltas(
    boxes_xyxy: np.ndarray, anchors_cxcywh: np.ndarray, variances: tuple[float, float] = (0.1, 0.2)
) -> np.ndarray:
    """The inverse of `decode_deltas`: training targets for a box regressor."""
    b = from_xyxy(boxes_xyxy, "cxcywh")
    a = np.asarray(anchors_cxcywh, dtype=np.float32)
    dxy = (b[:, :2] - a[:, :2]) / (a[:, 2:] * variances[0])
    dwh = np.log(np.maximum(b[:, 2:], 1e-6) / a[:, 2:]) / variances[1]
    return np.concatenate([dxy, dwh], axis=-1).astype(np.float32)
