"""Affine (scale, zero point) conversion between float arrays and a model's int8/uint8 tensors.

On the hot path every numpy call costs ~0.5-1 µs on a small device, so the converters keep
their parameters as float32 scalars and work in place: a few ufunc calls per tensor."""

from __future__ import annotations

import numpy as np


class Quantizer:
    """float32 -> integer with the model's own parameters, rounded half-to-even and saturated."""

    def __init__(self, scale: float, zero_point: int, dtype: np.dtype) -> None:
        info = np.iinfo(dtype)
        self.dtype = dtype
        self._inv_scale = np.float32(1.0 / scale)
        self._zero_point = np.float32(zero_point)
        self._lo, self._hi = np.float32(info.min), np.float32(info.max)

    def __call__(self, values: np.ndarray) -> np.ndarray:
        q = np.multiply(values, self._inv_scale, dtype=np.float32)
        q += self._zero_point
        np.rint(q, out=q)
        np.maximum(q, self._lo, out=q)
        np.minimum(q, self._hi, out=q)
        return q.astype(self.dtype)


class Dequantizer:
    """integer -> float32."""

    def __init__(self, scale: float, zero_point: int) -> None:
        self._scale = np.float32(scale)
        self._zero_point = np.float32(zero_point)

    def __call__(self, values: np.ndarray) -> np.ndarray:
        out = values.astype(np.float32)
        out -= self._zero_point
        out *= self._scale
        return out


def quantize(values: np.ndarray, scale: float, zero_point: int, dtype: np.dtype) -> np.ndarray:
    return Quantizer(scale, zero_point, dtype)(values)


def dequantize(values: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    return Dequantizer(scale, zero_point)(values)
