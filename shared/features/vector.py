"""Plain numeric feature vectors."""

from __future__ import annotations

import numpy as np

from edgecascade.shared.errors import InputError
from edgecascade.shared.features.spec import VectorEncoding


def encode_vector(values: np.ndarray | list[float], enc: VectorEncoding) -> np.ndarray:
    """Return a float32 vector of `enc.length` values, or raise InputError naming the mismatch."""
    arr = np.asarray(values, dtype=np.float32).reshape(-1)
    if arr.shape[0] != enc.length:
        raise InputError(f"expected {enc.length} feature values, got {arr.shape[0]}")
    if not np.all(np.isfinite(arr)):
        raise InputError("feature values must be finite numbers")
    return arr
