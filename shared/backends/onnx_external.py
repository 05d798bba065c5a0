"""An .onnx file's external data references, checked before any runtime opens the file.

A tensor may keep its bytes in another file (`external_data` {location, offset, length}).
onnxruntime releases before late 2025 read that location wherever it points: an absolute path
(/etc/passwd), one that climbs out of the model's folder (../../), a symlink out of it, or a
FIFO that blocks the load. The rule here, whatever the runtime's version: every location is a
regular file inside the model's own folder, and offset and length lie within it.

The file is walked as protobuf wire format (no `onnx` package on a device), without recursion,
through every place a TensorProto can sit: initializers, sparse initializers, node attributes
(tensors and subgraphs, at any depth), functions and training graphs. A file without the bytes
`location` anywhere holds no such reference and is not walked (one memory search)."""

from __future__ import annotations

import errno
import mmap
import os
import stat
from collections.abc import Iterator
from pathlib import Path

from edgecascade.shared.errors import ModelLoadError

# Message -> {field number: message type} for the length-delimited fields that lead to tensors
# (onnx.proto: ModelProto, TrainingInfoProto, GraphProto, NodeProto, AttributeProto,
# SparseTensorProto, FunctionProto).
_CHILDREN: dict[str, dict[int, str]] = {
    "model": {7: "graph", 20: "training", 25: "function"},
    "training": {1: "graph", 2: "graph"},
    "graph": {1: "node", 5: "tensor", 15: "sparse"},
    "node": {5: "attr"},
    "attr": {5: "tensor", 6: "graph", 10: "tensor", 11: "graph", 22: "sparse", 23: "sparse"},
    "sparse": {1: "tensor", 2: "tensor"},
    "function": {7: "node", 11: "attr"},
}
_TENSOR_NAME, _EXTERNAL_DATA, _DATA_LOCATION = 8, 13, 14
_EXTERNAL = 1  # TensorProto.DataLocation.EXTERNAL
#: onnxruntime's marker for "the offset is an address in this process" (its own in-memory use).
_MEMORY_MARKER = "*/_ORT_MEM_ADDR_/*"


class _Malformed(ValueError):
    """Not protobuf where a reference may hide: refused, since a runtime reading it
    differently is exactly what must not decide."""


def check_external_data(path: Path) -> None:
    """Raise ModelLoadError naming the model, the tensor and the location when an external
    data reference leaves the model's folder, is not a regular file or lies beyond its end."""
    refs = _references(path)
    if not refs:
        return
    base = os.path.realpath(path.parent)
    for tensor, entries in refs:
        where = f"external data of tensor {tensor!r}"
        locations = [value for key, value in entries if key == "location"]
        if not locations:
            raise ModelLoadError(str(path), f"{where} names no location")
        for location in locations:
            why = _location_problem(base, location, entries)
            if why:
                raise ModelLoadError(
                    str(path),
                    f"{where}: location {location[:120]!r} {why}; external data must be a file "
                    f"inside the model's folder {base}",
                )


def _location_problem(base: str, location: str, entries: list[tuple[str, str]]) -> str | None:
    if "\x00" in location or location == _MEMORY_MARKER:
        return "is not a file name"
    if os.path.isabs(location):
        return "is an absolute path"
    resolved = os.path.realpath(os.path.join(base, location))
    if os.path.commonpath([base, resolved]) != base or resolved == base:
        return f"resolves to {resolved}, outside the model's folder"
    try:
        info = os.stat(resolved)
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    if not stat.S_ISREG(info.st_mode):
        return "is not a regular file (a folder, device, pipe or socket)"
    numbers: dict[str, int] = {}
    for key in ("offset", "length"):
        texts = [value for k, value in entries if k == key]
        for text in texts:
            if not (text.isascii() and text.isdigit() and len(text) <= 20):
                return f"has {key} {text[:40]!r}, not a whole number >= 0"
            numbers[key] = int(text)
    end = numbers.get("offset", 0) + numbers.get("length", 0)
    if end > info.st_size:
        return f"holds {info.st_size} bytes; offset + length is {end}"
    return None


def _references(path: Path) -> list[tuple[str, list[tuple[str, str]]]]:
    """(tensor name, its external_data entries) of every tensor stored outside the file."""
    try:
        # O_NONBLOCK: a FIFO given as the model must not block here (the caller refuses it).
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return []  # the runtime (or load_backend) names the unreadable file
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_size == 0:
            return []
        try:
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
                if buf.find(b"location") < 0:
                    return []
                return list(_walk(buf, len(buf)))
        except _Malformed:
            raise ModelLoadError(str(path), "not a valid ONNX model (malformed protobuf)") from None
        except OSError as exc:
            if exc.errno in (errno.ENOMEM, errno.EINVAL, errno.ENODEV):
                return []  # cannot be mapped: the runtime reads it its own way
            raise


def _walk(buf: mmap.mmap, size: int) -> Iterator[tuple[str, list[tuple[str, str]]]]:
    """Every external tensor in the message tree, with an explicit stack (no recursion limit)."""
    stack: list[tuple[str, int, int]] = [("model", 0, size)]
    while stack:
        kind, start, end = stack.pop()
        if kind == "tensor":
            ref = _tensor(buf, start, end)
            if ref is not None:
                yield ref
            continue
        children = _CHILDREN[kind]
        for field, wire, value in _fields(buf, start, end):
            child = children.get(field)
            if child is not None and wire == 2:
                assert isinstance(value, tuple)
                stack.append((child, *value))


def _tensor(buf: mmap.mmap, start: int, end: int) -> tuple[str, list[tuple[str, str]]] | None:
    name, entries, external = "", [], False
    for field, wire, value in _fields(buf, start, end):
        if wire == 2 and isinstance(value, tuple):
            if field == _TENSOR_NAME:
                name = _text(buf, *value)
            elif field == _EXTERNAL_DATA:
                entries.append(_entry(buf, *value))
        elif wire == 0 and field == _DATA_LOCATION:
            external = external or value == _EXTERNAL
    return (name, entries) if entries or external else None


def _entry(buf: mmap.mmap, start: int, end: int) -> tuple[str, str]:
    """A StringStringEntryProto (key = 1, value = 2); the last of a repeated field wins."""
    key = value = ""
    for field, wire, span in _fields(buf, start, end):
        if wire == 2 and isinstance(span, tuple):
            if field == 1:
                key = _text(buf, *span)
            elif field == 2:
                value = _text(buf, *span)
    return key, value


def _text(buf: mmap.mmap, start: int, end: int) -> str:
    return os.fsdecode(buf[start:end])


def _fields(buf: mmap.mmap, start: int, end: int) -> Iterator[tuple[int, int, int | tuple[int, int]]]:
    """(field number, wire type, varint value or (start, end) of its bytes) of one message."""
    i = start
    while i < end:
        key, i = _varint(buf, i, end)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(buf, i, end)
            yield field, wire, value
        elif wire == 2:
            length, i = _varint(buf, i, end)
            if i + length > end:
                raise _Malformed
            yield field, wire, (i, i + length)
            i += length
        elif wire == 1:
            i += 8
        elif wire == 5:
            i += 4
        elif wire == 3:
            i = _skip_group(buf, i, end, field)
        else:
            raise _Malformed
    if i != end:
        raise _Malformed


def _skip_group(buf: mmap.mmap, i: int, end: int, field: int) -> int:
    """Past the end of a (deprecated) group, which protobuf skips in unknown fields."""
    open_groups = [field]
    while open_groups:
        key, i = _varint(buf, i, end)
        number, wire = key >> 3, key & 7
        if wire == 0:
            _, i = _varint(buf, i, end)
        elif wire == 2:
            length, i = _varint(buf, i, end)
            i += length
        elif wire == 1:
            i += 8
        elif wire == 5:
            i += 4
        elif wire == 3:
            open_groups.append(number)
        elif wire == 4 and number == open_groups[-1]:
            open_groups.pop()
        else:
            raise _Malformed
        if i > end:
            raise _Malformed
    return i


def _varint(buf: mmap.mmap, i: int, end: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if i >= end or shift > 63:
            raise _Malformed
        byte = buf[i]
        i += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, i
        shift += 7
