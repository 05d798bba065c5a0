"""Business input -> model input, per input of a model card: encoded images and WAV clips are
decoded and prepared with the input's pipeline (shared/features, the code training uses), raw
tensors are checked against the model's spec. One implementation for the agent, `agent predict` and tools/.

Every refusal is an InputError naming the input and its expected spec."""

from __future__ import annotations

import numpy as np

from edgecascade.shared.backends.base import TensorSpec
from edgecascade.shared.errors import InputError
from edgecascade.shared.features import decode_image, decode_wav, encode_audio, encode_image
from edgecascade.shared.features.image import DEFAULT_MAX_PIXELS
from edgecascade.shared.features.spec import AudioEncoding, ImageEncoding
from edgecascade.shared.model_card import Pipeline, TensorCard

#: Cast without loss of meaning: JSON numbers arrive as int64/float64.
_SAFE_KINDS = {"f": "fiu", "i": "iu", "u": "iu", "b": "b"}


def describe(spec: TensorSpec, pipeline: Pipeline | None = None) -> str:
    dims = ", ".join("-1" if d < 0 else str(d) for d in spec.shape)
    if isinstance(pipeline, AudioEncoding):
        extra = f" or WAV audio (BYTES, {pipeline.sample_rate} Hz)"
    else:
        extra = " or encoded images (BYTES)" if pipeline is not None else ""
    return f"{spec.name}: {spec.dtype} [{dims}]{extra}"


def prepare_input(
    value: object, card: TensorCard | None, spec: TensorSpec, *, max_pixels: int = DEFAULT_MAX_PIXELS
) -> np.ndarray:
    """One input's value (a batch, one example without the batch axis, image or WAV bytes, or
    a BYTES array of them) -> the batch array the backend takes for `spec`."""
    pipeline = card.pipeline if card is not None else None
    arr = value if isinstance(value, np.ndarray) else _as_array(value)
    if isinstance(pipeline, AudioEncoding) and arr.dtype == object:
        return _clips(arr, pipeline, spec)
    if isinstance(pipeline, ImageEncoding) and (arr.dtype == object or _is_image(arr, spec)):
        return _images(arr, pipeline, spec, max_pixels)
    if spec.dtype == "object":
        if arr.dtype.kind not in "OSU":
            raise InputError(f"input {spec.name!r} has dtype {arr.dtype}; expected {describe(spec)}")
    elif arr.dtype == object:
        raise InputError(f"input {spec.name!r} is BYTES; expected {describe(spec, pipeline)}")
    if arr.ndim == len(spec.shape) - 1 and len(spec.shape) > 0 and spec.shape[0] in (-1, 1):
        arr = arr[None, ...]  # one example without its batch axis
    if not _fits(arr.shape, spec.shape):
        raise InputError(
            f"input {spec.name!r} has shape {list(arr.shape)}; expected {describe(spec, pipeline)}"
        )
    return _cast(arr, spec, pipeline)


def _as_array(value: object) -> np.ndarray:
    if isinstance(value, bytes | bytearray):
        return np.array([bytes(value)], dtype=object)
    try:
        return np.asarray(value)
    except ValueError as exc:
        raise InputError(f"not an array: {exc}") from None


def _is_image(arr: np.ndarray, spec: TensorSpec) -> bool:
    """A uint8 HxW or HxWxC picture that is not already the model's tensor."""
    return (
        arr.dtype == np.uint8
        and arr.ndim in (2, 3)
        and not (spec.dtype == "uint8" and _fits((1, *arr.shape), spec.shape))
    )


def _images(arr: np.ndarray, pipeline: ImageEncoding, spec: TensorSpec, max_pixels: int) -> np.ndarray:
    if arr.dtype == object:
        rows = []
        for k, v in enumerate(arr.reshape(-1)):
            try:
                rows.append(encode_image(decode_image(_raw(v), max_pixels), pipeline))
            except InputError as exc:
                raise InputError(f"input {spec.name!r}: image {k}: {exc}") from None
    else:
        rows = [encode_image(arr, pipeline)]
    return _batch(rows, spec, pipeline, "images")


def _clips(arr: np.ndarray, pipeline: AudioEncoding, spec: TensorSpec) -> np.ndarray:
    rows = []
    for k, v in enumerate(arr.reshape(-1)):
        try:
            rows.append(encode_audio(*decode_wav(_raw(v, "WAV"), pipeline.max_seconds), pipeline))
        except InputError as exc:
            raise InputError(f"input {spec.name!r}: clip {k}: {exc}") from None
    return _batch(rows, spec, pipeline, "clips")


def _batch(rows: list[np.ndarray], spec: TensorSpec, pipeline: Pipeline, what: str) -> np.ndarray:
    """Prepared examples stacked into the model's input: it must fit the model's shape."""
    if not rows:
        raise InputError(f"input {spec.name!r} holds no {what}; expected {describe(spec, pipeline)}")
    batch = np.stack(rows)
    if not _fits(batch.shape, spec.shape):
        raise InputError(
            f"input {spec.name!r}: the card's pipeline makes {list(batch.shape)}, the model expects "
            f"{describe(spec)}; fix inputs[].pipeline in the card"
        )
    return _cast(batch, spec, pipeline)


def _raw(value: object, what: str = "encoded image") -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    raise InputError(f"expected {what} bytes, got {type(value).__name__}")


def _cast(arr: np.ndarray, spec: TensorSpec, pipeline: Pipeline | None) -> np.ndarray:
    want = np.dtype(spec.dtype)
    if arr.dtype == want:
        return arr
    if want.kind == "O":
        return arr.astype(object)
    if arr.dtype.kind in _SAFE_KINDS.get(want.kind, ""):
        if want.kind in "iu" and arr.size:
            info = np.iinfo(want)
            if arr.min() < info.min or arr.max() > info.max:
                raise InputError(f"input {spec.name!r} has values outside {want}; expected {describe(spec)}")
        return arr.astype(want)
    if pipeline is not None and arr.dtype.kind == "f" and want.kind in "iu":
        # A pipeline makes float pixels or samples; a uint8/int8/int16 model input takes them rounded.
        info = np.iinfo(want)
        return np.clip(np.rint(arr), info.min, info.max).astype(want)
    raise InputError(f"input {spec.name!r} has dtype {arr.dtype}; expected {describe(spec, pipeline)}")


def _fits(shape: tuple[int, ...], want: tuple[int, ...]) -> bool:
    """`shape` matches `want`, where -1 in `want` is any size. A loop, not all() over a
    generator: it runs for every input of every request."""
    if len(shape) != len(want):
        return False
    for got, expected in zip(shape, want, strict=True):
        if expected >= 0 and got != expected:
            return False
    return True
