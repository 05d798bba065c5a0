"""Turn what a caller hands the agent (image bytes, a .npy array, JSON numbers) into model features."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from edgecascade.shared.bounded_read import FileTooLargeError, NotRegularFileError, read_bounded
from edgecascade.shared.errors import InputError, NonFiniteInputError
from edgecascade.shared.features import FeatureSpec, ImageEncoding, decode_image, encode_image, encode_vector
from edgecascade.shared.features.array_file import npy_array
from edgecascade.shared.finite import non_finite_count

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".pbm", ".pgm", ".ppm", ".webp"}
#: Clips for an input whose card pipeline is `kind: audio` (decoded by shared/features/audio.py).
AUDIO_SUFFIXES = {".wav"}
#: The most an input file may hold, as the local API's default body limit (api.max_body_mb).
MAX_INPUT_BYTES = 16 << 20


def read_input_bytes(path: Path, max_bytes: int = MAX_INPUT_BYTES) -> bytes:
    """The bytes of an input file, in bounded memory: InputError for a file over `max_bytes`
    or one that is not a regular file (a FIFO or /dev/zero would be read forever)."""
    try:
        return read_bounded(path, max_bytes)
    except (IsADirectoryError, NotRegularFileError):
        raise InputError(f"{path}: not a regular file (a folder, device, pipe or socket)") from None
    except FileTooLargeError:
        raise InputError(
            f"{path}: over the limit of {max_bytes:,} bytes for an input (api.max_body_mb)"
        ) from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read input ({exc.strerror or exc})") from None


def check_finite(name: str, arr: np.ndarray) -> None:
    """NonFiniteInputError naming the input when a float array holds NaN or infinity."""
    bad = non_finite_count(arr)
    if bad:
        raise NonFiniteInputError(
            f"input {name!r} has {bad} non-finite value(s) (NaN or infinity); the model takes finite numbers"
        )


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


def read_input_file(path: Path, spec: FeatureSpec, max_bytes: int = MAX_INPUT_BYTES) -> np.ndarray:
    """Read an image, .npy or .json file into one encoded feature row."""
    return encode_input_bytes(path, read_input_bytes(path, max_bytes), spec)


def encode_input_bytes(path: Path, data: bytes, spec: FeatureSpec) -> np.ndarray:
    """The bytes of an image, .npy or .json file (`path` names it and its kind) -> one
    encoded feature row; NaN or infinity in it is refused."""
    suffix = path.suffix.lower()
    # Its header is checked against its bytes before numpy allocates what it announces; the
    # error names the file already.
    npy = npy_array(data, str(path), finite=False) if suffix == ".npy" else None
    try:
        if suffix in IMAGE_SUFFIXES:
            return encode_raw(decode_image(data), spec)
        if suffix in (".npy", ".json"):
            raw = npy if npy is not None else np.asarray(json.loads(data), dtype=np.float32)
            check_finite(spec.input_name, raw)
            return encode_raw(raw, spec)
    except (ValueError, TypeError, OverflowError) as exc:  # json.JSONDecodeError is a ValueError
        raise InputError(f"{path}: {exc}") from None
    except RecursionError:
        raise InputError(f"{path}: JSON nested too deeply") from None
    except InputError as exc:
        raise type(exc)(f"{path}: {exc}") from None
    raise InputError(
        f"{path}: unsupported input type {suffix!r}; use an image ({', '.join(sorted(IMAGE_SUFFIXES))}), .npy or .json"
    )
