"""NaN and infinity in a float input: no model answer for one can be trusted (an int8 model
would quantize NaN to an arbitrary code), so every way in refuses them before the model."""

from __future__ import annotations

import numpy as np


def non_finite_count(arr: np.ndarray) -> int:
    """How many values of a float array are NaN or +-infinity; 0 for any other dtype."""
    if arr.dtype.kind not in "fc":
        return 0
    finite = np.isfinite(arr)
    return 0 if bool(finite.all()) else int(arr.size - np.count_nonzero(finite))
