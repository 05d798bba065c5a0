"""Affine (scale, zero point) conversion between float arrays and a model's int8/uint8 tensors.

On the hot path every numpy call costs ~0.5-1 µs on a small device, so the converters keep
their parameters as float32 scalars and work in place: a few ufunc calls per tensor."""

from __future__ import annotations

import math

import numpy as np

_FLOAT32_MAX = float(np.finfo(np.float32).max)


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


def quantization_problem(scale: float, zero_point: int, dtype: np.dtype) -> str | None:
    """Why a tensor's (scale, zero point) cannot convert it from and to float32, or None.

    A model file is where these come from: NaN, infinity, a negative scale or one so small
    that 1/scale overflows float32 would turn every value into NaN or infinity, and a zero
    point outside the integer type has no meaning."""
    info = np.iinfo(dtype)
    if not math.isfinite(scale) or scale <= 0.0:
        return f"quantization scale {scale!r} is not a finite number > 0"
    span = float(info.max) - float(info.min)
    if not (1.0 / scale < _FLOAT32_MAX and scale * span < _FLOAT32_MAX):
        return f"quantization scale {scale!r} is outside float32's range for {np.dtype(dtype).name} values"
    if not info.min <= zero_point <= info.max:
        return (
            f"quantization zero point {zero_point} is outside {np.dtype(dtype).name}'s {info.min}..{info.max}"
        )
    return None
