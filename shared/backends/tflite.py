"""TFLite backend: LiteRT (`ai_edge_litert`) first, then `tflite_runtime`, then `tensorflow.lite`.

Any dimension may be dynamic: before each call the input shapes are compared with the ones
the interpreter is allocated for, and the changed inputs are resized and the tensors
re-allocated. A model that cannot allocate at its default sizes (it must be resized first)
is allocated at its first call."""

from __future__ import annotations

import importlib
import logging
from pathlib import Path
from typing import Any

import numpy as np

from edgecascade.shared.backends.base import (
    STRING_DTYPE,
    BackendOptions,
    ModelBackend,
    Signature,
    TensorSpec,
    TFLiteDelegate,
)
from edgecascade.shared.backends.quantization import Dequantizer, Quantizer, quantization_problem
from edgecascade.shared.errors import ModelLoadError, UnsupportedModelError

log = logging.getLogger(__name__)

# Preference order; the profile may pin one with `tflite_runtime = "..."`.
RUNTIMES: dict[str, str] = {
    "litert": "ai_edge_litert.interpreter",
    "tflite_runtime": "tflite_runtime.interpreter",
    "tensorflow": "tensorflow",  # tf.lite.Interpreter
}

DELEGATE_KINDS = ("xnnpack", "external", "builtin")


def import_interpreter_module(preferred: str | None = None) -> tuple[str, Any]:
    """Return (runtime name, module holding Interpreter and load_delegate) of the first
    importable TFLite runtime."""
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
        return name, (module.lite if name == "tensorflow" else module)
    raise UnsupportedModelError(
        "no TFLite runtime is installed (pip install 'edgecascade[edge]' for LiteRT); tried: "
        + "; ".join(errors)
    )


def import_interpreter_class(preferred: str | None = None) -> tuple[str, Any]:
    """Return (runtime name, Interpreter class) of the first importable TFLite runtime."""
    name, module = import_interpreter_module(preferred)
    return name, module.Interpreter


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


def _caller_dtype(dtype: np.dtype) -> str:
    return STRING_DTYPE if dtype.kind in "SOU" else dtype.name


def _spec(detail: dict[str, Any], names: dict[int, str], dequantize: bool) -> TensorSpec:
    dtype = np.dtype(detail["dtype"])
    signature = detail.get("shape_signature")
    shape = tuple(int(d) for d in (signature if signature is not None else detail["shape"]))
    scale, zero_point = detail.get("quantization", (0.0, 0))
    quantized = dtype.kind in "iu" and scale != 0.0
    return TensorSpec(
        name=names.get(detail["index"], detail["name"]),
        shape=shape,
        dtype="float32" if quantized and dequantize else _caller_dtype(dtype),
        quantization=(float(scale), int(zero_point)) if quantized else None,
    )


class TFLiteBackend(ModelBackend):
    name = "tflite"

    def __init__(self, path: Path, options: BackendOptions) -> None:
        super().__init__(path, options)
        self.runtime, self._module = import_interpreter_module(options.extra.get("tflite_runtime"))
        self._interp, accelerator = self._open()
        self._in = self._interp.get_input_details()
        self._out = self._interp.get_output_details()
        names = _signature_names(self._interp)
        deq = options.dequantize
        self._signature = Signature(
            inputs=tuple(_spec(d, names, deq) for d in self._in),
            outputs=tuple(_spec(d, names, deq) for d in self._out),
            accelerator=accelerator,
        )
        tensors = zip(
            [*self._in, *self._out], [*self._signature.inputs, *self._signature.outputs], strict=True
        )
        for d, spec in tensors:
            problem = spec.quantization and quantization_problem(*spec.quantization, np.dtype(d["dtype"]))
            if problem:
                raise ModelLoadError(str(self.path), f"tensor {spec.name!r}: {problem}")
        # (tensor index, caller-facing name, converter or None), precomputed for the hot path
        self._feeds = [
            (
                d["index"],
                spec.name,
                Quantizer(*spec.quantization, np.dtype(d["dtype"])) if spec.quantization and deq else None,
            )
            for d, spec in zip(self._in, self._signature.inputs, strict=True)
        ]
        self._fetches = [
            (d["index"], spec.name, Dequantizer(*spec.quantization) if spec.quantization and deq else None)
            for d, spec in zip(self._out, self._signature.outputs, strict=True)
        ]
        self._string_inputs = {
            spec.name
            for d, spec in zip(self._in, self._signature.inputs, strict=True)
            if spec.dtype == STRING_DTYPE
        }
        # The shapes the interpreter is allocated for; None until a successful allocation.
        self._shapes: list[tuple[int, ...]] | None = None
        self._allocate_default()
        log.debug("loaded %s with %s", self.describe(), self.runtime)
        self.warm_up()

    def _open(self) -> tuple[Any, str]:
        """An interpreter with the first delegate that loads; the default one otherwise."""
        wanted = self.options.tflite_delegates
        for delegate in wanted:
            try:
                interp = self._interpreter(delegate)
                if not _has_dynamic_input(interp):
                    interp.allocate_tensors()  # a delegate that cannot take this model falls back too
                return interp, _delegate_label(delegate)
            except (ValueError, RuntimeError, OSError, AttributeError) as exc:
                log.warning(
                    "%s: TFLite delegate %s did not load (%s); trying the next",
                    self.path,
                    _delegate_label(delegate),
                    exc,
                )
        try:
            interp = self._interpreter(TFLiteDelegate("xnnpack"))
        except (ValueError, RuntimeError) as exc:
            raise ModelLoadError(str(self.path), f"not a valid TFLite model ({exc})") from exc
        return interp, ("xnnpack" if self.runtime == "litert" else "default")

    def _interpreter(self, delegate: TFLiteDelegate) -> Any:
        if delegate.kind not in DELEGATE_KINDS:
            raise ValueError(f"unknown delegate kind {delegate.kind!r}; known: {list(DELEGATE_KINDS)}")
        kwargs: dict[str, Any] = {
            "model_path": str(self.path),
            "num_threads": delegate.threads or self.options.threads,
        }
        if delegate.kind == "external":
            if not delegate.library:
                raise ValueError("an external delegate needs a library path")
            load_delegate = _runtime_attr(self._module, "load_delegate")
            loaded = load_delegate(delegate.library, dict(delegate.options) or None)
            kwargs["experimental_delegates"] = [loaded]
        elif delegate.kind == "builtin":
            resolvers = _runtime_attr(self._module, "OpResolverType")
            kwargs["experimental_op_resolver_type"] = resolvers.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        return self._module.Interpreter(**kwargs)

    def _allocate_default(self) -> None:
        try:
            self._interp.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            if not any(spec.dynamic for spec in self._signature.inputs):
                raise ModelLoadError(str(self.path), f"cannot allocate tensors ({exc})") from exc
            # Some models only allocate once their dynamic inputs have real sizes.
            log.info(
                "%s: allocation deferred to the first call, which sets its input sizes (%s)", self.path, exc
            )
            return
        self._shapes = [tuple(int(x) for x in d["shape"]) for d in self._in]

    @property
    def signature(self) -> Signature:
        return self._signature

    def _resize_if_needed(self, checked: dict[str, np.ndarray]) -> None:
        shapes = self._shapes
        changed = False
        for i, (index, name, _) in enumerate(self._feeds):
            shape = checked[name].shape
            if shapes is None or shapes[i] != shape:
                self._interp.resize_tensor_input(index, list(shape), strict=False)
                changed = True
        if changed:
            self._shapes = None  # until an allocation succeeds
            try:
                self._interp.allocate_tensors()
            except (ValueError, RuntimeError) as exc:
                raise self.refused(checked, exc) from exc
            self._shapes = [checked[name].shape for _, name, _ in self._feeds]

    def predict(self, inputs: dict[str, np.ndarray], *, prepared: bool = False) -> dict[str, np.ndarray]:
        checked = self.prepared_inputs(inputs, prepared)
        self._resize_if_needed(checked)
        interp = self._interp
        for index, name, convert in self._feeds:
            arr = checked[name]
            if convert is not None:
                arr = convert(arr)
            elif name in self._string_inputs:
                arr = np.array(
                    [v.encode() if isinstance(v, str) else v for v in arr.ravel()], dtype=object
                ).reshape(arr.shape)
            interp.set_tensor(index, arr)
        try:
            interp.invoke()
        except (ValueError, RuntimeError) as exc:
            raise self.refused(checked, exc) from exc
        result: dict[str, np.ndarray] = {}
        for index, name, dequantize in self._fetches:
            arr = interp.get_tensor(index)
            result[name] = dequantize(arr) if dequantize is not None else arr
        return result

    def close(self) -> None:
        # The interpreter owns native buffers; dropping the reference frees them.
        self._interp = None


def _runtime_attr(module: Any, name: str) -> Any:
    """`name` from the runtime module; TensorFlow keeps it under tf.lite.experimental."""
    found = getattr(module, name, None) or getattr(getattr(module, "experimental", None), name, None)
    if found is None:
        raise AttributeError(f"this TFLite runtime has no {name}")
    return found


def _has_dynamic_input(interp: Any) -> bool:
    return any(
        (d.get("shape_signature") is not None and (d["shape_signature"] < 0).any())
        for d in interp.get_input_details()
    )


def _delegate_label(delegate: TFLiteDelegate) -> str:
    return f"external:{delegate.library}" if delegate.kind == "external" else delegate.kind
