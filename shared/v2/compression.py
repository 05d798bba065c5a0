"""HTTP body compression, as tritonclient's `request_compression_algorithm` and
`response_compression_algorithm` use it: gzip or deflate request bodies (Content-Encoding),
compressed responses where Accept-Encoding allows. Decompression stops at a byte limit, so a
small "zip bomb" is refused without allocating what it would expand to."""

from __future__ import annotations

import zlib

from edgecascade.shared.errors import PayloadTooLargeError, ProtocolError, UnsupportedEncodingError

#: Content-Encoding -> zlib wbits: gzip framing, or the zlib format that HTTP calls deflate.
_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}
ENCODINGS = ("gzip", "deflate")
_CHUNK = 1 << 16


def decompress_body(body: bytes, content_encoding: str | None, limit: int) -> bytes:
    """The body without its Content-Encoding. Raises UnsupportedEncodingError (415) for an
    encoding other than identity/gzip/deflate, ProtocolError for corrupt data and
    PayloadTooLargeError (413) once the output would pass `limit` bytes."""
    if not content_encoding:
        return body
    codings = [c.strip().lower() for c in content_encoding.split(",") if c.strip()]
    for coding in reversed(codings):  # the last one listed was applied last
        if coding == "identity":
            continue
        wbits = _WBITS.get(coding)
        if wbits is None:
            raise UnsupportedEncodingError(
                f"{coding[:40]!r} is not supported; use gzip, deflate or identity", field="Content-Encoding"
            )
        body = _inflate(body, wbits, coding, limit)
    return body


def _inflate(data: bytes, wbits: int, coding: str, limit: int) -> bytes:
    # Raw deflate (no zlib header) is what some clients send as "deflate": try it second.
    attempts = (wbits, -zlib.MAX_WBITS) if coding == "deflate" else (wbits,)
    first: zlib.error | None = None
    for bits in attempts:
        try:
            return _inflate_bounded(data, bits, limit)
        except zlib.error as exc:
            first = first or exc  # the reason under the coding the client named
    raise ProtocolError(f"body is not valid {coding} data ({first})", field="Content-Encoding")


def _inflate_bounded(data: bytes, wbits: int, limit: int) -> bytes:
    parts: list[bytes] = []
    size = 0
    pending = data
    while True:  # gzip allows several members one after another
        inflater = zlib.decompressobj(wbits)
        while not inflater.eof:
            # max_length: zlib stops there and keeps the rest in unconsumed_tail, so the output
            # is produced (and checked) a chunk at a time.
            chunk = inflater.decompress(pending, _CHUNK)
            pending = inflater.unconsumed_tail
            if not chunk and not pending:
                break
            size += len(chunk)
            if size > limit:
                raise PayloadTooLargeError(
                    f"the decompressed body passes the limit of {limit} bytes", field="Content-Encoding"
                )
            parts.append(chunk)
        if not inflater.eof:
            raise zlib.error("truncated stream")
        pending = inflater.unused_data
        if not pending:
            return b"".join(parts)
        # What follows the end is refused, not silently dropped, unless it is another gzip member.
        if wbits != _WBITS["gzip"] or not pending.startswith(b"\x1f\x8b"):
            raise zlib.error(f"{len(pending)} bytes after the end of the compressed data")


def choose_encoding(accept_encoding: str | None) -> str | None:
    """gzip or deflate if Accept-Encoding allows one (q > 0), preferring the client's highest q;
    None for identity."""
    if not accept_encoding:
        return None
    best: tuple[float, str] | None = None
    for item in accept_encoding.split(","):
        name, _, params = item.strip().partition(";")
        name = name.strip().lower()
        q = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if name == "*":
            name = "gzip"
        if name in ENCODINGS and q > 0 and (best is None or q > best[0]):
            best = (q, name)
    return best[1] if best else None


def compress_body(body: bytes, encoding: str) -> bytes:
    """`body` in `encoding` (gzip or deflate), at a fast level: these are small, hot answers."""
    compressor = zlib.compressobj(1, zlib.DEFLATED, _WBITS[encoding])
    return compressor.compress(body) + compressor.flush()
