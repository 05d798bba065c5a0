"""Affine (scale, zero point) conversion between float arrays and a model's int8/uint8 tensors."""

from __future__ import annotations

import numpy as np


def quantize(values: np.ndarray, scale: float, zero_point: int, dtype: np.dtype) -> np.ndarray:
    """float -> integer with the model's own parameters, rounded and clipped to the dtype's range."""
    info = np.iinfo(dtype)
    q = np.round(values / scale) + zero_point
    return np.clip(q, info.min, info.max).astype(dtype)


def dequantize(values: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """integer -> float32."""
    return ((values.astype(np.float32) - np.float32(zero_point)) * np.float32(scale)).astype(np.float32)
