"""Export trained scikit-learn models to ONNX, and quantize the edge model to int8."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np


def mlp_layers(mlp: Any, source: str) -> tuple[list, list, str]:
    """An MLPClassifier's layers as MatMul/Add (+Relu between layers) nodes reading `source`:
    (nodes, initializers W0, B0, ..., the name of the last layer's logits)."""
    from onnx import helper, numpy_helper

    nodes, inits = [], []
    prev = source
    for i, (w, b) in enumerate(zip(mlp.coefs_, mlp.intercepts_, strict=True)):
        inits += [
            numpy_helper.from_array(w.astype(np.float32), f"W{i}"),
            numpy_helper.from_array(b.astype(np.float32), f"B{i}"),
        ]
        nodes += [
            helper.make_node("MatMul", [prev, f"W{i}"], [f"mm{i}"]),
            helper.make_node("Add", [f"mm{i}", f"B{i}"], [f"z{i}"]),
        ]
        prev = f"z{i}"
        if i < len(mlp.coefs_) - 1:
            nodes.append(helper.make_node("Relu", [prev], [f"h{i}"]))
            prev = f"h{i}"
    return nodes, inits, prev


def mlp_to_onnx(mlp: Any, n_features: int, path: Path, input_name: str = "input") -> None:
    """Write an MLPClassifier as plain MatMul/Add/Relu/Softmax ops (quantizable, unlike
    skl2onnx's ZipMap/ArgMax graph), with a dynamic batch axis and a `probabilities` output."""
    import onnx
    from onnx import TensorProto, helper

    nodes, inits, logits = mlp_layers(mlp, input_name)
    nodes.append(helper.make_node("Softmax", [logits], ["probabilities"], axis=1))
    n_classes = mlp.coefs_[-1].shape[1]
    graph = helper.make_graph(
        nodes,
        "digits_mlp",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, ["N", n_features])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", n_classes])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="edgecascade")
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def quantize_onnx_int8(
    float_path: Path, out_path: Path, calibration: np.ndarray, input_name: str = "input"
) -> None:
    """Static int8 quantization (QDQ, per-channel weights) calibrated on real training inputs,
    one row at a time (tools/quantize.py does the work for every model)."""
    from edgecascade.tools.quantize import quantize_static_int8

    rows = [{input_name: row[None, :]} for row in calibration.astype(np.float32)]
    quantize_static_int8(float_path, out_path, rows)


def svc_to_onnx(svc: Any, n_features: int, path: Path, input_name: str = "input") -> None:
    """Export an SVC (with probabilities) to ONNX: outputs `label` and `probabilities`."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        onx = convert_sklearn(
            svc,
            initial_types=[(input_name, FloatTensorType([None, n_features]))],
            options={id(svc): {"zipmap": False}},
            target_opset={"": 17, "ai.onnx.ml": 3},
        )
    path.write_bytes(onx.SerializeToString())
