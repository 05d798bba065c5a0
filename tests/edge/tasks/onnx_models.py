"""Small real ONNX models of each kind, built with onnx.helper from numpy weights: what a user
brings (a detector, a segmenter, a multi-input model with an int64 scalar, a stateful model,
a dynamic-shape model, an NCHW image classifier giving logits)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

RNG = np.random.default_rng(0)


def _save(path: Path, nodes: list, inputs: list, outputs: list, weights: dict[str, np.ndarray]) -> Path:  # type: ignore[type-arg]
    graph = helper.make_graph(
        nodes,
        path.stem,
        inputs,
        outputs,
        initializer=[numpy_helper.from_array(v.astype(v.dtype), k) for k, v in weights.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def detector(path: Path, detections: int = 5, side: int = 8) -> Path:
    """image [1, side, side, 3] -> boxes [1, D, 4] (sigmoid, y1x1y2x2-ish) and scores [1, D]."""
    features = side * side * 3
    weights = {
        "w_box": (RNG.standard_normal((features, detections * 4)) * 0.05).astype(np.float32),
        "w_score": (RNG.standard_normal((features, detections)) * 0.2).astype(np.float32),
        "flat_shape": np.array([1, features], dtype=np.int64),
        "box_shape": np.array([1, detections, 4], dtype=np.int64),
    }
    nodes = [
        helper.make_node("Reshape", ["image", "flat_shape"], ["flat"]),
        helper.make_node("MatMul", ["flat", "w_box"], ["box_logits"]),
        helper.make_node("Sigmoid", ["box_logits"], ["box_flat"]),
        helper.make_node("Reshape", ["box_flat", "box_shape"], ["boxes"]),
        helper.make_node("MatMul", ["flat", "w_score"], ["score_logits"]),
        helper.make_node("Sigmoid", ["score_logits"], ["scores"]),
    ]
    return _save(
        path,
        nodes,
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, side, side, 3])],
        [
            helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [1, detections, 4]),
            helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, detections]),
        ],
        weights,
    )


def segmenter(path: Path, height: int = 6, width: int = 5) -> Path:
    """image [1, H, W, 3] -> mask [1, H, W, 2] (a per-pixel softmax)."""
    weights = {"w": RNG.standard_normal((3, 2)).astype(np.float32)}
    nodes = [
        helper.make_node("MatMul", ["image", "w"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["mask"], axis=-1),
    ]
    return _save(
        path,
        nodes,
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, height, width, 3])],
        [helper.make_tensor_value_info("mask", TensorProto.FLOAT, [1, height, width, 2])],
        weights,
    )


def multi_input(path: Path) -> Path:
    """x [N, 4] float and k int64 scalar -> y [N, 4] = x * k, and total [N] = sum(y)."""
    nodes = [
        helper.make_node("Cast", ["k"], ["kf"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["x", "kf"], ["y"]),
        helper.make_node("ReduceSum", ["y", "axes"], ["total"], keepdims=0),
    ]
    return _save(
        path,
        nodes,
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4]),
            helper.make_tensor_value_info("k", TensorProto.INT64, []),
        ],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4]),
            helper.make_tensor_value_info("total", TensorProto.FLOAT, ["N"]),
        ],
        {"axes": np.array([1], dtype=np.int64)},
    )


def stateful(path: Path) -> Path:
    """x [1, 4], h_in [1, 4] -> y = tanh(x @ W + h_in), h_out = y (a tiny recurrent cell)."""
    weights = {"w": RNG.standard_normal((4, 4)).astype(np.float32)}
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["xw"]),
        helper.make_node("Add", ["xw", "h_in"], ["pre"]),
        helper.make_node("Tanh", ["pre"], ["y"]),
        helper.make_node("Identity", ["y"], ["h_out"]),
    ]
    return _save(
        path,
        nodes,
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4]),
            helper.make_tensor_value_info("h_in", TensorProto.FLOAT, [1, 4]),
        ],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4]),
            helper.make_tensor_value_info("h_out", TensorProto.FLOAT, [1, 4]),
        ],
        weights,
    )


def dynamic(path: Path) -> Path:
    """audio [N, T] (T dynamic) -> energy [N, 1] = mean(audio^2) over T, and the frames squared."""
    nodes = [
        helper.make_node("Mul", ["audio", "audio"], ["squared"]),
        helper.make_node("ReduceMean", ["squared"], ["energy"], axes=[1], keepdims=1),
    ]
    return _save(
        path,
        nodes,
        [helper.make_tensor_value_info("audio", TensorProto.FLOAT, ["N", "T"])],
        [
            helper.make_tensor_value_info("energy", TensorProto.FLOAT, ["N", 1]),
            helper.make_tensor_value_info("squared", TensorProto.FLOAT, ["N", "T"]),
        ],
        {},
    )


def nchw_classifier(path: Path, classes: int = 3, side: int = 8) -> Path:
    """image [1, 3, side, side] -> logits [1, classes] (no softmax in the graph)."""
    features = 3 * side * side
    weights = {
        "w": (RNG.standard_normal((features, classes)) * 0.3).astype(np.float32),
        "b": RNG.standard_normal(classes).astype(np.float32),
        "flat_shape": np.array([1, features], dtype=np.int64),
    }
    nodes = [
        helper.make_node("Reshape", ["image", "flat_shape"], ["flat"]),
        helper.make_node("Gemm", ["flat", "w", "b"], ["logits"]),
    ]
    return _save(
        path,
        nodes,
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, side, side])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, classes])],
        weights,
    )


def pairs(path: Path) -> Path:
    """values [N, T] (T dynamic) + offsets [4] -> shifted [N, 4]: T must broadcast (1 or 4);
    any other T passes the signature check and fails inside the graph."""
    nodes = [helper.make_node("Add", ["values", "offsets"], ["shifted"])]
    return _save(
        path,
        nodes,
        [helper.make_tensor_value_info("values", TensorProto.FLOAT, ["N", "T"])],
        [helper.make_tensor_value_info("shifted", TensorProto.FLOAT, ["N", 4])],
        {"offsets": np.arange(4, dtype=np.float32)},
    )


def quantized_classifier(path: Path, classes: int = 3) -> Path:
    """x [N, 4] -> scores [N, 1, classes] as uint8 (softmax * 255, no scale metadata)."""
    weights = {
        "w": RNG.standard_normal((4, classes)).astype(np.float32),
        "k": np.array(255.0, dtype=np.float32),
        "axes": np.array([1], dtype=np.int64),
    }
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probs"], axis=-1),
        helper.make_node("Mul", ["probs", "k"], ["scaled"]),
        helper.make_node("Cast", ["scaled"], ["flat_scores"], to=TensorProto.UINT8),
        helper.make_node("Unsqueeze", ["flat_scores", "axes"], ["scores"]),
    ]
    return _save(
        path,
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("scores", TensorProto.UINT8, ["N", 1, classes])],
        weights,
    )
