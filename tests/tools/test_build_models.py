"""The model builders: the canvases, the MLP-as-convolution export, and the hand-written TFLite
files (rebuilt here byte for byte)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from edgecascade.shared.backends import load_backend
from edgecascade.shared.detection import iou_matrix
from edgecascade.tools import build_detector as det
from edgecascade.tools import build_models_tflite
from edgecascade.tools.build_detector_data import MAX_SIZE, MIN_SIZE, canvas_splits, make_canvases


@pytest.mark.parametrize(
    ("name", "build"),
    [
        ("dynamic_add_mul.tflite", build_models_tflite.dynamic_add_mul),
        ("int8_requantize.tflite", build_models_tflite.int8_requantize),
        ("reshape_needs_resize.tflite", build_models_tflite.reshape_needs_resize),
    ],
)
def test_handwritten_tflite_fixtures_rebuild_byte_for_byte(models_dir: Path, name: str, build) -> None:  # type: ignore[no-untyped-def]
    assert build() == (models_dir / name).read_bytes()


def test_tflite_detectors_rebuild_byte_for_byte_from_the_onnx_weights(models_dir: Path) -> None:
    source = models_dir / "digit_detector_fp32.onnx"
    assert (
        build_models_tflite.detector_from_onnx(source)
        == (models_dir / "digit_detector_fp32.tflite").read_bytes()
    )
    train, _ = canvas_splits(train_count=200, held_count=1)
    rebuilt = build_models_tflite.detector_int8_from_onnx(source, train.images)
    assert rebuilt == (models_dir / "digit_detector_int8.tflite").read_bytes()


def test_canvases_hold_1_to_3_separate_real_digits(digits_split) -> None:
    train, _ = digits_split
    data = make_canvases(train.images, train.labels, 200, seed=5)
    again = make_canvases(train.images, train.labels, 200, seed=5)
    np.testing.assert_array_equal(data.images, again.images)  # deterministic
    assert data.images.shape == (200, 1, 64, 64) and 0.0 <= data.images.min() and data.images.max() <= 1.0
    counts = [len(b) for b in data.boxes]
    assert min(counts) == 1 and max(counts) == 3
    for boxes, classes in zip(data.boxes, data.classes, strict=True):
        sizes = (boxes[:, 2] - boxes[:, 0]) * 64
        assert ((sizes >= MIN_SIZE) & (sizes <= MAX_SIZE)).all()
        assert ((boxes >= 0) & (boxes <= 1)).all() and set(classes.tolist()) <= set(range(10))
        overlaps = iou_matrix(boxes, boxes) - np.eye(len(boxes))
        assert (overlaps <= 0).all()


def test_held_out_canvases_use_only_held_out_digits() -> None:
    train, held = canvas_splits(train_count=50, held_count=50)
    assert not any(np.array_equal(a, b) for a in train.images[:10] for b in held.images[:10])


@pytest.mark.parametrize("pooled", [True, False])
def test_exported_convolutions_compute_the_trained_mlps(tmp_path: Path, pooled: bool) -> None:
    train, held = canvas_splits(train_count=40, held_count=5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a few iterations: convergence is not the point
        heads = det.train_heads(train, pooled=pooled, cls_hidden=(8,), reg_hidden=(4,))
    path = tmp_path / "raw.onnx"
    det.export_raw(heads, path)
    backend = load_backend(path)
    out = backend.predict({"image": held.images})
    feats = det.patch_features(held.images, pooled).reshape(-1, (64 if pooled else 256))
    expected_scores = heads.classifier.predict_proba(feats).reshape(len(held.images), det.N_ANCHORS, -1)
    expected_deltas = heads.regressor.predict(feats).reshape(len(held.images), det.N_ANCHORS, 4)
    np.testing.assert_allclose(out["scores"], expected_scores, atol=2e-5)
    np.testing.assert_allclose(out["deltas"], expected_deltas, atol=2e-4)
    backend.close()
