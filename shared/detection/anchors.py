"""Anchor grids and the decoding of a model's raw boxes against them: square grid anchors with
SSD offsets (our detectors), and MediaPipe's SSD anchor generator with its centre/size boxes
(BlazeFace, palm and pose detectors), plus the standard configurations `models import` tries."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from edgecascade.shared.detection.boxes import from_xyxy
from edgecascade.shared.model_card import AnchorDecoding


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


@dataclass(frozen=True)
class SsdAnchors:
    """MediaPipe's SSD anchor generator (`SsdAnchorsCalculator`) with fixed-size anchors: layer
    k has a feature map of ceil(image / strides[k]) cells; consecutive layers of one stride share
    a map, each cell holding `per_layer` anchors per such layer, in row-major cell order, centred
    at (cell + `cell_offset`) / map size. Every anchor is the whole image (1 x 1 normalized): the
    model's boxes are sizes, not scales (`decode_center_size`)."""

    image_size: tuple[int, int]
    strides: tuple[int, ...]
    per_layer: int = 2
    cell_offset: float = 0.5

    def layers(self) -> list[tuple[int, int]]:
        """(stride, anchors per cell) for each map, in output order."""
        out: list[tuple[int, int]] = []
        for stride in self.strides:
            if out and out[-1][0] == stride:
                out[-1] = (stride, out[-1][1] + self.per_layer)
            else:
                out.append((stride, self.per_layer))
        return out

    def count(self) -> int:
        h, w = self.image_size
        return sum(math.ceil(h / s) * math.ceil(w / s) * n for s, n in self.layers())

    def cxcywh(self) -> np.ndarray:
        """[count, 4] anchors, normalized (centres in 0..1, width and height 1)."""
        h, w = self.image_size
        parts = []
        for stride, n in self.layers():
            rows, cols = math.ceil(h / stride), math.ceil(w / stride)
            yy, xx = np.meshgrid(
                (np.arange(rows) + self.cell_offset) / rows,
                (np.arange(cols) + self.cell_offset) / cols,
                indexing="ij",
            )
            centres = np.repeat(np.stack([xx, yy], axis=-1).reshape(-1, 2), n, axis=0)
            parts.append(np.concatenate([centres, np.ones_like(centres)], axis=-1))
        return np.concatenate(parts).astype(np.float32)


#: MediaPipe's SSD anchor configurations (strides, anchors per cell per layer), from its
#: detector graphs: BlazeFace short range and front (128 px), back camera (256 px), full range
#: (192 px, one anchor per cell), palm (192/256 px) and pose (224 px) detection.
STANDARD_SSD_CONFIGS: tuple[tuple[tuple[int, ...], int], ...] = (
    ((8, 16, 16, 16), 2),
    ((16, 32, 32, 32), 2),
    ((4,), 1),
    ((8, 16, 32, 32, 32), 2),
)


def matching_ssd_configs(image_size: tuple[int, int], anchors: int) -> list[SsdAnchors]:
    """The standard SSD configurations that make exactly `anchors` anchors for `image_size`."""
    found = []
    for strides, per_layer in STANDARD_SSD_CONFIGS:
        candidate = SsdAnchors(image_size, strides, per_layer)
        if candidate.count() == anchors:
            found.append(candidate)
    return found


def decode_center_size(
    raw: np.ndarray, anchors_cxcywh: np.ndarray, image_size: tuple[int, int]
) -> np.ndarray:
    """MediaPipe's box coding (`TensorsToDetectionsCalculator`): the first 4 values per anchor
    are (x_centre, y_centre, width, height) in input pixels, the centre relative to the anchor's;
    later values (keypoints) are ignored. -> normalized xyxy boxes."""
    h, w = image_size
    a = np.asarray(anchors_cxcywh, dtype=np.float32).reshape(-1, 4)
    r = np.asarray(raw, dtype=np.float32).reshape(len(a), -1)[:, :4]
    scale = np.array([w, h, w, h], dtype=np.float32)
    b = r / scale
    centres = a[:, :2] + b[:, :2] * a[:, 2:]
    sizes = b[:, 2:] * a[:, 2:]
    return np.concatenate([centres - sizes / 2, centres + sizes / 2], axis=-1)


def card_anchors(spec: AnchorDecoding) -> np.ndarray:
    """The [A, 4] normalized cxcywh anchors a card's `detection.anchors` describes (made once
    per distinct spec: read on every request)."""
    return _anchors(spec.kind, spec.image_size, spec.size, spec.stride, spec.offset, tuple(spec.strides),
                    spec.per_layer, spec.cell_offset)  # fmt: skip


@functools.lru_cache(maxsize=16)
def _anchors(
    kind: str,
    image_size: tuple[int, int],
    size: int | None,
    stride: int | None,
    offset: int,
    strides: tuple[int, ...],
    per_layer: int,
    cell_offset: float,
) -> np.ndarray:
    if kind == "ssd":
        out = SsdAnchors(image_size, strides, per_layer, cell_offset).cxcywh()
    else:
        assert size is not None and stride is not None  # the card's validator checks
        out = GridAnchors(image_size, size, stride, offset).cxcywh()
    out.setflags(write=False)
    return out
