"""The TFLite backend on tflite-runtime 2.14, run by tools/dev.py in the numpy<2 environment."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgecascade.shared.backends import BackendOptions, load_backend
from edgecascade.shared.model_card import ModelCard

pytestmark = pytest.mark.tflite_runtime


def test_int8_tflite_on_tflite_runtime(models_dir: Path, digits_split) -> None:
    assert np.__version__.startswith("1."), "this environment exists to prove numpy<2 + tflite-runtime"
    _, held = digits_split
    path = models_dir / "digits_edge_int8.tflite"
    backend = load_backend(path, BackendOptions(extra={"tflite_runtime": "tflite_runtime"}))
    assert backend.runtime == "tflite_runtime"  # type: ignore[attr-defined]
    probs = backend.predict({"input": held.features})["output_0"]
    accuracy = float((probs.argmax(axis=1) == held.labels).mean())
    assert abs(accuracy - ModelCard.load_for(path).heldout_accuracy) <= 0.005
    backend.close()


def test_dynamic_and_resize_first_models_on_tflite_runtime(models_dir: Path, tmp_path: Path) -> None:
    from edgecascade.shared.backends import TFLiteDelegate

    pin = {"tflite_runtime": "tflite_runtime"}
    dyn = load_backend(models_dir / "dynamic_add_mul.tflite", BackendOptions(extra=pin))
    for shape in [(1, 2, 3), (3, 1, 5)]:
        x = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
        out = dyn.predict({"x": x})
        np.testing.assert_array_equal(out["sum"], x + x)
        np.testing.assert_array_equal(out["product"], x * x)
    dyn.close()
    late = load_backend(models_dir / "reshape_needs_resize.tflite", BackendOptions(extra=pin))
    assert late.predict({"x": np.arange(4, dtype=np.float32)[None]})["y"].tolist() == [[0, 1], [2, 3]]
    late.close()
    raw = load_backend(
        models_dir / "int8_requantize.tflite",
        BackendOptions(
            extra=pin,
            dequantize=False,
            tflite_delegates=(TFLiteDelegate("external", str(tmp_path / "absent.so")),),
        ),
    )
    assert raw.signature.accelerator == "default"  # the absent delegate fell back
    assert raw.predict({"x": np.array([[-3, -1]], np.int8)})["y"].tolist() == [[128, 132]]
    raw.close()


def test_int8_detector_on_tflite_runtime(models_dir: Path) -> None:
    import json

    from edgecascade.tools import build_detector as det
    from edgecascade.tools.build_detector_data import canvas_splits

    _, held = canvas_splits(train_count=1, held_count=400)
    path = models_dir / "digit_detector_int8.tflite"
    backend = load_backend(path, BackendOptions(extra={"tflite_runtime": "tflite_runtime"}))
    images = held.images.transpose(0, 2, 3, 1)
    dets = [det.edge_detections(backend.predict({"image": images[i : i + 1]})) for i in range(len(images))]
    counts = det.evaluate(dets, held)
    metrics = json.loads(path.with_name(path.name + ".io.json").read_text())["metrics"]
    # another runtime's int8 kernels may round a few values differently
    assert abs(counts.recall - metrics["recall_iou50"]) <= 0.01
    assert abs(counts.precision - metrics["precision_iou50"]) <= 0.01
    backend.close()
