"""Images: bytes -> pixels (decode_image) and pixels -> model tensor (encode_image)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from edgecascade.shared.errors import InputError
from edgecascade.shared.features.image_header import FORMATS, image_size
from edgecascade.shared.features.spec import ImageEncoding
from edgecascade.shared.lazy_module import lazy_module

if TYPE_CHECKING:
    import cv2
else:
    # OpenCV only when an image is decoded or resized, not for feature vectors.
    cv2 = lazy_module("cv2", needed_for="image input", install="pip install opencv-python-headless")

_INTERPOLATION = {"area": "INTER_AREA", "linear": "INTER_LINEAR", "nearest": "INTER_NEAREST"}


#: Bound on an image's pixels where the caller gives none (the agent passes api.max_image_pixels).
DEFAULT_MAX_PIXELS = 1 << 25


def decode_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode PNG/JPEG/BMP/GIF/WebP/PNM bytes to a uint8 array: HxW (gray) or HxWx3 in OpenCV's
    BGR order. The size is read from the header first: an image of over `max_pixels` (or of
    an unknown format) is refused with InputError before the decoder allocates anything."""
    probed = image_size(data)
    if probed is None:
        raise InputError(
            f"not a decodable image: not {'/'.join(FORMATS)}, or its header is cut short ({len(data)} bytes)"
        )
    kind, width, height = probed
    if width == 0 or height == 0:
        raise InputError(f"{kind} image declares {width}x{height} pixels")
    if width * height > max_pixels:
        raise InputError(
            f"{kind} image of {width}x{height} pixels is over the limit of {max_pixels} pixels "
            "(api.max_image_pixels)"
        )
    buf = np.frombuffer(data, dtype=np.uint8)
    try:
        image = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    except cv2.error:
        image = None
    if image is None:
        raise InputError(f"{kind} image of {len(data)} bytes could not be decoded (truncated or corrupt)")
    if image.ndim == 3 and image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    if image.dtype != np.uint8:
        image = cv2.convertScaleAbs(image, alpha=255.0 / max(float(image.max()), 1.0))
    return image


def _to_color(image: np.ndarray, color: str) -> np.ndarray:
    if image.ndim == 2:
        return (
            image
            if color == "gray"
            else cv2.cvtColor(image, cv2.COLOR_GRAY2BGR if color == "bgr" else cv2.COLOR_GRAY2RGB)
        )
    if color == "gray":
        return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    return image if color == "bgr" else cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def encode_image(image: np.ndarray, enc: ImageEncoding) -> np.ndarray:
    """Encode one uint8 image (HxW gray or HxWx3 BGR, as OpenCV gives it) to a float32 tensor
    of shape `enc.tensor_shape`. Training and serving both call this."""
    if image.dtype != np.uint8 or image.ndim not in (2, 3):
        raise InputError(f"expected a uint8 HxW or HxWx3 image, got {image.dtype} {list(image.shape)}")
    pixels = _to_color(image, enc.color)
    if pixels.shape[:2] != (enc.height, enc.width):
        pixels = cv2.resize(
            pixels, (enc.width, enc.height), interpolation=getattr(cv2, _INTERPOLATION[enc.interpolation])
        )
    if enc.invert:
        pixels = 255 - pixels
    tensor = pixels.astype(np.float32)
    if tensor.ndim == 2:
        tensor = tensor[:, :, None]
    # Per-channel mean/std broadcast over the last (channel) axis, before any transpose to NCHW.
    mean = np.asarray(enc.mean, dtype=np.float32)
    std = np.asarray(enc.std, dtype=np.float32)
    tensor = (tensor * np.float32(enc.scale) - mean) / std
    if enc.layout == "flat":
        return tensor.reshape(-1)
    if enc.layout == "nchw":
        return np.ascontiguousarray(tensor.transpose(2, 0, 1))
    return tensor
