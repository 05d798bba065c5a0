"""ONNX Runtime backend, with threads and graph optimization level from the device profile."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from edgecascade.shared.backends.base import BackendOptions, ModelBackend, Signature, TensorSpec
from edgecascade.shared.backends.quantization import Dequantizer, Quantizer
from edgecascade.shared.errors import ModelLoadError, UnsupportedModelError

log = logging.getLogger(__name__)

_ORT_TYPES = {
    "tensor(float)": "float32",
    "tensor(double)": "float64",
    "tensor(float16)": "float16",
    "tensor(int8)": "int8",
    "tensor(uint8)": "uint8",
    "tensor(int16)": "int16",
    "tensor(int32)": "int32",
    "tensor(int64)": "int64",
    "tensor(bool)": "bool",
    "tensor(string)": "object",
}


def _quant_params(meta: dict[str, str], name: str) -> tuple[float, int] | None:
    # An int8-I/O ONNX model carries its (scale, zero point) in metadata, since ONNX has no
    # per-tensor field for it: "<tensor>.scale" and "<tensor>.zero_point".
    if f"{name}.scale" not in meta:
        return None
    return float(meta[f"{name}.scale"]), int(meta.get(f"{name}.zero_point", "0"))


def _spec(node: Any, meta: dict[str, str]) -> TensorSpec:
    dtype = _ORT_TYPES.get(node.type, node.type)
    shape = tuple(d if isinstance(d, int) else -1 for d in node.shape)
    quant = _quant_params(meta, node.name) if dtype in ("int8", "uint8") else None
    return TensorSpec(node.name, shape, "float32" if quant else dtype, quant)


class OnnxBackend(ModelBackend):
    name = "onnx"

    def __init__(self, path: Path, options: BackendOptions) -> None:
        super().__init__(path, options)
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise UnsupportedModelError("onnxruntime is not installed (pip install onnxruntime)") from exc
        levels = {
            "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }
        so = ort.SessionOptions()
        so.intra_op_num_threads = options.threads
        so.inter_op_num_threads = 1
        so.graph_optimization_level = levels[options.graph_optimization]
        so.log_severity_level = 3
        try:
            self._session = ort.InferenceSession(
                str(path), sess_options=so, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # ORT raises its own untyped exceptions for bad files
            raise ModelLoadError(str(path), f"not a valid ONNX model ({exc})") from exc
        meta = dict(self._session.get_modelmeta().custom_metadata_map)
        ins, outs = self._session.get_inputs(), self._session.get_outputs()
        self._signature = Signature(
            inputs=tuple(_spec(n, meta) for n in ins), outputs=tuple(_spec(n, meta) for n in outs)
        )
        self._quantizers = [
            (
                spec.name,
                Quantizer(*spec.quantization, np.dtype(_ORT_TYPES[n.type])) if spec.quantization else None,
            )
            for spec, n in zip(self._signature.inputs, ins, strict=True)
        ]
        self._dequantizers = [
            (spec.name, Dequantizer(*spec.quantization) if spec.quantization else None)
            for spec in self._signature.outputs
        ]
        self._output_names = [n.name for n in outs]
        self.warm_up()

    @property
    def signature(self) -> Signature:
        return self._signature

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        checked = self.check_inputs(inputs)
        feed = {name: (q(checked[name]) if q is not None else checked[name]) for name, q in self._quantizers}
        values = self._session.run(self._output_names, feed)
        return {
            name: (dq(arr) if dq is not None else np.asarray(arr))
            for (name, dq), arr in zip(self._dequantizers, values, strict=True)
        }

    def close(self) -> None:
        self._session = None
