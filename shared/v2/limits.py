"""Bounds on one request, checked from the header's numbers before anything is allocated: the
body, its JSON part, the rank and element count of each shape, the decoded tensor bytes."""

from __future__ import annotations

from dataclasses import dataclass

from edgecascade.shared.errors import PayloadTooLargeError, ProtocolError
from edgecascade.shared.v2.datatypes import DATATYPES

#: Size counted for one BYTES element before its data is known (its 4-byte length prefix).
_BYTES_ELEMENT = 4


@dataclass(frozen=True, slots=True)
class RequestLimits:
    """Per request. `max_body_bytes` also bounds a decompressed body; `max_json_bytes` the JSON
    part, since parsed JSON numbers take ~30 bytes each in Python (a JSON body of N bytes can
    cost 10-15 N in memory, a binary tensor only N)."""

    max_body_bytes: int = 64 << 20
    max_json_bytes: int = 16 << 20
    max_tensor_bytes: int = 256 << 20
    max_elements: int = 1 << 26
    max_rank: int = 16

    def check_body(self, size: int, what: str = "request body") -> None:
        if size > self.max_body_bytes:
            raise PayloadTooLargeError(
                f"{what} is {size} bytes; the limit is {self.max_body_bytes}", field="body"
            )

    def check_json(self, size: int) -> None:
        if size > self.max_json_bytes:
            raise PayloadTooLargeError(
                f"the JSON part is {size} bytes; the limit is {self.max_json_bytes} "
                "(send large tensors with the binary tensor extension)",
                field="body",
            )


#: What a decoder uses when the caller gives no limits: generous, but no input can make it
#: allocate more than max_tensor_bytes or build an array numpy cannot represent.
DEFAULT_LIMITS = RequestLimits()


class BodyBudget:
    """Bytes of request bodies a server holds at once, across its connections (the agent's
    local API, one cloud worker): many clients uploading large bodies together would otherwise
    hold a body limit each. At least one body of `min_bytes` (the per-request limit) always
    fits. Used from one event loop, so no lock is needed."""

    def __init__(self, max_bytes: int, min_bytes: int = 0) -> None:
        self.max_bytes = max(max_bytes, min_bytes)
        self.held = 0

    def take(self, n: int) -> bool:
        """Hold `n` more bytes; False (nothing held) past the budget."""
        if self.held + n > self.max_bytes:
            return False
        self.held += n
        return True

    def give(self, n: int) -> None:
        self.held -= n


class TensorBudget:
    """Counts the elements and bytes a request's tensors will take, across its tensors."""

    def __init__(self, limits: RequestLimits) -> None:
        self.limits = limits
        self.elements = 0
        self.bytes = 0

    def admit(self, shape: list[int], datatype: str, where: str, index: int, *, allow_empty: bool) -> int:
        """The element count of `shape` (of tensor `where[index]`); raises ProtocolError (400) for
        a bad shape and PayloadTooLargeError (413) when the request's tensors would pass a limit.
        Field names are formatted only for an error: this runs for every tensor of every request."""
        limits = self.limits
        if len(shape) > limits.max_rank or (shape and min(shape) <= 0):
            return self._odd_shape(shape, f"{where}[{index}].shape", allow_empty)
        count = 1
        for dim in shape:
            count *= dim  # Python ints: no overflow; stopped as soon as it passes the limit
            if count > limits.max_elements:
                raise PayloadTooLargeError(
                    f"shape {_short(shape)} has over {limits.max_elements} elements (the limit per request)",
                    field=f"{where}[{index}].shape",
                )
        self.elements += count
        if self.elements > limits.max_elements:
            raise PayloadTooLargeError(
                f"the request's tensors have {self.elements} elements; the limit is {limits.max_elements}",
                field=f"{where}[{index}].shape",
            )
        itemsize = _BYTES_ELEMENT if datatype == "BYTES" else DATATYPES[datatype].itemsize
        self.bytes += count * itemsize
        if self.bytes > limits.max_tensor_bytes:
            raise PayloadTooLargeError(
                f"the request's tensors take {self.bytes} bytes; the limit is {limits.max_tensor_bytes}",
                field=f"{where}[{index}].shape",
            )
        return count

    def _odd_shape(self, shape: list[int], field: str, allow_empty: bool) -> int:
        """Too many dimensions, a negative one (400) or a zero one (400 unless `allow_empty`)."""
        limits = self.limits
        if len(shape) > limits.max_rank:
            raise ProtocolError(
                f"{len(shape)} dimensions; at most {limits.max_rank} are accepted", field=field
            )
        if min(shape) < 0:
            raise ProtocolError(f"negative dimension in {_short(shape)}", field=field)
        if not allow_empty:
            raise ProtocolError(f"shape {_short(shape)} has no elements", field=field)
        if max(shape) > limits.max_elements:  # numpy refuses such shapes even when empty
            raise ProtocolError(
                f"shape {_short(shape)} has a dimension over {limits.max_elements}", field=field
            )
        return 0


def _short(shape: list[int]) -> str:
    return str(shape) if len(shape) <= 8 else f"[{', '.join(map(str, shape[:8]))}, ...] ({len(shape)} dims)"
