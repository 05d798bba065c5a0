"""Images: bytes -> pixels (decode_image) and pixels -> model tensor (encode_image)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from edgecascade.shared.errors import InputError
from edgecascade.shared.features.spec import ImageEncoding
from edgecascade.shared.lazy_module import lazy_module

if TYPE_CHECKING:
    import cv2
else:
    # OpenCV only when an image is decoded or resized, not for feature vectors.
    cv2 = lazy_module("cv2", needed_for="image input", install="pip install opencv-python-headless")

_INTERPOLATION = {"area": "INTER_AREA", "linear": "INTER_LINEAR", "nearest": "INTER_NEAREST"}


def decode_image(data: bytes) -> np.ndarray:
    """Decode PNG/JPEG/BMP bytes to a uint8 array: HxW (gray) or HxWx3 in OpenCV's BGR order."""
    buf = np.frombuffer(data, dtype=np.uint8)
    image = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED) if buf.size else None
    if image is None:
        raise InputError(f"not a decodable image ({len(data)} bytes)")
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
    tensor = (pixels.astype(np.float32) * np.float32(enc.scale) - np.float32(enc.mean)) / np.float32(enc.std)
    if tensor.ndim == 2:
        tensor = tensor[:, :, None]
    if enc.layout == "flat":
        return tensor.reshape(-1)
    if enc.layout == "nchw":
        return np.ascontiguousarray(tensor.transpose(2, 0, 1))
    return tensor
