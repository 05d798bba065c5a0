"""ONNX Runtime backend: threads, graph optimization and execution providers from the profile."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from edgecascade.shared.backends.base import (
    STRING_DTYPE,
    BackendOptions,
    ModelBackend,
    OnnxProvider,
    Signature,
    TensorSpec,
)
from edgecascade.shared.backends.onnx_external import check_external_data
from edgecascade.shared.backends.quantization import Dequantizer, Quantizer, quantization_problem
from edgecascade.shared.errors import ModelLoadError, UnsupportedModelError

log = logging.getLogger(__name__)

CPU_PROVIDER = "CPUExecutionProvider"

_ORT_TYPES = {
    "tensor(float)": "float32",
    "tensor(double)": "float64",
    "tensor(float16)": "float16",
    "tensor(int8)": "int8",
    "tensor(uint8)": "uint8",
    "tensor(int16)": "int16",
    "tensor(uint16)": "uint16",
    "tensor(int32)": "int32",
    "tensor(uint32)": "uint32",
    "tensor(int64)": "int64",
    "tensor(uint64)": "uint64",
    "tensor(bool)": "bool",
    "tensor(string)": STRING_DTYPE,
}


class _BadMetadata(ValueError):
    """A model's quantization metadata that cannot convert its tensor (the message says why)."""


def _quant_params(meta: dict[str, str], name: str, dtype: str) -> tuple[float, int] | None:
    # An int8-I/O ONNX model carries its (scale, zero point) in metadata, since ONNX has no
    # per-tensor field for it: "<tensor>.scale" and "<tensor>.zero_point". Both are text in
    # the file: anything but finite numbers that fit the tensor is refused, not guessed at.
    if f"{name}.scale" not in meta:
        return None
    scale_text, zp_text = meta[f"{name}.scale"], meta.get(f"{name}.zero_point", "0")
    try:
        scale = float(scale_text)
    except ValueError:
        raise _BadMetadata(f"metadata {name}.scale: {scale_text[:40]!r} is not a number") from None
    # An integer of at most 20 digits: int() of a 5,000-digit text is refused by Python itself.
    digits = zp_text.strip().removeprefix("-").removeprefix("+")
    if not (digits.isdigit() and digits.isascii() and len(digits) <= 20):
        raise _BadMetadata(f"metadata {name}.zero_point: {zp_text[:40]!r} is not an integer")
    zero_point = int(zp_text)
    problem = quantization_problem(scale, zero_point, np.dtype(dtype))
    if problem:
        raise _BadMetadata(f"metadata {name}.scale/zero_point of tensor {name!r}: {problem}")
    return scale, zero_point


def _spec(node: Any, meta: dict[str, str], dequantize: bool) -> TensorSpec:
    dtype = _ORT_TYPES.get(node.type, node.type)
    # Symbolic ("batch") and unknown (None) dimensions are both variable.
    shape = tuple(d if isinstance(d, int) and d >= 0 else -1 for d in (node.shape or ()))
    quant = _quant_params(meta, node.name, dtype) if dtype in ("int8", "uint8") else None
    return TensorSpec(node.name, shape, "float32" if quant and dequantize else dtype, quant)


def choose_providers(wanted: tuple[OnnxProvider, ...], available: list[str]) -> list[OnnxProvider]:
    """The wanted providers this onnxruntime build has, in order, always ending with the CPU
    provider. Missing ones are dropped with one log line."""
    missing = [p.name for p in wanted if p.name not in available]
    if missing:
        log.warning(
            "execution providers %s are not in this onnxruntime build (it has %s); falling back",
            missing,
            available,
        )
    chosen = [p for p in wanted if p.name in available]
    if not any(p.name == CPU_PROVIDER for p in chosen):
        chosen.append(OnnxProvider(CPU_PROVIDER))
    return chosen


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
        # Before the runtime opens it: older onnxruntime releases read external data from
        # wherever the file points (/etc/passwd, ../../), and a FIFO there would block.
        check_external_data(path)
        self._session = self._open(
            ort, so, choose_providers(options.onnx_providers, ort.get_available_providers())
        )
        meta = dict(self._session.get_modelmeta().custom_metadata_map)
        ins, outs = self._session.get_inputs(), self._session.get_outputs()
        deq = options.dequantize
        try:
            self._signature = Signature(
                inputs=tuple(_spec(n, meta, deq) for n in ins),
                outputs=tuple(_spec(n, meta, deq) for n in outs),
                accelerator=self._session.get_providers()[0],
            )
        except _BadMetadata as exc:
            raise ModelLoadError(str(path), str(exc)) from None
        self._quantizers = [
            (
                spec.name,
                Quantizer(*spec.quantization, np.dtype(_ORT_TYPES[n.type]))
                if spec.quantization and deq
                else None,
            )
            for spec, n in zip(self._signature.inputs, ins, strict=True)
        ]
        self._dequantizers = [
            (spec.name, Dequantizer(*spec.quantization) if spec.quantization and deq else None)
            for spec in self._signature.outputs
        ]
        self._output_names = [n.name for n in outs]
        log.debug("loaded %s", self.describe())
        self.warm_up()

    def _open(self, ort: Any, so: Any, providers: list[OnnxProvider]) -> Any:
        """The first session that opens, trying each provider (then the rest after it) in turn:
        a provider that is built in but cannot start (no GPU, no driver) falls back, not fails."""
        last: Exception | None = None
        for i, provider in enumerate(providers):
            rest = providers[i:]
            try:
                return ort.InferenceSession(
                    str(self.path),
                    sess_options=so,
                    providers=[p.name for p in rest],
                    provider_options=[dict(p.options) for p in rest],
                )
            except Exception as exc:  # ORT raises its own untyped exceptions
                last = exc
                if provider.name == CPU_PROVIDER or _is_model_error(exc):
                    break
                log.warning(
                    "%s: %s failed to start (%s); trying the next provider", self.path, provider.name, exc
                )
        raise ModelLoadError(str(self.path), f"not a valid ONNX model ({last})")

    @property
    def signature(self) -> Signature:
        return self._signature

    def predict(self, inputs: dict[str, np.ndarray], *, prepared: bool = False) -> dict[str, np.ndarray]:
        checked = self.prepared_inputs(inputs, prepared)
        feed = {name: (q(checked[name]) if q is not None else checked[name]) for name, q in self._quantizers}
        try:
            values = self._session.run(self._output_names, feed)
        except Exception as exc:  # ORT's own error types: the inputs fit the signature, not the model
            raise self.refused(checked, exc) from exc
        return {
            name: (dq(arr) if dq is not None else np.asarray(arr))
            for (name, dq), arr in zip(self._dequantizers, values, strict=True)
        }

    def close(self) -> None:
        self._session = None


def _is_model_error(exc: Exception) -> bool:
    """ORT's errors about the file itself, which no other provider would fix."""
    text = str(exc)
    return any(
        s in text for s in ("INVALID_PROTOBUF", "NO_SUCHFILE", "INVALID_GRAPH", "Protobuf parsing failed")
    )
