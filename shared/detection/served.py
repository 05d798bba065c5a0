"""The standard decoded detection outputs, named once: what the agent serves beside a
detector's own outputs and what `cloud serve` adds for a model whose card has a detection
section. A device asks a cloud detector for these by name, so the cloud model's own output
names and format (anchors, SSD post-processing, another input size) never reach the device.

    detection_boxes   FP32  [N, D, 4]  x_min, y_min, x_max, y_max (0..1 when normalized)
    detection_scores  FP32  [N, D]     best first; rows padded with 0 past the count
    detection_classes INT64 [N, D]     class index (label_offset applied), -1 as padding
    detection_labels  BYTES [N, D]     class name (b"" as padding)
    detection_count   INT64 [N]        valid detections per example
"""

from __future__ import annotations

import numpy as np

from edgecascade.shared.detection.decoders import LabeledDetection
from edgecascade.shared.errors import InputError

BOXES, SCORES, CLASSES, LABELS, COUNT = (
    "detection_boxes",
    "detection_scores",
    "detection_classes",
    "detection_labels",
    "detection_count",
)
#: (name, V2 datatype, shape) of each standard output, in the order they are served.
SERVED_OUTPUTS: tuple[tuple[str, str, tuple[int, ...]], ...] = (
    (BOXES, "FP32", (-1, -1, 4)),
    (SCORES, "FP32", (-1, -1)),
    (CLASSES, "INT64", (-1, -1)),
    (LABELS, "BYTES", (-1, -1)),
    (COUNT, "INT64", (-1,)),
)
SERVED_NAMES: tuple[str, ...] = tuple(name for name, _, _ in SERVED_OUTPUTS)
#: What a reader needs to rebuild the detections (labels are optional: classes stand in).
REQUIRED_NAMES = (BOXES, SCORES, CLASSES, COUNT)


def to_served(frames: list[list[LabeledDetection]]) -> dict[str, np.ndarray]:
    """One list of detections per example -> the standard outputs, padded to the longest list."""
    if len(frames) == 1 and frames[0]:
        return _one_frame(frames[0])
    n, width = len(frames), max((len(f) for f in frames), default=0)
    boxes = np.zeros((n, width, 4), dtype=np.float32)
    scores = np.zeros((n, width), dtype=np.float32)
    classes = np.full((n, width), -1, dtype=np.int64)
    labels = np.full((n, width), b"", dtype=object)
    for i, found in enumerate(frames):
        if found:
            k = len(found)
            boxes[i, :k] = [d.box for d in found]
            scores[i, :k] = [d.score for d in found]
            classes[i, :k] = [d.class_index for d in found]
            labels[i, :k] = [d.label.encode() for d in found]
    count = np.array([len(f) for f in frames], dtype=np.int64)
    return {BOXES: boxes, SCORES: scores, CLASSES: classes, LABELS: labels, COUNT: count}


def _one_frame(found: list[LabeledDetection]) -> dict[str, np.ndarray]:
    """`to_served` of a single non-empty frame (every device request): no padding, so each
    output is one array built from a list, a few µs less per request than fill-and-assign."""
    return {
        BOXES: np.array([[d.box for d in found]], dtype=np.float32),
        SCORES: np.array([[d.score for d in found]], dtype=np.float32),
        CLASSES: np.array([[d.class_index for d in found]], dtype=np.int64),
        LABELS: np.array([[d.label.encode() for d in found]], dtype=object),  # bytes stay items
        COUNT: np.array([len(found)], dtype=np.int64),
    }


def serves_decoded(outputs: dict[str, np.ndarray]) -> bool:
    """True when `outputs` hold the standard decoded outputs."""
    return all(name in outputs for name in REQUIRED_NAMES)


def from_served(outputs: dict[str, np.ndarray]) -> list[list[LabeledDetection]]:
    """The standard outputs (from a cloud answer, say) -> one list of detections per example.
    Raises InputError for outputs that are missing or of the wrong shapes."""
    try:
        boxes = np.asarray(outputs[BOXES], dtype=np.float32)
        scores = np.asarray(outputs[SCORES], dtype=np.float32)
        classes = np.asarray(outputs[CLASSES]).astype(np.int64)
        count = np.asarray(outputs[COUNT]).reshape(-1).astype(np.int64)
    except KeyError as exc:
        raise InputError(f"decoded detection outputs lack {exc}; expected {list(REQUIRED_NAMES)}") from None
    labels = outputs.get(LABELS)
    if boxes.ndim != 3 or boxes.shape[-1:] != (4,) or scores.shape != boxes.shape[:2]:
        raise InputError(
            f"decoded detections have boxes {list(boxes.shape)} and scores {list(scores.shape)}; "
            "expected [N, D, 4] and [N, D]"
        )
    if classes.shape != scores.shape or count.shape != scores.shape[:1]:
        raise InputError(
            f"decoded detections have classes {list(classes.shape)} and count {list(count.shape)}; "
            f"expected {list(scores.shape)} and [{scores.shape[0]}]"
        )
    names = np.asarray(labels, dtype=object).reshape(scores.shape) if labels is not None else None
    frames = []
    for i in range(scores.shape[0]):
        k = int(min(max(count[i], 0), scores.shape[1]))
        frames.append(
            [
                LabeledDetection(
                    _text(names[i, j]) if names is not None else str(c),
                    c,
                    s,
                    (b[0], b[1], b[2], b[3]),
                )
                for j, (c, s, b) in enumerate(
                    zip(classes[i, :k].tolist(), scores[i, :k].tolist(), boxes[i, :k].tolist(), strict=True)
                )
            ]
        )
    return frames


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
