"""One encoding for training and serving: no training-serving skew."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edgecascade.shared.errors import InputError
from edgecascade.shared.features import ImageEncoding, decode_image, encode_image
from edgecascade.tools.datasets import DIGITS_FEATURES, encode_images


def test_training_path_equals_serving_path(digits_split) -> None:
    """tools/ encodes raw digit images in memory; the agent decodes a PNG file of the same image."""
    train, held = digits_split
    for images in (train.images[:50], held.images[:50]):
        training = encode_images(images)
        for raw, expected in zip(images, training, strict=True):
            ok, png = cv2.imencode(".png", raw)
            assert ok
            served = encode_image(decode_image(png.tobytes()), DIGITS_FEATURES.encoding)  # type: ignore[arg-type]
            np.testing.assert_array_equal(served, expected)


def test_colour_resize_and_layouts() -> None:
    bgr = np.zeros((16, 16, 3), np.uint8)
    bgr[..., 2] = 255  # pure red in OpenCV's BGR order
    rgb = encode_image(bgr, ImageEncoding(width=8, height=8, color="rgb", layout="nhwc"))
    assert rgb.shape == (8, 8, 3) and rgb[0, 0, 0] == 1.0 and rgb[0, 0, 2] == 0.0
    chw = encode_image(bgr, ImageEncoding(width=4, height=2, color="bgr", layout="nchw", mean=0.5, std=0.5))
    assert (
        chw.shape == (3, 2, 4) and chw[2, 0, 0] == pytest.approx(1.0) and chw[0, 0, 0] == pytest.approx(-1.0)
    )
    gray = encode_image(bgr, ImageEncoding(width=8, height=8, color="gray", invert=True))
    assert gray.shape == (64,) and 0.0 < gray[0] < 1.0


def test_undecodable_bytes_are_an_input_error() -> None:
    with pytest.raises(InputError, match="not a decodable image"):
        decode_image(b"definitely not a png")
    with pytest.raises(InputError, match="uint8"):
        encode_image(np.zeros((8, 8), np.float32), DIGITS_FEATURES.encoding)  # type: ignore[arg-type]
