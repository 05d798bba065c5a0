"""TFLite backend: LiteRT (`ai_edge_litert`) first, then `tflite_runtime`, then `tensorflow.lite`."""

from __future__ import annotations

import importlib
import logging
from pathlib import Path
from typing import Any

import numpy as np

from edgecascade.shared.backends.base import BackendOptions, ModelBackend, Signature, TensorSpec
from edgecascade.shared.backends.quantization import Dequantizer, Quantizer
from edgecascade.shared.errors import ModelLoadError, UnsupportedModelError

log = logging.getLogger(__name__)

# Preference order; the profile may pin one with `tflite_runtime = "..."`.
RUNTIMES: dict[str, str] = {
    "litert": "ai_edge_litert.interpreter",
    "tflite_runtime": "tflite_runtime.interpreter",
    "tensorflow": "tensorflow",  # tf.lite.Interpreter
}


def import_interpreter_class(preferred: str | None = None) -> tuple[str, Any]:
    """Return (runtime name, Interpreter class) of the first importable TFLite runtime."""
    names = [preferred] if preferred else list(RUNTIMES)
    errors = []
    for name in names:
        if name not in RUNTIMES:
            raise UnsupportedModelError(f"unknown TFLite runtime {name!r}; choose one of {sorted(RUNTIMES)}")
        try:
            module = importlib.import_module(RUNTIMES[name])
        except ImportError as exc:
            errors.append(f"{name}: {exc}")
            continue
        return name, (module.lite.Interpreter if name == "tensorflow" else module.Interpreter)
    raise UnsupportedModelError(
        "no TFLite runtime is installed (pip install 'edgecascade[edge]' for LiteRT); tried: "
        + "; ".join(errors)
    )


def _signature_names(interp: Any) -> dict[int, str]:
    """Tensor index -> clean name from the model's first SignatureDef ("input", "output_0"),
    which converters keep stable, unlike tensor names such as "serving_default_input:0"."""
    try:
        full = interp._get_full_signature_list()
    except AttributeError:
        return {}
    if not full:
        return {}
    sig = next(iter(full.values()))
    names = {idx: key for key, idx in sig.get("inputs", {}).items()}
    names.update({idx: key for key, idx in sig.get("outputs", {}).items()})
    return names


def _spec(detail: dict[str, Any], names: dict[int, str]) -> TensorSpec:
    dtype = np.dtype(detail["dtype"])
    shape = tuple(int(d) for d in detail.get("shape_signature", detail["shape"]))
    scale, zero_point = detail.get("quantization", (0.0, 0))
    quantized = dtype.kind in "iu" and scale != 0.0
    return TensorSpec(
        name=names.get(detail["index"], detail["name"]),
        shape=shape,
        dtype="float32" if quantized else dtype.name,
        quantization=(float(scale), int(zero_point)) if quantized else None,
    )


class TFLiteBackend(ModelBackend):
    name = "tflite"

    def __init__(self, path: Path, options: BackendOptions) -> None:
        super().__init__(path, options)
        self.runtime, interpreter_cls = import_interpreter_class(options.extra.get("tflite_runtime"))
        try:
            self._interp = interpreter_cls(model_path=str(path), num_threads=options.threads)
            self._interp.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise ModelLoadError(str(path), f"not a valid TFLite model ({exc})") from exc
        self._in = self._interp.get_input_details()
        self._out = self._interp.get_output_details()
        names = _signature_names(self._interp)
        self._signature = Signature(
            inputs=tuple(_spec(d, names) for d in self._in), outputs=tuple(_spec(d, names) for d in self._out)
        )
        # (tensor index, caller-facing name, converter or None), precomputed for the hot path
        self._feeds = [
            (
                d["index"],
                spec.name,
                Quantizer(*spec.quantization, np.dtype(d["dtype"])) if spec.quantization else None,
            )
            for d, spec in zip(self._in, self._signature.inputs, strict=True)
        ]
        self._set_fetches()
        self._batch = [int(d["shape"][0]) if len(d["shape"]) else 1 for d in self._in]
        log.debug("loaded %s with %s (%s)", path, self.runtime, self._signature.describe())
        self.warm_up()

    @property
    def signature(self) -> Signature:
        return self._signature

    def _resize_if_needed(self, checked: dict[str, np.ndarray]) -> None:
        resized = False
        for i, detail in enumerate(self._in):
            arr = checked[self._signature.inputs[i].name]
            if arr.ndim and arr.shape[0] != self._batch[i]:
                self._interp.resize_tensor_input(detail["index"], list(arr.shape))
                self._batch[i] = arr.shape[0]
                resized = True
        if resized:
            self._interp.allocate_tensors()
            self._out = self._interp.get_output_details()
            self._set_fetches()

    def _set_fetches(self) -> None:
        self._fetches = [
            (d["index"], spec.name, Dequantizer(*spec.quantization) if spec.quantization else None)
            for d, spec in zip(self._out, self._signature.outputs, strict=True)
        ]

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        checked = self.check_inputs(inputs)
        self._resize_if_needed(checked)
        interp = self._interp
        for index, name, convert in self._feeds:
            arr = checked[name]
            interp.set_tensor(index, convert(arr) if convert is not None else arr)
        interp.invoke()
        result: dict[str, np.ndarray] = {}
        for index, name, dequantize in self._fetches:
            arr = interp.get_tensor(index)
            result[name] = dequantize(arr) if dequantize is not None else arr
        return result

    def close(self) -> None:
        # The interpreter owns native buffers; dropping the reference frees them.
        self._interp = None
