"""Image files for tests, written byte by byte: a PNG can declare any size while staying tiny."""

from __future__ import annotations

import struct
import zlib


def _chunk(kind: bytes, data: bytes) -> bytes:
    return (
        struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    )


def blank_png(width: int, height: int) -> bytes:
    """A valid 8-bit grayscale PNG of `width` x `height` black pixels. A block of rows is
    deflated once, ended with a full flush (which resets the compressor, so the segment can be
    repeated as is), and repeated: a 20000 x 20000 image (400 MB of pixels) is ~400 KB and
    takes well under a second to write."""
    row = b"\0" * (width + 1)  # filter byte 0, then the pixels
    rows_per_block = max(1, (1 << 22) // len(row))
    full, rest = divmod(height, rows_per_block)
    block = row * rows_per_block
    segment = _raw_segment(block)
    parts = [segment] * full
    adler = 1
    for _ in range(full):
        adler = zlib.adler32(block, adler)
    tail = row * rest
    adler = zlib.adler32(tail, adler)
    finisher = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    parts.append(finisher.compress(tail) + finisher.flush())
    stream = b"\x78\xda" + b"".join(parts) + struct.pack(">I", adler & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", stream) + _chunk(b"IEND", b"")


def _raw_segment(data: bytes) -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    return packer.compress(data) + packer.flush(zlib.Z_FULL_FLUSH)
