"""Tensor <-> the JSON `data` field: row-major values, flat or nested, checked against shape."""

from __future__ import annotations

from typing import Any

import numpy as np

from edgecascade.shared.errors import ProtocolError
from edgecascade.shared.v2.datatypes import DATATYPES, as_bytes_element, element_count

# Which kinds of JSON-parsed arrays each target kind accepts: JSON has no int/float split
# for floats' sake (1 is a valid FP32), but a float is never a valid INT and a bool never a number.
_ACCEPTS = {"b": "b", "i": "iu", "u": "iu", "f": "fiu"}


def from_json_data(data: Any, datatype: str, shape: list[int], field: str) -> np.ndarray:
    """The tensor in `data`; `field` (e.g. `inputs[0].data`) names it in every error."""
    count = element_count(shape)
    if data is None:
        raise ProtocolError("missing: give `data` or parameters.binary_data_size", field=field)
    if datatype == "BYTES":
        items = _flatten(data, field)
        if len(items) != count:
            raise ProtocolError(f"{len(items)} values; shape {shape} needs {count}", field=field)
        out = np.empty(count, dtype=object)
        out[:] = [as_bytes_element(item, field) for item in items]
        return out.reshape(shape)
    target = DATATYPES[datatype]
    try:
        arr = np.asarray(data)
    except (ValueError, TypeError) as exc:  # ragged nesting
        raise ProtocolError(f"not a regular (flat or nested) array: {exc}", field=field) from None
    if arr.size != count:
        raise ProtocolError(f"{arr.size} values; shape {shape} of {datatype} needs {count}", field=field)
    if arr.ndim > 1 and list(arr.shape) != shape:
        raise ProtocolError(f"nested data has shape {list(arr.shape)}, not {shape}", field=field)
    if count == 0:
        return np.zeros(shape, dtype=target)
    if target.kind in "iu" and arr.dtype.kind in "fO":
        # numpy widens ints beyond int64 (UINT64's top half) to float or object: check exactly.
        return _exact_ints(data, target, datatype, shape, field)
    if arr.dtype.kind not in _ACCEPTS[target.kind]:
        raise ProtocolError(f"values of type {_kind_name(arr)} are not valid {datatype}", field=field)
    if target.kind in "iu":
        info = np.iinfo(target)
        if int(arr.min()) < info.min or int(arr.max()) > info.max:
            raise ProtocolError(f"a value is out of range for {datatype}", field=field)
    return arr.reshape(shape).astype(target, copy=False)


def to_json_data(arr: np.ndarray, datatype: str, field: str) -> list[Any]:
    """Flat row-major values; BYTES elements as UTF-8 strings (binary is the way for others)."""
    flat = arr.reshape(-1)
    if datatype != "BYTES":
        return flat.tolist()
    values: list[Any] = []
    for item in flat.tolist():
        raw = as_bytes_element(item, field)
        try:
            values.append(raw.decode("utf-8"))
        except UnicodeDecodeError:
            raise ProtocolError(
                "BYTES element is not UTF-8, so it cannot travel as JSON; send it binary", field=field
            ) from None
    return values


def _exact_ints(data: Any, target: np.dtype, datatype: str, shape: list[int], field: str) -> np.ndarray:
    items = _flatten(data, field)
    if not all(type(v) is int for v in items):
        raise ProtocolError(f"values must be integers for {datatype}", field=field)
    try:
        return np.array(items, dtype=target).reshape(shape)
    except OverflowError:
        raise ProtocolError(f"a value is out of range for {datatype}", field=field) from None


def _flatten(data: Any, field: str) -> list[Any]:
    if not isinstance(data, list):
        return [data]
    out: list[Any] = []
    stack = [iter(data)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            out.append(item)
        else:
            stack.pop()
    return out


def _kind_name(arr: np.ndarray) -> str:
    return {"b": "bool", "i": "int", "u": "int", "f": "float", "U": "string"}.get(arr.dtype.kind, "mixed")
