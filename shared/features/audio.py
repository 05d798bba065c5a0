"""Audio: WAV bytes -> mono samples (decode_wav) and samples -> model examples (encode_audio).

The RIFF parser is our own, not the stdlib `wave` module: `wave` reads integer PCM only
(3.11 refuses 32-bit float WAV, format 3), and one parser for all three formats keeps one set
of limits and errors. Samples are decoded to float32 in [-1, 1]; mono by averaging channels;
a clip at another rate than the model's is resampled (resample)."""

from __future__ import annotations

import math
import struct

import numpy as np

from edgecascade.shared.errors import InputError
from edgecascade.shared.features.spec import AudioEncoding

_PCM, _FLOAT, _EXTENSIBLE = 1, 3, 0xFFFE
#: Highest sample rate read or resampled to (audio interfaces stop at 768 kHz); a WAV header can
#: claim any 32-bit rate, and resampling pads by a period of the two rates.
MAX_RATE = 1_000_000
_KINDS = {(_PCM, 8): "PCM8", (_PCM, 16): "PCM16", (_PCM, 32): "PCM32", (_FLOAT, 32): "float32"}


def decode_wav(data: bytes, max_seconds: float) -> tuple[np.ndarray, int]:
    """WAV bytes -> (float32 mono samples in [-1, 1], sample rate). PCM 8/16/32-bit and 32-bit
    float, any channel count (averaged). A clip over `max_seconds` is refused before its
    samples are converted; anything else unreadable is an InputError saying what it found."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise InputError(f"not a WAV file (no RIFF/WAVE header in its first 12 of {len(data)} bytes)")
    fmt: tuple[int, int, int, int] | None = None
    pos = 12
    while pos + 8 <= len(data):
        chunk, size = data[pos : pos + 4], struct.unpack_from("<I", data, pos + 4)[0]
        body = data[pos + 8 : pos + 8 + size]
        if chunk == b"fmt ":
            if len(body) < 16:
                raise InputError(f"WAV fmt chunk is {len(body)} bytes; expected at least 16")
            tag, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", body)
            if tag == _EXTENSIBLE and len(body) >= 26:
                tag = struct.unpack_from("<H", body, 24)[0]  # the sub-format GUID's first two bytes
            fmt = (tag, channels, rate, bits)
        elif chunk == b"data":
            if fmt is None:
                raise InputError("WAV data chunk comes before its fmt chunk")
            return _samples(body, *fmt, max_seconds=max_seconds), fmt[2]
        pos += 8 + size + (size & 1)  # chunks are padded to an even size
    raise InputError("WAV file has no data chunk" if fmt else "WAV file has no fmt chunk")


def _samples(body: bytes, tag: int, channels: int, rate: int, bits: int, *, max_seconds: float) -> np.ndarray:
    kind = _KINDS.get((tag, bits))
    if kind is None:
        raise InputError(
            f"WAV format {tag} with {bits}-bit samples is not supported; use PCM 8/16/32-bit or 32-bit float"
        )
    if channels < 1:
        raise InputError(f"WAV declares {channels} channels; expected at least 1")
    if not 1 <= rate <= MAX_RATE:
        raise InputError(f"WAV declares {rate} Hz; expected 1 to {MAX_RATE:,} Hz")
    width = bits // 8
    frames = len(body) // (width * channels)
    if frames > max_seconds * rate:
        raise InputError(
            f"WAV clip of {frames / rate:.1f} s is over the limit of {max_seconds:g} s (pipeline.max_seconds)"
        )
    raw = body[: frames * width * channels]
    if kind == "PCM8":
        x = (np.frombuffer(raw, dtype=np.uint8).astype(np.float32) - 128.0) / 128.0
    elif kind == "PCM16":
        x = np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0
    elif kind == "PCM32":
        x = (np.frombuffer(raw, dtype="<i4").astype(np.float64) / 2147483648.0).astype(np.float32)
    else:
        x = np.frombuffer(raw, dtype="<f4").astype(np.float32)
        if not np.isfinite(x).all():
            raise InputError("WAV float samples include NaN or infinity")
        x = np.clip(x, -1.0, 1.0)
    return x.reshape(frames, channels).mean(axis=1, dtype=np.float32)


def resample(samples: np.ndarray, rate: int, target: int) -> np.ndarray:
    """Mono float samples at `rate` -> the same sound at `target` Hz, band-limited: the spectrum
    is cut above the lower Nyquist frequency (so a downsampled tone above it vanishes instead of
    folding back as a false lower one) or zero-padded. The clip is mirrored at both ends first:
    the FFT treats a clip as periodic, and a jump from its end back to its start would ring."""
    if not (1 <= rate <= MAX_RATE and 1 <= target <= MAX_RATE):
        raise InputError(f"cannot resample {rate} Hz to {target} Hz; rates go from 1 to {MAX_RATE:,} Hz")
    x = np.asarray(samples, dtype=np.float64).reshape(-1)
    n = len(x)
    out = round(n * target / rate)
    if rate == target:
        return x.astype(np.float32)
    if n < 2 or out < 2:  # nothing to interpolate between: hold the value
        return np.full(max(out, 0), x[0] if n else 0.0, dtype=np.float32)
    # Pads in whole periods of the two rates (q input samples to p output samples), so the
    # output's samples fall exactly on the target rate's grid.
    g = math.gcd(rate, target)
    q, p = rate // g, target // g
    left = q * -(-max(64, n // 8) // q)
    length = q * -(-(n + 2 * left) // q)
    padded = np.pad(x, (left, length - n - left), mode="reflect")
    total = length // q * p
    spectrum = np.fft.rfft(padded)
    kept = np.zeros(total // 2 + 1, dtype=np.complex128)
    bins = min(len(kept), len(spectrum))
    kept[:bins] = spectrum[:bins]
    y = np.fft.irfft(kept, n=total) * (total / length)
    start = left // q * p
    return np.clip(y[start : start + out], -1.0, 1.0).astype(np.float32)


def encode_audio(samples: np.ndarray, rate: int, enc: AudioEncoding) -> np.ndarray:
    """Mono float samples in [-1, 1] at `rate` -> one example of `enc.tensor_shape`: resampled
    to enc.sample_rate, then zero-padded or cut to enc.samples (fit = pad_crop) or refused
    unless it has exactly that many (exact)."""
    if rate != enc.sample_rate:
        samples = resample(samples, rate, enc.sample_rate)
        rate = enc.sample_rate
    x = np.asarray(samples, dtype=np.float32).reshape(-1)
    n = enc.samples
    if enc.fit == "exact" and len(x) != n:
        raise InputError(
            f"audio has {len(x)} samples; the model takes exactly {n} ({n / rate:g} s at {rate} Hz, pipeline.fit = exact)"
        )
    row = np.zeros(n, dtype=np.float32)
    row[: min(n, len(x))] = x[:n]
    if enc.values == "int16":
        return np.clip(np.rint(row * 32768.0), -32768, 32767).astype(np.int16).reshape(enc.tensor_shape)
    return row.reshape(enc.tensor_shape)
