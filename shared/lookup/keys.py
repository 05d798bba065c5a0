"""The two key schemes of lookup tables and the answer cache.

A *content key* identifies an encoded feature tensor, so the same input gives the same key
on any device and CPU architecture. It is a 128-bit BLAKE2b hash of a canonical byte form:

* the feature-encoding version (a table built for encoding 1 must never match encoding 2),
* the tensor's shape, as little-endian int64s,
* the values rounded to a fixed quantum of 1/4096 and stored as little-endian int32.

Why round: float32 encodings can differ by an ulp between architectures (SIMD resize, fused
multiply-add, a different libm), and hashing raw float bytes would then miss. A quantum of
1/4096 is far coarser than an ulp near 1.0 (~6e-8) and far finer than any real feature step
(8-bit pixels scaled by 1/255 are 16 quanta apart), and because the quantum is a power of two,
scaling is exact and `rint` (round-half-even) is the same everywhere. Rounding also maps -0.0
and 0.0 to the same key. Values must be finite and within +/-2**31/4096 (= 524288).

An *application key* is the caller's own identifier (a SKU, a barcode, a sensor id), hashed
to the same fixed width so both schemes share one table layout.
"""

from __future__ import annotations

import hashlib
from typing import Literal

import numpy as np

from edgecascade.shared.errors import InputError
from edgecascade.shared.features.spec import ENCODING_VERSION

KeyScheme = Literal["content", "application"]

#: Width of every stored key.
KEY_BYTES = 16
#: Feature values are rounded to multiples of 1/QUANTUM before hashing.
QUANTUM = 4096
_LIMIT = float(2**31)
_LE_INT32 = np.dtype("<i4")
_BASE = hashlib.blake2b(digest_size=KEY_BYTES, person=b"ec-content")  # copied per key (cheaper)


def content_key(features: np.ndarray, encoding_version: int = ENCODING_VERSION) -> bytes:
    """The content key of one encoded example (no batch axis). Raises InputError for NaN,
    infinite or out-of-range values, which have no canonical form."""
    arr = np.asarray(features, dtype=np.float32)
    # x * 4096 is exact in float32 (a power of two; overflow becomes inf and is refused below).
    scaled = np.rint(arr * np.float32(QUANTUM))
    # One comparison refuses NaN (compares false), infinities and values beyond int32.
    if scaled.size and not float(np.abs(scaled).max()) < _LIMIT:
        raise InputError("features must be finite and within +/-524288 to have a content key")
    digest = _BASE.copy()
    digest.update(encoding_version.to_bytes(4, "little"))
    digest.update(np.asarray(arr.shape, dtype="<i8").tobytes())
    digest.update(scaled.astype(_LE_INT32).tobytes())
    return digest.digest()


def application_key(key: str) -> bytes:
    """The stored form of an application key (UTF-8, hashed to KEY_BYTES)."""
    return hashlib.blake2b(key.encode("utf-8"), digest_size=KEY_BYTES, person=b"ec-app-key").digest()
