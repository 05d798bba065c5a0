"""A cloud model whose compute dominates the per-request overhead, so batching shows: a wide
random-feature network (64 -> H -> H -> 10) whose readout is fitted on the digits training split."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def build_wide_model(path: Path, hidden: int = 2048, seed: int = 0) -> float:
    """Write the ONNX model (input `input` [N,64], outputs `label` [N], `probabilities` [N,10]);
    returns its held-out accuracy."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from edgecascade.tools.datasets import load_split

    train, heldout = load_split()
    rng = np.random.default_rng(seed)
    w1 = (rng.standard_normal((64, hidden)) * np.sqrt(2.0 / 64)).astype(np.float32)
    b1 = (rng.standard_normal(hidden) * 0.1).astype(np.float32)
    w2 = (rng.standard_normal((hidden, hidden)) * np.sqrt(2.0 / hidden)).astype(np.float32)

    def features(x: np.ndarray) -> np.ndarray:
        return np.maximum(np.maximum(x @ w1 + b1, 0) @ w2, 0)

    h = features(train.features).astype(np.float64)
    targets = np.eye(10)[train.labels] * 10.0
    w3 = np.linalg.solve(h.T @ h + 1.0 * np.eye(hidden), h.T @ targets).astype(np.float32)
    accuracy = float(((features(heldout.features) @ w3).argmax(1) == heldout.labels).mean())

    inits = [numpy_helper.from_array(a, n) for a, n in ((w1, "w1"), (b1, "b1"), (w2, "w2"), (w3, "w3"))]
    nodes = [
        helper.make_node("MatMul", ["input", "w1"], ["m1"]),
        helper.make_node("Add", ["m1", "b1"], ["a1"]),
        helper.make_node("Relu", ["a1"], ["r1"]),
        helper.make_node("MatMul", ["r1", "w2"], ["m2"]),
        helper.make_node("Relu", ["m2"], ["r2"]),
        helper.make_node("MatMul", ["r2", "w3"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
        helper.make_node("ArgMax", ["logits"], ["label"], axis=1, keepdims=0),
    ]
    graph = helper.make_graph(
        nodes,
        "digits_wide",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 64])],
        [
            helper.make_tensor_value_info("label", TensorProto.INT64, ["N"]),
            helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 10]),
        ],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return accuracy
