"""V2 datatype names and their numpy dtypes, and the raw little-endian wire form of a tensor."""

from __future__ import annotations

import math
import struct

import numpy as np

from edgecascade.shared.errors import ProtocolError

#: Every Open Inference Protocol datatype and the numpy dtype that holds it. BYTES is an
#: object array whose elements are `bytes`.
DATATYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
    "BYTES": np.dtype(object),
}

_NAME_OF = {dtype: name for name, dtype in DATATYPES.items() if name != "BYTES"}
#: The little-endian wire dtype of each fixed-size datatype, made once (not per tensor).
_WIRE = {name: dtype.newbyteorder("<") for name, dtype in DATATYPES.items() if name != "BYTES"}
_LENGTH = struct.Struct("<I")


def datatype_of(arr: np.ndarray) -> str:
    """The V2 datatype name for `arr`; object, bytes and str arrays are BYTES.

    Raises ProtocolError for dtypes V2 cannot carry (complex, datetime, ...)."""
    dtype = arr.dtype
    if dtype.kind in "OSU":
        return "BYTES"
    name = _NAME_OF.get(dtype if dtype.isnative else dtype.newbyteorder())
    if name is None:
        raise ProtocolError(f"numpy dtype {dtype} has no V2 datatype; supported: {sorted(DATATYPES)}")
    return name


_BY_DTYPE_NAME = {str(dtype): name for name, dtype in DATATYPES.items() if name != "BYTES"}


def datatype_for_dtype(dtype: str) -> str:
    """The V2 datatype of a numpy dtype name (`float32` -> FP32); V2 names pass through;
    anything else (object, str) is BYTES."""
    if dtype in DATATYPES:
        return dtype
    return _BY_DTYPE_NAME.get(dtype, "BYTES")


def element_count(shape: list[int]) -> int:
    return math.prod(shape)


def as_bytes_element(value: object, field: str) -> bytes:
    """One BYTES element as bytes (str is UTF-8 encoded)."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, np.bytes_ | bytearray | memoryview):
        return bytes(value)
    raise ProtocolError(f"BYTES element must be bytes or str, got {type(value).__name__}", field=field)


def to_raw(arr: np.ndarray, datatype: str, field: str) -> bytes:
    """The binary-extension form: raw little-endian, row-major; BOOL one byte per element;
    each BYTES element prefixed with its 4-byte little-endian length."""
    if datatype == "BYTES":
        parts: list[bytes] = []
        for item in arr.ravel().tolist():  # iterating an object ndarray costs ~4 µs; a list does not
            data = as_bytes_element(item, field)
            parts.append(_LENGTH.pack(len(data)))
            parts.append(data)
        return b"".join(parts)
    wire = _WIRE[datatype]
    if arr.dtype == wire:  # already little-endian (x86, ARM): tobytes() is C order whatever the layout
        return arr.tobytes()
    return np.ascontiguousarray(arr, dtype=wire).tobytes()


def from_raw(raw: bytes | memoryview, datatype: str, shape: list[int], field: str) -> np.ndarray:
    """Inverse of `to_raw`; checks that the byte count fits shape x datatype exactly."""
    count = element_count(shape)
    if datatype == "BYTES":
        return _bytes_from_raw(bytes(raw), shape, count, field)
    dtype = DATATYPES[datatype]
    expected = count * dtype.itemsize
    if len(raw) != expected:
        raise ProtocolError(
            f"binary data is {len(raw)} bytes; shape {shape} of {datatype} needs {expected}", field=field
        )
    arr = np.frombuffer(raw, dtype=_WIRE[datatype]).reshape(shape)
    if datatype == "BOOL" and arr.size and int(np.frombuffer(raw, np.uint8).max()) > 1:
        raise ProtocolError("BOOL bytes must be 0 or 1", field=field)
    # Native byte order and writable, so backends and callers may use it freely.
    return arr.astype(dtype, copy=True)


def _bytes_from_raw(raw: bytes, shape: list[int], count: int, field: str) -> np.ndarray:
    items: list[bytes] = []
    offset = 0
    while offset < len(raw):
        if offset + 4 > len(raw):
            raise ProtocolError("truncated BYTES length prefix", field=field)
        (size,) = _LENGTH.unpack_from(raw, offset)
        offset += 4
        if offset + size > len(raw):
            raise ProtocolError(f"BYTES element {len(items)} runs past the tensor's data", field=field)
        items.append(raw[offset : offset + size])
        offset += size
    if len(items) != count:
        raise ProtocolError(f"{len(items)} BYTES elements; shape {shape} needs {count}", field=field)
    out = np.empty(count, dtype=object)
    out[:] = items
    return out.reshape(shape)
