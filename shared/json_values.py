"""What a decoded JSON value must be to fit every store edgecascade writes it to.

Python's `json` accepts more than PostgreSQL's jsonb and SQLite's INTEGER do: `NaN` and
`Infinity` (jsonb: `Token "NaN" is invalid`), integers past 64 bits (`bigint out of range`,
SQLite `OverflowError`), strings with U+0000 or lone surrogates (jsonb refuses both, and a
surrogate cannot even be encoded to UTF-8), and nesting deep enough to overflow a recursive
reader. `check_value` refuses all of them, walking the value with an explicit stack, so the
check itself cannot hit Python's recursion limit."""

from __future__ import annotations

import math
from typing import Any

from edgecascade.shared.errors import ProtocolError

#: Deepest nesting accepted in a telemetry body (a record's own levels not counted).
MAX_DEPTH = 32
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1


def check_string(value: str, where: str) -> None:
    """Raise ProtocolError if `value` cannot be stored as text everywhere."""
    if "\x00" in value:
        raise ProtocolError("holds a NUL character (U+0000)", field=where)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ProtocolError(
            "holds a lone UTF-16 surrogate, which is not valid Unicode text", field=where
        ) from None


def check_value(value: Any, where: str, max_depth: int = MAX_DEPTH) -> None:
    """Raise ProtocolError naming the first part of `value` (as decoded by `json.loads`)
    that is not a finite number, a 64-bit integer, clean text, or nested at most `max_depth`."""
    # (item, depth, parent path, key): a path is only spelled out for a container or an error.
    stack: list[tuple[Any, int, str, object]] = [(value, 0, where, None)]
    while stack:
        item, depth, parent, key = stack.pop()
        if isinstance(item, bool) or item is None:
            continue
        if isinstance(item, int):
            if not INT64_MIN <= item <= INT64_MAX:
                raise ProtocolError("integer does not fit in 64 bits", field=_path(parent, key))
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise ProtocolError(f"{item!r} is not a finite number", field=_path(parent, key))
        elif isinstance(item, str):
            check_string(item, _path(parent, key))
        elif isinstance(item, dict | list):
            path = _path(parent, key)
            if depth >= max_depth:
                raise ProtocolError(f"nested deeper than {max_depth} levels", field=path)
            if isinstance(item, dict):
                for name, child in item.items():
                    check_string(name, f"{path}.<key>")
                    stack.append((child, depth + 1, path, name))
            else:
                stack.extend((child, depth + 1, path, i) for i, child in enumerate(item))
        else:
            raise ProtocolError(f"a {type(item).__name__} is not a JSON value", field=_path(parent, key))


def _path(parent: str, key: object) -> str:
    if key is None:
        return parent
    name = str(key)
    return f"{parent}.{name if len(name) <= 40 else name[:37] + '...'}"
