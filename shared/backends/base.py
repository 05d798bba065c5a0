"""The interface every model backend implements, and the signature it reports."""

from __future__ import annotations

import abc
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgecascade.shared.errors import ModelLoadError, SignatureMismatchError

log = logging.getLogger(__name__)

#: The dtype name callers see for string tensors (ONNX tensor(string), TFLite kTfLiteString).
STRING_DTYPE = "object"


@dataclass(frozen=True)
class TensorSpec:
    """One input or output as callers see it. `shape` uses -1 for every variable dimension.

    `dtype` is what callers pass or receive: float32 for quantized tensors, which the backend
    converts, unless `BackendOptions.dequantize` is off; `quantization` is the model's own
    (scale, zero_point) where it has one.
    """

    name: str
    shape: tuple[int, ...]
    dtype: str
    quantization: tuple[float, int] | None = None

    def describe(self) -> str:
        dims = ", ".join(
            "N" if i == 0 and d < 0 else ("?" if d < 0 else str(d)) for i, d in enumerate(self.shape)
        )
        return f"{self.name}: {self.dtype}[{dims}]"

    @property
    def dynamic(self) -> bool:
        """True when any dimension is variable."""
        return any(d < 0 for d in self.shape)


@dataclass(frozen=True)
class Signature:
    """Inputs and outputs, plus the accelerator (execution provider or delegate) that runs them."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    accelerator: str = "cpu"

    def describe(self) -> str:
        ins = "; ".join(t.describe() for t in self.inputs)
        outs = "; ".join(t.describe() for t in self.outputs)
        return f"inputs ({ins}) -> outputs ({outs})"


@dataclass(frozen=True)
class OnnxProvider:
    """One ONNX Runtime execution provider to try, e.g. "CUDAExecutionProvider", with its options."""

    name: str
    options: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class TFLiteDelegate:
    """One TFLite delegate to try. `kind` is "xnnpack" (the default CPU delegate, `threads`
    threads), "external" (a delegate library such as an Edge TPU's libedgetpu.so.1, loaded with
    `options`) or "builtin" (the reference kernels, no delegate)."""

    kind: str
    library: str | None = None
    options: Mapping[str, str] = field(default_factory=dict)
    threads: int | None = None


@dataclass(frozen=True)
class BackendOptions:
    """Runtime settings from the device profile (or the cloud's model.toml).

    Accelerators are tried in order and the first that loads wins; the one in use is reported
    as `Signature.accelerator`. Empty lists mean the runtime's default (XNNPACK on LiteRT, the
    CPU provider on ONNX Runtime). `warmup_inputs` are real inputs (a card's sample inputs or
    golden vectors) run right after loading; without them only a model whose inputs are all
    static float tensors is warmed up (on zeros), any other is not warmed up at all.
    `dequantize` off exposes int8/uint8 tensors in their own dtype instead of float32."""

    threads: int = 1
    graph_optimization: str = "all"  # ONNX Runtime: disable | basic | extended | all
    warmup_runs: int = 2
    extra: dict[str, str] = field(default_factory=dict)
    onnx_providers: tuple[OnnxProvider, ...] = ()
    tflite_delegates: tuple[TFLiteDelegate, ...] = ()
    warmup_inputs: Mapping[str, np.ndarray] | None = None
    dequantize: bool = True


def _fits(shape: tuple[int, ...], want: tuple[int, ...]) -> bool:
    """`shape` matches `want`, where -1 in `want` is any size. A loop, not any(): hot path."""
    if len(shape) != len(want):
        return False
    for got, expected in zip(shape, want, strict=True):
        if expected >= 0 and got != expected:
            return False
    return True


_STRING_KINDS = "USO"


def _zeros_are_safe(spec: TensorSpec) -> bool:
    """Zeros can stand in for real data: a float tensor whose only variable dimension, if any,
    is a leading batch dimension (set to 1). Any other variable size may need a minimum."""
    if spec.dtype not in ("float32", "float16", "float64") or not spec.shape:
        return spec.dtype in ("float32", "float16", "float64")
    return all(d >= 0 for d in spec.shape[1:]) and (spec.shape[0] >= 0 or len(spec.shape) >= 2)


class ModelBackend(abc.ABC):
    """A loaded model. Created by `load_backend`; `predict` may be called from one thread at a time.

    Lifecycle: `__init__` loads and warms up (raising `ModelLoadError` on a bad file or a failed
    warm-up), `signature` describes inputs and outputs, `predict` runs a batch, `close` frees the
    runtime.
    """

    #: Name used in config (`backend = "tflite"`) and in model cards.
    name: str = ""

    def __init__(self, path: Path, options: BackendOptions) -> None:
        self.path = path
        self.options = options

    @property
    @abc.abstractmethod
    def signature(self) -> Signature:
        """Inputs and outputs as callers see them (float32 for quantized tensors)."""

    @abc.abstractmethod
    def predict(self, inputs: dict[str, np.ndarray], *, prepared: bool = False) -> dict[str, np.ndarray]:
        """Run one batch. Inputs are keyed by input name; arrays have the batch first.

        Returns one array per output name, batch first. Raises `SignatureMismatchError`
        when an input has the wrong shape or dtype. `prepared`: the caller's input pipeline
        made every input for this signature (shared/input_pipeline), so `prepared_inputs`
        checks no more than their number.
        """

    def prepared_inputs(self, inputs: dict[str, np.ndarray], prepared: bool) -> dict[str, np.ndarray]:
        """`inputs` as they are when `prepared` and all there (the pipeline checked each against
        this signature, by name); else `check_inputs(inputs)`."""
        if prepared and len(inputs) == len(self.signature.inputs):
            return inputs
        return self.check_inputs(inputs)

    @abc.abstractmethod
    def close(self) -> None:
        """Free the runtime's memory. The backend must not be used afterwards."""

    @property
    def accelerator(self) -> str:
        """The execution provider or delegate in use ("CPUExecutionProvider", "xnnpack", ...)."""
        return self.signature.accelerator

    def describe(self) -> str:
        """One line for logs: file, backend, accelerator and signature."""
        return f"{self.path.name} [{self.name} on {self.accelerator}] {self.signature.describe()}"

    def warm_up(self) -> None:
        """Run real inputs through the model so the first request does not pay for lazy init.

        Uses `options.warmup_inputs` when given (a failure there is a ModelLoadError naming the
        file and the runtime's message); else zeros when every input is a static float tensor;
        else skips with a log line, since made-up sizes or values can break a good model."""
        runs = self.options.warmup_runs
        if runs <= 0:
            return
        given = self.options.warmup_inputs
        if given is not None:
            feed = dict(given)
        else:
            specs = self.signature.inputs
            if not all(_zeros_are_safe(s) for s in specs):
                log.info(
                    "%s: no warm-up inputs given and zeros may not fit its inputs (%s); skipping warm-up",
                    self.path,
                    self.signature.describe(),
                )
                return
            feed = {
                s.name: np.zeros((1, *s.shape[1:]) if s.shape[0] < 0 else s.shape, s.dtype) for s in specs
            }
        try:
            for _ in range(runs):
                self.predict(feed)
        except SignatureMismatchError as exc:
            raise ModelLoadError(str(self.path), f"warm-up inputs do not fit the model: {exc}") from exc
        except Exception as exc:  # each runtime raises its own untyped errors
            raise ModelLoadError(str(self.path), f"warm-up failed ({type(exc).__name__}: {exc})") from exc

    def check_inputs(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Validate names, shapes and dtypes against the signature; return arrays to feed.

        Float64 and integer arrays are accepted for float32 inputs (converted), since JSON
        and numpy default to them; integers for another integer dtype when every value fits;
        str/bytes arrays for string inputs. Anything else is refused with the expected signature."""
        specs = self.signature.inputs
        if len(inputs) != len(specs):
            self._mismatch_names(inputs)
        checked: dict[str, np.ndarray] = {}
        for spec in specs:
            arr = inputs.get(spec.name)
            if arr is None:
                self._mismatch_names(inputs)
            if type(arr) is not np.ndarray:
                arr = np.asarray(arr)
            shape = arr.shape
            if not _fits(shape, spec.shape):
                raise SignatureMismatchError(
                    f"input {spec.name!r} has shape {list(shape)}; model expects {self.signature.describe()}"
                )
            # dtype objects compare in ~0.2 µs; `arr.dtype.name` costs ~2 µs per call.
            if arr.dtype != np.dtype(spec.dtype):
                arr = self._convert(spec, arr)
            checked[spec.name] = arr
        return checked

    def _convert(self, spec: TensorSpec, arr: np.ndarray) -> np.ndarray:
        want = np.dtype(spec.dtype)
        kind = arr.dtype.kind
        if want.kind == "f" and kind in "fiu":
            return arr.astype(want)
        if want.kind in "iu" and kind in "iu":
            info = np.iinfo(want)
            if arr.size == 0 or (int(arr.min()) >= info.min and int(arr.max()) <= info.max):
                return arr.astype(want)
        if spec.dtype == STRING_DTYPE and kind in _STRING_KINDS:
            return arr.astype(object)
        raise SignatureMismatchError(
            f"input {spec.name!r} has dtype {arr.dtype}; model expects {self.signature.describe()}"
        )

    def refused(self, checked: dict[str, np.ndarray], exc: Exception) -> SignatureMismatchError:
        """The error for inputs that fit the signature but that the model cannot run (a size a
        layer cannot take, for example), with the runtime's own message."""
        sizes = {name: list(arr.shape) for name, arr in checked.items()}
        return SignatureMismatchError(
            f"input sizes {sizes} do not fit the model ({type(exc).__name__}: {exc}); "
            f"model expects {self.signature.describe()}"
        )

    def _mismatch_names(self, inputs: dict[str, np.ndarray]) -> None:
        expected = sorted(t.name for t in self.signature.inputs)
        raise SignatureMismatchError(
            f"expected inputs {expected}, got {sorted(inputs)}; model expects {self.signature.describe()}"
        )
