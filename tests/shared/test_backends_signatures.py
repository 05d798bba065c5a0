"""Any signature through shared/backends: several inputs and outputs, dynamic dimensions
anywhere, int/bool/string inputs, quantized tensors, state pairs, and a warm-up that cannot
break a good model. Every model here is a committed fixture built by tools/ (or, for dtype
corner cases, a graph made in the test) run by the real runtimes."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from edgecascade.shared.backends import BackendOptions, load_backend
from edgecascade.shared.errors import ModelLoadError, SignatureMismatchError
from edgecascade.shared.model_card import ModelCard


def _bare_ort(path: Path, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"]).run(None, feed)


def test_tflite_with_every_dimension_dynamic_resizes_on_any_change(models_dir: Path) -> None:
    from ai_edge_litert.interpreter import Interpreter

    path = models_dir / "dynamic_add_mul.tflite"
    backend = load_backend(path)
    sig = backend.signature
    assert sig.inputs[0].shape == (-1, -1, -1)
    assert [(o.name, o.shape) for o in sig.outputs] == [("sum", (-1, -1, -1)), ("product", (-1, -1, -1))]
    bare = Interpreter(model_path=str(path), num_threads=1)
    rng = np.random.default_rng(0)
    for shape in [(1, 2, 3), (1, 2, 7), (4, 2, 7), (2, 9, 1), (2, 9, 1), (1, 1, 1)]:
        x = rng.normal(size=shape).astype(np.float32)
        ours = backend.predict({"x": x})
        bare.resize_tensor_input(0, list(shape), strict=False)
        bare.allocate_tensors()
        bare.set_tensor(0, x)
        bare.invoke()
        assert ours["sum"].shape == shape
        for out in bare.get_output_details():
            np.testing.assert_array_equal(ours[out["name"]], bare.get_tensor(out["index"]))
    with pytest.raises(SignatureMismatchError, match=r"x: float32\[N, \?, \?\]"):
        backend.predict({"x": np.zeros((2, 3), np.float32)})
    backend.close()


def test_int8_in_uint8_out_tflite_raw_and_dequantized(models_dir: Path) -> None:
    from ai_edge_litert.interpreter import Interpreter

    path = models_dir / "int8_requantize.tflite"
    raw = load_backend(path, BackendOptions(dequantize=False))
    assert [(t.dtype, t.quantization) for t in raw.signature.inputs] == [("int8", (0.5, -3))]
    assert [(t.dtype, t.quantization) for t in raw.signature.outputs] == [("uint8", (0.25, 128))]
    q = np.array([[-128, -7, -3, 0, 5, 127]], np.int8)
    bare = Interpreter(model_path=str(path))
    bare.resize_tensor_input(0, [1, 6], strict=False)
    bare.allocate_tensors()
    bare.set_tensor(0, q)
    bare.invoke()
    expected = bare.get_tensor(bare.get_output_details()[0]["index"])
    ours = raw.predict({"x": q})["y"]
    assert ours.dtype == np.uint8
    np.testing.assert_array_equal(ours, expected)
    # dequantized (the default): float in, float out, through the model's own scales
    floats = load_backend(path)
    assert floats.signature.inputs[0].dtype == "float32"
    x = (q.astype(np.float32) + 3) * 0.5
    out = floats.predict({"x": x})["y"]
    np.testing.assert_array_equal(out, (expected.astype(np.float32) - 128) * np.float32(0.25))
    raw.close()
    floats.close()


def test_digits_int8_tflite_raw_outputs_equal_the_bare_interpreter(models_dir: Path, digits_split) -> None:
    from ai_edge_litert.interpreter import Interpreter

    _, held = digits_split
    path = models_dir / "digits_edge_int8.tflite"
    raw = load_backend(path, BackendOptions(dequantize=False))
    (spec,) = raw.signature.inputs
    scale, zp = spec.quantization  # type: ignore[misc]
    q = np.clip(np.rint(held.features[:5] / scale + zp), -128, 127).astype(np.int8)
    bare = Interpreter(model_path=str(path), num_threads=1)
    bare.resize_tensor_input(bare.get_input_details()[0]["index"], [5, 64])
    bare.allocate_tensors()
    bare.set_tensor(bare.get_input_details()[0]["index"], q)
    bare.invoke()
    expected = bare.get_tensor(bare.get_output_details()[0]["index"])
    np.testing.assert_array_equal(raw.predict({"input": q})["output_0"], expected)
    raw.close()


def test_stateful_model_carries_its_state_pair(models_dir: Path, digits_split) -> None:
    from edgecascade.tools.build_models import ROW_STATE, run_rows

    _, held = digits_split
    path = models_dir / "digits_rows_stateful.onnx"
    backend = load_backend(path)
    sig = backend.signature
    assert [(t.name, t.shape) for t in sig.inputs] == [("row", (1, 8)), ("state", (1, ROW_STATE))]
    assert [(t.name, t.shape) for t in sig.outputs] == [
        ("probabilities", (1, 10)),
        ("state_out", (1, ROW_STATE)),
    ]
    io = json.loads(path.with_name(path.name + ".io.json").read_text())
    assert io["state"] == {"input": "state", "output": "state_out", "initial": "zeros"}
    # step by step equal to bare onnxruntime, state fed back
    state = np.zeros((1, ROW_STATE), np.float32)
    for r in range(8):
        feed = {"row": held.features[:1, r * 8 : (r + 1) * 8], "state": state}
        ours = backend.predict(feed)
        bare = _bare_ort(path, feed)
        np.testing.assert_array_equal(ours["probabilities"], bare[0])
        np.testing.assert_array_equal(ours["state_out"], bare[1])
        state = ours["state_out"]
    # after 8 rows the state holds the last 7 rows of the digit
    np.testing.assert_array_equal(state[0], held.features[0, 8:])
    accuracy = float((run_rows(backend, held.features).argmax(1) == held.labels).mean())
    assert abs(accuracy - ModelCard.load_for(path).heldout_accuracy) <= 1e-6
    backend.close()


def test_rgb_nchw_classifier(models_dir: Path, digits_split) -> None:
    from edgecascade.tools.build_models import colour_digits

    _, held = digits_split
    path = models_dir / "digits_rgb_nchw.onnx"
    backend = load_backend(path)
    assert backend.signature.inputs[0].shape == (-1, 3, 16, 16)
    x = colour_digits(held.images, 4)
    probs = backend.predict({"image": x})["probabilities"]
    np.testing.assert_array_equal(probs, _bare_ort(path, {"image": x})[0])
    accuracy = float((probs.argmax(1) == held.labels).mean())
    assert accuracy == pytest.approx(ModelCard.load_for(path).heldout_accuracy, abs=1e-6)
    assert accuracy > 0.9
    with pytest.raises(
        SignatureMismatchError, match=r"shape \[1, 16, 16, 3\].*image: float32\[N, 3, 16, 16\]"
    ):
        backend.predict({"image": np.zeros((1, 16, 16, 3), np.float32)})
    backend.close()


def _typed_model(path: Path) -> Path:
    """Inputs of four dtypes: out = where(mask, x * k, text == "on" ? 1 : 0) for int64 k."""
    nodes = [
        helper.make_node("Cast", ["k"], ["kf"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["x", "kf"], ["xk"]),
        helper.make_node("Equal", ["text", "on"], ["is_on"]),
        helper.make_node("Cast", ["is_on"], ["on_f"], to=TensorProto.FLOAT),
        helper.make_node("Where", ["mask", "xk", "on_f"], ["out"]),
    ]
    graph = helper.make_graph(
        nodes,
        "typed",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3]),
            helper.make_tensor_value_info("k", TensorProto.INT64, []),
            helper.make_tensor_value_info("mask", TensorProto.BOOL, ["N", 3]),
            helper.make_tensor_value_info("text", TensorProto.STRING, ["N", 3]),
        ],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["N", 3])],
        [helper.make_tensor("on", TensorProto.STRING, [], [b"on"])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])  # string Equal: 19+
    model.ir_version = 9
    path.write_bytes(model.SerializeToString())
    return path


def test_int64_scalar_bool_and_string_inputs(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = _typed_model(tmp_path / "typed.onnx")
    with caplog.at_level(logging.INFO, logger="edgecascade.shared.backends.base"):
        backend = load_backend(path)
    assert "skipping warm-up" in caplog.text  # zeros would be a guess for int64/bool/string inputs
    sig = backend.signature
    assert [(t.name, t.dtype, t.shape) for t in sig.inputs] == [
        ("x", "float32", (-1, 3)),
        ("k", "int64", ()),
        ("mask", "bool", (-1, 3)),
        ("text", "object", (-1, 3)),
    ]
    feed = {
        "x": np.array([[1.0, 2.0, 3.0]]),  # float64, converted
        "k": np.array(4, np.int32),  # int32 scalar, widened
        "mask": np.array([[True, False, False]]),
        "text": np.array([["on", "off", "on"]]),  # str, not object
    }
    out = backend.predict(feed)["out"]
    assert out.tolist() == [[4.0, 0.0, 1.0]]
    with pytest.raises(SignatureMismatchError, match=r"input 'mask' has dtype float32"):
        backend.predict({**feed, "mask": np.zeros((1, 3), np.float32)})
    with pytest.raises(SignatureMismatchError, match=r"input 'k' has dtype uint64"):
        backend.predict({**feed, "k": np.array(2**63, np.uint64)})  # does not fit int64
    with pytest.raises(SignatureMismatchError, match=r"input 'k' has shape \[1\]"):
        backend.predict({**feed, "k": np.array([4])})
    # given warm-up inputs are used; ones that do not fit are a ModelLoadError naming the file
    load_backend(path, BackendOptions(warmup_inputs=feed)).close()
    with pytest.raises(
        ModelLoadError, match=r"typed\.onnx: warm-up inputs do not fit the model: expected inputs"
    ):
        load_backend(path, BackendOptions(warmup_inputs={"x": feed["x"]}))
    backend.close()


def test_static_float_models_still_warm_up_on_zeros(
    models_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="edgecascade.shared.backends.base"):
        load_backend(models_dir / "digits_edge_int8.tflite").close()
        load_backend(models_dir / "digits_rows_stateful.onnx").close()
    assert "skipping warm-up" not in caplog.text


def test_detectors_raw_int8_and_postprocessed_cloud(models_dir: Path) -> None:
    from edgecascade.tools import build_detector as det
    from edgecascade.tools.build_detector_data import canvas_splits

    _, held = canvas_splits(train_count=1, held_count=400)
    for name in ("digit_detector_fp32.onnx", "digit_detector_int8.onnx"):
        path = models_dir / name
        sample = dict(np.load(path.with_name(path.name + ".sample.npz")))
        backend = load_backend(path, BackendOptions(warmup_inputs=sample))
        sig = backend.signature
        assert [(t.name, t.shape) for t in sig.outputs] == [
            ("scores", (-1, 169, 11)),
            ("deltas", (-1, 169, 4)),
        ]
        outputs = backend.predict({"image": held.images})
        bare = _bare_ort(path, {"image": held.images})
        np.testing.assert_array_equal(outputs["scores"], bare[0])
        counts = det.evaluate([det.edge_detections(outputs, i) for i in range(len(held.images))], held)
        metrics = json.loads(path.with_name(path.name + ".io.json").read_text())["metrics"]
        assert round(counts.recall, 4) == metrics["recall_iou50"]
        assert round(counts.precision, 4) == metrics["precision_iou50"]
        backend.close()
    cloud = load_backend(models_dir / "digit_detector_cloud.onnx")
    sig = cloud.signature
    assert [(t.name, t.shape) for t in sig.outputs] == [
        ("boxes", (1, -1, 4)),
        ("classes", (1, -1)),
        ("scores", (1, -1)),
        ("count", (1,)),
    ]
    out = cloud.predict({"image": held.images[:1]})
    n = int(out["count"][0])
    assert out["boxes"].shape == (1, n, 4) and out["scores"].shape == (1, n)
    assert n == len(held.boxes[0])  # the first held-out canvas: every digit found once
    with pytest.raises(SignatureMismatchError, match=r"shape \[2, 1, 64, 64\]"):
        cloud.predict({"image": held.images[:2]})  # fixed batch of 1
    cloud.close()


def test_tflite_that_must_be_resized_before_allocation(
    models_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from ai_edge_litert.interpreter import Interpreter

    path = models_dir / "reshape_needs_resize.tflite"
    bare = Interpreter(model_path=str(path))
    with pytest.raises(RuntimeError):
        bare.allocate_tensors()  # the bare interpreter cannot allocate it at its default size
    with caplog.at_level(logging.INFO, logger="edgecascade.shared.backends"):
        backend = load_backend(path)
    assert "allocation deferred to the first call" in caplog.text
    assert backend.predict({"x": np.arange(6, dtype=np.float32)[None]})["y"].tolist() == [
        [0, 1, 2],
        [3, 4, 5],
    ]
    # a size the model cannot take is the caller's error, named, and the next good call works
    with pytest.raises(SignatureMismatchError, match=r"input sizes \{'x': \[1, 3\]\} do not fit the model"):
        backend.predict({"x": np.arange(3, dtype=np.float32)[None]})
    assert backend.predict({"x": np.arange(4, dtype=np.float32)[None]})["y"].tolist() == [[0, 1], [2, 3]]
    backend.close()


def test_int8_tflite_detector_built_without_tensorflow(models_dir: Path) -> None:
    from ai_edge_litert.interpreter import Interpreter

    from edgecascade.tools import build_detector as det
    from edgecascade.tools.build_detector_data import canvas_splits

    _, held = canvas_splits(train_count=1, held_count=400)
    images = held.images.transpose(0, 2, 3, 1)  # NHWC
    path = models_dir / "digit_detector_int8.tflite"
    raw = load_backend(path, BackendOptions(dequantize=False))
    sig = raw.signature
    assert [(t.name, t.dtype, t.shape) for t in sig.inputs] == [("image", "int8", (1, 64, 64, 1))]
    assert [(t.name, t.dtype) for t in sig.outputs] == [("scores", "int8"), ("deltas", "int8")]
    assert sig.outputs[0].quantization == (1 / 256, -128)
    scale, zp = sig.inputs[0].quantization  # type: ignore[misc]
    bare = Interpreter(model_path=str(path), num_threads=1)
    bare.allocate_tensors()
    floats = load_backend(path)  # dequantized: float in, float out
    fp32 = load_backend(models_dir / "digit_detector_fp32.onnx")
    reference = fp32.predict({"image": held.images})
    dets, agree = [], []
    for i in range(len(images)):
        q = np.clip(np.rint(images[i : i + 1] / scale + zp), -128, 127).astype(np.int8)
        bare.set_tensor(bare.get_input_details()[0]["index"], q)
        bare.invoke()
        ours = raw.predict({"image": q})
        for out in bare.get_output_details():
            np.testing.assert_array_equal(ours[out["name"]], bare.get_tensor(out["index"]))
        outputs = floats.predict({"image": images[i : i + 1]})
        agree.append((outputs["scores"].argmax(-1) == reference["scores"][i : i + 1].argmax(-1)).mean())
        dets.append(det.edge_detections(outputs))
    counts = det.evaluate(dets, held)
    metrics = json.loads(path.with_name(path.name + ".io.json").read_text())["metrics"]
    assert (round(counts.recall, 4), round(counts.precision, 4)) == (
        metrics["recall_iou50"],
        metrics["precision_iou50"],
    )
    assert float(np.mean(agree)) >= 0.99  # int8 anchors classed as the float model does
    float_tflite = load_backend(models_dir / "digit_detector_fp32.tflite")
    out = float_tflite.predict({"image": images[:1]})
    np.testing.assert_allclose(out["scores"], reference["scores"][:1], atol=1e-5)
    np.testing.assert_allclose(out["deltas"], reference["deltas"][:1], atol=1e-5)
    for backend in (raw, floats, fp32, float_tflite):
        backend.close()
