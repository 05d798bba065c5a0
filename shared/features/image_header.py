"""An image's width and height from its first bytes, without decoding it: a 400 KiB PNG can
declare 20000 x 20000 pixels (1.2 GB decoded), so the size is checked before the decoder runs.
Formats: PNG, JPEG, BMP, GIF, WebP and PNM (PBM/PGM/PPM)."""

from __future__ import annotations

import struct

#: Formats whose header this module reads; anything else is refused before decoding.
FORMATS = ("PNG", "JPEG", "BMP", "GIF", "WebP", "PNM")

# JPEG start-of-frame markers carry the size; C4 (DHT), C8 (JPG) and CC (DAC) do not.
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def image_size(data: bytes) -> tuple[str, int, int] | None:
    """(format, width, height) as the header declares them, or None when the bytes are not
    one of FORMATS or the header is cut short."""
    try:
        if data.startswith(b"\x89PNG\r\n\x1a\n") and data[12:16] == b"IHDR":
            width, height = struct.unpack_from(">II", data, 16)
            return "PNG", width, height
        if data.startswith(b"\xff\xd8"):
            return _jpeg(data)
        if data.startswith(b"BM"):
            return _bmp(data)
        if data[:6] in (b"GIF87a", b"GIF89a"):
            width, height = struct.unpack_from("<HH", data, 6)
            return "GIF", width, height
        if data.startswith(b"RIFF") and data[8:12] == b"WEBP":
            return _webp(data)
        if len(data) > 2 and data[0:1] == b"P" and data[1:2] in b"123456":
            return _pnm(data)
    except struct.error:  # the header is cut short
        return None
    return None


def _jpeg(data: bytes) -> tuple[str, int, int] | None:
    offset = 2
    while offset + 4 <= len(data):
        if data[offset] != 0xFF:
            return None
        marker = data[offset + 1]
        if marker == 0xFF:  # fill byte
            offset += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD9)):  # standalone markers: no length
            offset += 2
            continue
        (length,) = struct.unpack_from(">H", data, offset + 2)
        if marker in _SOF:
            height, width = struct.unpack_from(">HH", data, offset + 5)
            return "JPEG", width, height
        if marker == 0xDA or length < 2:  # start of scan before any frame header: malformed
            return None
        offset += 2 + length
    return None


def _bmp(data: bytes) -> tuple[str, int, int] | None:
    (header_size,) = struct.unpack_from("<I", data, 14)
    if header_size == 12:  # BITMAPCOREHEADER
        width, height = struct.unpack_from("<hh", data, 18)
    else:
        width, height = struct.unpack_from("<ii", data, 18)
    return "BMP", abs(width), abs(height)  # a negative height means top-down rows


def _webp(data: bytes) -> tuple[str, int, int] | None:
    chunk = data[12:16]
    if chunk == b"VP8 ":
        width, height = struct.unpack_from("<HH", data, 26)
        return "WebP", width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L":
        (bits,) = struct.unpack_from("<I", data, 21)
        return "WebP", (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X":
        raw = data[24:30]
        if len(raw) < 6:
            return None
        return "WebP", int.from_bytes(raw[0:3], "little") + 1, int.from_bytes(raw[3:6], "little") + 1
    return None


def _pnm(data: bytes) -> tuple[str, int, int] | None:
    numbers: list[int] = []
    pos = 2
    end = min(len(data), 1024)  # width and height come within the first few lines
    while len(numbers) < 2 and pos < end:
        char = data[pos : pos + 1]
        if char == b"#":
            newline = data.find(b"\n", pos)
            if newline < 0:
                return None
            pos = newline + 1
        elif char.isspace():
            pos += 1
        elif char.isdigit():
            start = pos
            while pos < end and data[pos : pos + 1].isdigit():
                pos += 1
            numbers.append(int(data[start:pos]))
        else:
            return None
    return ("PNM", numbers[0], numbers[1]) if len(numbers) == 2 else None
