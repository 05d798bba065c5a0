"""Static int8 quantization of any ONNX model, and how far the int8 model strays from its source.

Calibration and evaluation inputs come from a folder: `.npz` files with one array per input
name, `.npy` files for a one-input model, or images (`.png`, `.jpg`, ...) for a one-input
image model (decoded to the input's layout: NCHW or NHWC, 1 or 3 channels, scaled 0..1).
Arrays whose first dimension is larger than the model's fixed batch are split into rows.
An evaluation folder may hold `labels.npy` (one class per example, in file order) to report
accuracy besides agreement."""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgecascade.shared.backends import BackendOptions, ModelBackend, Signature, load_backend
from edgecascade.shared.backends.base import TensorSpec
from edgecascade.shared.bounded_read import read_bounded
from edgecascade.shared.errors import ConfigError, InputError
from edgecascade.shared.features.array_file import read_array_file
from edgecascade.shared.features.image import decode_image

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".pgm", ".ppm")
LABELS_FILE = "labels.npy"


#: The most an image file may hold; its pixels are bounded by its header before decoding.
MAX_IMAGE_FILE_BYTES = 64 << 20


def _image(path: Path, spec: TensorSpec) -> np.ndarray:
    import cv2

    shape = spec.shape
    if len(shape) != 4:
        raise ConfigError(f"image files need a 4-D image input, {spec.describe()} is not", file=str(path))
    nchw = shape[1] in (1, 3)
    channels, height, width = (shape[1], shape[2], shape[3]) if nchw else (shape[3], shape[1], shape[2])
    if height < 0 or width < 0:
        raise ConfigError(f"input {spec.describe()} has no fixed image size; give .npz files", file=str(path))
    # Bounded, and sized from its header first: a 20000 x 20000 PNG of a few KiB is refused
    # before the decoder allocates gigabytes.
    try:
        decoded = decode_image(read_bounded(path, MAX_IMAGE_FILE_BYTES))
    except (InputError, OSError) as exc:
        raise ConfigError(f"not a readable image: {exc}", file=str(path)) from None
    if channels == 1:
        img = decoded if decoded.ndim == 2 else cv2.cvtColor(decoded, cv2.COLOR_BGR2GRAY)
    else:
        img = decoded if decoded.ndim == 3 else cv2.cvtColor(decoded, cv2.COLOR_GRAY2BGR)
    img = cv2.resize(img, (width, height), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    if channels == 3:
        img = img[..., ::-1]  # BGR -> RGB
    img = img.reshape(height, width, channels)
    return (img.transpose(2, 0, 1) if nchw else img)[None].astype(spec.dtype)


def _rows(arrays: dict[str, np.ndarray], sig: Signature) -> Iterator[dict[str, np.ndarray]]:
    """Split arrays along the batch axis when the model has a fixed batch of 1."""
    fixed_one = all(s.shape[:1] == (1,) for s in sig.inputs)
    lengths = {len(a) for a in arrays.values() if a.ndim}
    if fixed_one and len(lengths) == 1 and (n := lengths.pop()) > 1:
        for i in range(n):
            yield {k: v[i : i + 1] for k, v in arrays.items()}
    else:
        yield arrays


def load_inputs(folder: Path, sig: Signature) -> list[dict[str, np.ndarray]]:
    """Every example in `folder`, as model feeds, in sorted file order."""
    if not folder.is_dir():
        raise ConfigError("input folder not found", file=str(folder))
    names = [s.name for s in sig.inputs]
    feeds: list[dict[str, np.ndarray]] = []
    for path in sorted(folder.iterdir()):
        suffix = path.suffix.lower()
        if path.name == LABELS_FILE or not path.is_file():
            continue
        if suffix == ".npz":
            data = read_arrays(path)
            missing = sorted(set(names) - set(data))
            if missing:
                raise ConfigError(f"arrays {missing} missing; the model's inputs are {names}", file=str(path))
            arrays = {n: data[n] for n in names}
        elif suffix == ".npy" or suffix in IMAGE_SUFFIXES:
            if len(names) != 1:
                raise ConfigError(
                    f"the model has inputs {names}: give .npz files with one array each", file=str(path)
                )
            arr = read_arrays(path)[""] if suffix == ".npy" else _image(path, sig.inputs[0])
            arrays = {names[0]: arr}
        else:
            continue
        _check_fit(path, arrays, sig)
        feeds.extend(_rows(arrays, sig))
    if not feeds:
        raise ConfigError("no .npz, .npy or image files", file=str(folder))
    return feeds


def read_arrays(path: Path) -> dict[str, np.ndarray]:
    """A .npy (key "") or .npz file's arrays, in bounded memory, finite; ConfigError naming it."""
    try:
        return read_array_file(path)
    except InputError as exc:
        raise ConfigError(str(exc).removeprefix(f"{path}: "), file=str(path)) from None


def _check_fit(path: Path, arrays: dict[str, np.ndarray], sig: Signature) -> None:
    """Each array fits its input's rank, fixed sizes and dtype kind, so the calibrator (which
    would fail with its own traceback) never sees one that does not."""
    for spec in sig.inputs:
        arr = arrays[spec.name]
        want = np.dtype(spec.dtype)
        ok_kind = arr.dtype.kind in ("fiu" if want.kind == "f" else "iub" if want.kind in "iub" else "SUO")
        fits = arr.ndim == len(spec.shape) and all(
            d < 0 or (i == 0 and d == 1) or d == a
            for i, (a, d) in enumerate(zip(arr.shape, spec.shape, strict=True))
        )
        if not (ok_kind and fits):
            raise ConfigError(
                f"array {spec.name!r} is {arr.dtype} {list(arr.shape)}; the model takes {spec.describe()}",
                file=str(path),
            )


class _Reader:
    """onnxruntime.quantization's CalibrationDataReader protocol over feeds."""

    def __init__(self, feeds: list[dict[str, np.ndarray]]) -> None:
        self._it = iter(feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)


def quantize_static_int8(
    float_path: Path, out_path: Path, calibration: list[dict[str, np.ndarray]], *, per_channel: bool = True
) -> None:
    """Static int8 (QDQ: int8 activations and weights, per-channel weights) calibrated on `calibration`."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory() as tmp:
        prepped = Path(tmp) / "prepped.onnx"
        # skip_symbolic_shape: the symbolic pass needs sympy, which is not a dependency.
        quant_pre_process(str(float_path), str(prepped), skip_symbolic_shape=True)
        quantize_static(
            str(prepped),
            str(out_path),
            _Reader(calibration),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            per_channel=per_channel,
            calibrate_method=CalibrationMethod.MinMax,
        )


@dataclass
class OutputAgreement:
    name: str
    max_abs_diff: float
    mean_abs_diff: float
    argmax_agreement: float | None  # for outputs with a class axis (last dim > 1)


@dataclass
class QuantizeReport:
    float_size: int
    int8_size: int
    float_latency_us: float
    int8_latency_us: float
    outputs: list[OutputAgreement] = field(default_factory=list)
    float_accuracy: float | None = None
    int8_accuracy: float | None = None
    examples: int = 0

    def lines(self) -> list[str]:
        out = [
            f"size: float {self.float_size} B, int8 {self.int8_size} B ({self.int8_size / self.float_size:.0%})",
            f"latency (median per call): float {self.float_latency_us:.1f} us, int8 {self.int8_latency_us:.1f} us",
        ]
        for o in self.outputs:
            agree = f", argmax agreement {o.argmax_agreement:.2%}" if o.argmax_agreement is not None else ""
            out.append(
                f"output {o.name}: max |diff| {o.max_abs_diff:.4g}, mean |diff| {o.mean_abs_diff:.4g}{agree}"
            )
        if self.float_accuracy is not None and self.int8_accuracy is not None:
            out.append(
                f"accuracy on {self.examples} examples: float {self.float_accuracy:.2%}, int8 {self.int8_accuracy:.2%}"
            )
        return out


def _run_all(
    backend: ModelBackend, feeds: list[dict[str, np.ndarray]]
) -> tuple[list[dict[str, np.ndarray]], float]:
    results, times = [], []
    for feed in feeds:
        start = time.perf_counter()
        results.append(backend.predict(feed))
        times.append(time.perf_counter() - start)
    return results, float(np.median(times) * 1e6)


def compare(
    float_path: Path, int8_path: Path, feeds: list[dict[str, np.ndarray]], labels: np.ndarray | None = None
) -> QuantizeReport:
    """Run both models on `feeds` through shared/backends and compare every output."""
    options = BackendOptions(warmup_inputs=feeds[0])
    fb, qb = load_backend(float_path, options), load_backend(int8_path, options)
    try:
        f_out, f_us = _run_all(fb, feeds)
        q_out, q_us = _run_all(qb, feeds)
    finally:
        fb.close()
        qb.close()
    report = QuantizeReport(
        float_path.stat().st_size, int8_path.stat().st_size, f_us, q_us, examples=len(feeds)
    )
    report.outputs = [_agreement(name, f_out, q_out) for name in f_out[0]]
    if labels is not None:
        _add_accuracy(report, f_out, q_out, labels)
    return report


def _agreement(
    name: str, f_out: list[dict[str, np.ndarray]], q_out: list[dict[str, np.ndarray]]
) -> OutputAgreement:
    """How close output `name` of the int8 model stays to the float model's, over every feed."""
    fa = [np.asarray(r[name], dtype=np.float64) for r in f_out]
    qa = [np.asarray(r[name], dtype=np.float64) for r in q_out]
    same_shapes = all(a.shape == b.shape for a, b in zip(fa, qa, strict=True))
    diffs = (
        np.concatenate([np.abs(a - b).ravel() for a, b in zip(fa, qa, strict=True)]) if same_shapes else None
    )
    agreement = None
    if same_shapes and fa[0].ndim >= 2 and fa[0].shape[-1] > 1:
        agreement = float(
            np.mean(
                np.concatenate([(a.argmax(-1) == b.argmax(-1)).ravel() for a, b in zip(fa, qa, strict=True)])
            )
        )
    return OutputAgreement(
        name,
        float(diffs.max()) if diffs is not None and diffs.size else float("nan"),
        float(diffs.mean()) if diffs is not None and diffs.size else float("nan"),
        agreement,
    )


def _add_accuracy(
    report: QuantizeReport,
    f_out: list[dict[str, np.ndarray]],
    q_out: list[dict[str, np.ndarray]],
    labels: np.ndarray,
) -> None:
    """Both models' accuracy against `labels`, by the argmax of their first output."""
    first = next(iter(f_out[0]))

    def predictions(outs: list[dict[str, np.ndarray]]) -> np.ndarray:
        return np.concatenate([r[first].reshape(-1, r[first].shape[-1]).argmax(-1) for r in outs])

    f_pred, q_pred = predictions(f_out), predictions(q_out)
    if len(f_pred) != len(labels):
        raise ConfigError(f"{len(labels)} labels for {len(f_pred)} examples", file=LABELS_FILE)
    report.examples = len(f_pred)
    report.float_accuracy = float((f_pred == labels).mean())
    report.int8_accuracy = float((q_pred == labels).mean())


def tflite_int8_from_saved_model(
    saved_model: Path, out_path: Path, calibration: list[dict[str, np.ndarray]]
) -> None:
    """Full-integer int8 TFLite (int8 input and output) from a TensorFlow SavedModel."""
    try:
        import tensorflow as tf
    except ImportError:
        raise ConfigError(
            "TFLite int8 conversion needs TensorFlow: pip install 'edgecascade[tflite-convert]'",
            file=str(saved_model),
        ) from None

    def representative() -> Iterator[list[np.ndarray]]:
        for feed in calibration:
            yield list(feed.values())

    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    out_path.write_bytes(converter.convert())
