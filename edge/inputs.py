"""Turn what a caller hands the agent (image bytes, a .npy array, JSON numbers) into model features."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np

from edgecascade.shared.errors import InputError
from edgecascade.shared.features import FeatureSpec, ImageEncoding, decode_image, encode_image, encode_vector

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".pbm", ".pgm", ".ppm", ".webp"}
#: Clips for an input whose card pipeline is `kind: audio` (decoded by shared/features/audio.py).
AUDIO_SUFFIXES = {".wav"}


def encode_raw(raw: np.ndarray, spec: FeatureSpec) -> np.ndarray:
    """One raw example -> one encoded feature row. A uint8 image is encoded with the spec's
    image encoding; a float array already in model space must have the encoded shape."""
    enc = spec.encoding
    if isinstance(enc, ImageEncoding) and raw.dtype == np.uint8 and raw.ndim in (2, 3):
        return encode_image(raw, enc)
    arr = np.asarray(raw, dtype=np.float32)
    if isinstance(enc, ImageEncoding):
        shape = enc.tensor_shape
        if arr.shape == shape:
            return arr
        if arr.size == int(np.prod(shape)) and enc.layout == "flat":
            arr = arr.reshape(shape)
        if arr.shape != shape:
            raise InputError(
                f"expected a uint8 image or encoded features of shape {list(enc.tensor_shape)}, got "
                f"{raw.dtype} {list(raw.shape)}"
            )
        return arr
    return encode_vector(arr, enc)


def read_input_file(path: Path, spec: FeatureSpec) -> np.ndarray:
    """Read an image, .npy or .json file into one encoded feature row."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read input ({exc.strerror})") from None
    suffix = path.suffix.lower()
    try:
        if suffix in IMAGE_SUFFIXES:
            return encode_raw(decode_image(data), spec)
        if suffix == ".npy":
            return encode_raw(np.load(io.BytesIO(data), allow_pickle=False), spec)
        if suffix == ".json":
            return encode_raw(np.asarray(json.loads(data), dtype=np.float32), spec)
    except (ValueError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: {exc}") from None
    except InputError as exc:
        raise InputError(f"{path}: {exc}") from None
    raise InputError(
        f"{path}: unsupported input type {suffix!r}; use an image ({', '.join(sorted(IMAGE_SUFFIXES))}), .npy or .json"
    )
