"""A small audio classifier trained here on synthesized clips, to prove the audio pipeline end to
end (no speech data set is reachable offline; the real Silero VAD ONNX model in the silero-vad
wheel needs a scalar sample-rate input and a state tensor on every call, which a WAV file
alone does not give).

One second at 16 kHz -> 50 frames of 320 samples -> Hann-windowed power at 16 log-spaced
frequencies (a fixed DFT as two MatMuls) -> mean over frames -> log -> linear -> softmax over
three classes: `low` (a 120-500 Hz tone with harmonics), `high` (a 1.5-5 kHz tone), `noise`
(white noise). The features are computed inside the graph, so the model takes the raw
samples the card's audio pipeline makes: floats in [-1, 1], or int16 PCM values."""

from __future__ import annotations

import io
import struct
import wave
from pathlib import Path

import numpy as np

RATE = 16000
SAMPLES = 16000
FRAME = 320
LABELS = ("low", "high", "noise")
_FREQS = np.geomspace(100.0, 6000.0, 16)


def _basis() -> tuple[np.ndarray, np.ndarray]:
    t = np.arange(FRAME) / RATE
    window = np.hanning(FRAME)[:, None]
    phase = 2 * np.pi * t[:, None] * _FREQS[None, :]
    return (window * np.cos(phase)).astype(np.float32), (window * np.sin(phase)).astype(np.float32)


def features(x: np.ndarray) -> np.ndarray:
    """What the graph computes before its linear layer, in numpy (training uses this)."""
    cos, sin = _basis()
    frames = np.asarray(x, dtype=np.float32).reshape(len(x), SAMPLES // FRAME, FRAME)
    power = np.square(frames @ cos) + np.square(frames @ sin)
    return np.log(power.mean(axis=1) + np.float32(1e-6)).astype(np.float32)


def clip(label: str, rng: np.random.Generator, seconds: float = 1.0) -> np.ndarray:
    """One synthesized clip of `label`, float32 in [-1, 1]."""
    t = np.arange(int(RATE * seconds)) / RATE
    amp = rng.uniform(0.05, 0.6)
    if label == "noise":
        x = rng.normal(0.0, amp / 2, size=t.shape)
    else:
        f0 = rng.uniform(120, 500) if label == "low" else rng.uniform(1500, 5000)
        harmonics = (1, 2, 3) if label == "low" else (1,)
        x = np.zeros(t.shape)
        for h in harmonics:
            x += amp / h * np.sin(2 * np.pi * f0 * h * t + rng.uniform(0, 6.3))
        x = x + rng.normal(0.0, 0.01, size=t.shape)
    return np.clip(x, -1.0, 1.0).astype(np.float32)


def _train(seed: int = 0, per_class: int = 120) -> tuple[np.ndarray, np.ndarray, float]:
    rng = np.random.default_rng(seed)
    x = np.stack([clip(lab, rng) for lab in LABELS for _ in range(per_class)])
    y = np.repeat(np.arange(len(LABELS)), per_class)
    f = features(x)
    mu, sd = f.mean(axis=0), f.std(axis=0) + 1e-6
    z = (f - mu) / sd
    w = np.zeros((z.shape[1], len(LABELS)))
    b = np.zeros(len(LABELS))
    onehot = np.eye(len(LABELS))[y]
    for _ in range(300):  # softmax regression, plain gradient descent
        logits = z @ w + b
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        w -= 0.5 * (z.T @ (p - onehot) / len(z) + 1e-3 * w)
        b -= 0.5 * (p - onehot).mean(axis=0)
    # Standardization folded into the linear layer: the graph takes the raw log powers.
    w_raw = (w / sd[:, None]).astype(np.float32)
    b_raw = (b - (mu / sd) @ w).astype(np.float32)
    accuracy = float(((z @ w + b).argmax(axis=1) == y).mean())
    return w_raw, b_raw, accuracy


def build(path: Path, values: str = "unit", seed: int = 0) -> Path:
    """Write the classifier to `path` (input `audio` [N, 16000], float32 in [-1, 1] or int16
    with values="int16"; output `probabilities` [N, 3]) and its labels beside it."""
    from onnx import TensorProto, helper, numpy_helper, save

    w, b, _ = _train(seed)
    cos, sin = _basis()
    weights = {
        "frame_shape": np.array([-1, SAMPLES // FRAME, FRAME], dtype=np.int64),
        "cos": cos,
        "sin": sin,
        "eps": np.array(1e-6, dtype=np.float32),
        "w": w,
        "b": b,
        "int16_scale": np.array(1 / 32768, dtype=np.float32),
    }
    nodes = []
    source = "audio"
    if values == "int16":
        nodes += [
            helper.make_node("Cast", ["audio"], ["audio_f"], to=TensorProto.FLOAT),
            helper.make_node("Mul", ["audio_f", "int16_scale"], ["unit"]),
        ]
        source = "unit"
    nodes += [
        helper.make_node("Reshape", [source, "frame_shape"], ["frames"]),
        helper.make_node("MatMul", ["frames", "cos"], ["re"]),
        helper.make_node("MatMul", ["frames", "sin"], ["im"]),
        helper.make_node("Mul", ["re", "re"], ["re2"]),
        helper.make_node("Mul", ["im", "im"], ["im2"]),
        helper.make_node("Add", ["re2", "im2"], ["power"]),
        helper.make_node("ReduceMean", ["power"], ["mean_power"], axes=[1], keepdims=0),
        helper.make_node("Add", ["mean_power", "eps"], ["floored"]),
        helper.make_node("Log", ["floored"], ["logpower"]),
        helper.make_node("Gemm", ["logpower", "w", "b"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
    ]
    dtype = TensorProto.INT16 if values == "int16" else TensorProto.FLOAT
    graph = helper.make_graph(
        nodes,
        "tones",
        [helper.make_tensor_value_info("audio", dtype, ["N", SAMPLES])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", len(LABELS)])],
        [
            numpy_helper.from_array(v, k)
            for k, v in weights.items()
            if values == "int16" or k != "int16_scale"
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="edgecascade")
    model.ir_version = 8
    path.parent.mkdir(parents=True, exist_ok=True)
    save(model, str(path))
    path.with_name(path.stem + ".labels.txt").write_text("\n".join(LABELS) + "\n")
    return path


def wav_bytes(samples: np.ndarray, rate: int = RATE, kind: str = "pcm16", channels: int = 1) -> bytes:
    """Float samples in [-1, 1] ([T] or [T, channels]) as a WAV file: PCM16/PCM8 through the
    stdlib `wave` writer, 32-bit float (format 3, which `wave` cannot write) by hand."""
    x = np.asarray(samples, dtype=np.float32).reshape(len(samples), channels)
    if kind == "float32":
        data = x.astype("<f4").tobytes()
        fmt = struct.pack("<HHIIHH", 3, channels, rate, rate * channels * 4, channels * 4, 32)
        body = (
            b"WAVE"
            + b"fmt "
            + struct.pack("<I", len(fmt))
            + fmt
            + b"data"
            + struct.pack("<I", len(data))
            + data
        )
        return b"RIFF" + struct.pack("<I", len(body)) + body
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels)
        w.setframerate(rate)
        if kind == "pcm8":
            w.setsampwidth(1)
            w.writeframes((np.clip(np.rint(x * 128.0), -128, 127) + 128).astype(np.uint8).tobytes())
        else:
            w.setsampwidth(2)
            w.writeframes(np.clip(np.rint(x * 32768.0), -32768, 32767).astype("<i2").tobytes())
    return buf.getvalue()
