"""A .tflite with every dimension dynamic, written as a flatbuffer without TensorFlow.

    python -m edgecascade.tools.build_models_tflite --out tests/fixtures/models

  dynamic_add_mul.tflite  input `x` float32, shape_signature [-1, -1, -1]; outputs
                          `sum` = x + x and `product` = x * x (ADD and MUL, builtin kernels)
  int8_requantize.tflite  int8 input `x` [1, -1] (scale 0.5, zero point -3), uint8 output `y`
                          (scale 0.25, zero point 128): int8 in, uint8 out, as streaming
                          keyword spotters are
  reshape_needs_resize.tflite  float32 x [1, -1] -> RESHAPE to [2, -1]: cannot allocate at its
                          default 1-element size, only once resized (to an even length)

TensorFlow is the usual way to make a .tflite (tools/tflite_export.py) but it is a 1.8 GB
install; this model only needs the schema's tables (tensorflow/lite/schema/schema.fbs), so it
is written field by field with the `flatbuffers` package (a dependency of ai-edge-litert)."""

from __future__ import annotations

import argparse
from pathlib import Path

import flatbuffers
import numpy as np

FLOAT32, UINT8, INT8 = 0, 3, 9  # TensorType
INT8_IN, UINT8_OUT = (0.5, -3), (0.25, 128)  # (scale, zero point)
INT32 = 2
ADD, AVERAGE_POOL_2D, CONV_2D, MUL, RESHAPE, SOFTMAX, QUANTIZE = 0, 1, 3, 18, 22, 25, 114  # BuiltinOperator
CONV2D_OPTIONS, POOL2D_OPTIONS, SOFTMAX_OPTIONS = 1, 5, 9  # BuiltinOptions union types
VALID = 1  # Padding


def _ints(b: flatbuffers.Builder, values: list[int]) -> int:
    b.StartVector(4, len(values), 4)
    for v in reversed(values):
        b.PrependInt32(v)
    return b.EndVector()


def _offsets(b: flatbuffers.Builder, offsets: list[int]) -> int:
    b.StartVector(4, len(offsets), 4)
    for o in reversed(offsets):
        b.PrependUOffsetTRelative(o)
    return b.EndVector()


def _quantization(b: flatbuffers.Builder, scale: float | list[float], zero_point: int | list[int]) -> int:
    """Per-tensor (scalars) or per-channel along dimension 0 (lists)."""
    scales_list = scale if isinstance(scale, list) else [scale]
    zps_list = zero_point if isinstance(zero_point, list) else [zero_point]
    b.StartVector(4, len(scales_list), 4)
    for v in reversed(scales_list):
        b.PrependFloat32(v)
    scales = b.EndVector()
    b.StartVector(8, len(zps_list), 8)
    for z in reversed(zps_list):
        b.PrependInt64(z)
    zero_points = b.EndVector()
    b.StartObject(7)
    b.PrependUOffsetTRelativeSlot(2, scales, 0)
    b.PrependUOffsetTRelativeSlot(3, zero_points, 0)
    return b.EndObject()


def _tensor(
    b: flatbuffers.Builder,
    name: str,
    shape: list[int],
    signature: list[int],
    dtype: int = FLOAT32,
    quant: tuple[float | list[float], int | list[int]] | None = None,
    buffer: int = 0,
) -> int:
    name_off = b.CreateString(name)
    shape_off = _ints(b, shape)
    sig_off = _ints(b, signature)
    quant_off = _quantization(b, *quant) if quant else None
    b.StartObject(10)
    b.PrependUOffsetTRelativeSlot(0, shape_off, 0)
    b.PrependInt8Slot(1, dtype, -1)  # always written
    b.PrependUint32Slot(2, buffer, buffer + 1)  # always written; buffer 0 is the empty sentinel
    b.PrependUOffsetTRelativeSlot(3, name_off, 0)
    if quant_off is not None:
        b.PrependUOffsetTRelativeSlot(4, quant_off, 0)
    b.PrependUOffsetTRelativeSlot(7, sig_off, 0)
    return b.EndObject()


def _operator(
    b: flatbuffers.Builder,
    opcode_index: int,
    inputs: list[int],
    outputs: list[int],
    options: tuple[int, int] | None = None,
) -> int:
    """`options` is (BuiltinOptions union type, options table offset), built beforehand."""
    ins, outs = _ints(b, inputs), _ints(b, outputs)
    b.StartObject(13)
    b.PrependUint32Slot(0, opcode_index, 1 << 31)
    b.PrependUOffsetTRelativeSlot(1, ins, 0)
    b.PrependUOffsetTRelativeSlot(2, outs, 0)
    if options is not None:
        b.PrependUint8Slot(3, options[0], 0)
        b.PrependUOffsetTRelativeSlot(4, options[1], 0)
    return b.EndObject()


def _conv_options(b: flatbuffers.Builder, stride: int, relu: bool) -> tuple[int, int]:
    b.StartObject(7)
    b.PrependInt8Slot(0, VALID, -1)
    b.PrependInt32Slot(1, stride, -1)
    b.PrependInt32Slot(2, stride, -1)
    b.PrependInt8Slot(3, 1 if relu else 0, -1)  # fused activation: RELU or NONE
    b.PrependInt32Slot(4, 1, -1)
    b.PrependInt32Slot(5, 1, -1)
    return CONV2D_OPTIONS, b.EndObject()


def _pool_options(b: flatbuffers.Builder, size: int) -> tuple[int, int]:
    b.StartObject(6)
    b.PrependInt8Slot(0, VALID, -1)
    b.PrependInt32Slot(1, size, -1)
    b.PrependInt32Slot(2, size, -1)
    b.PrependInt32Slot(3, size, -1)
    b.PrependInt32Slot(4, size, -1)
    b.PrependInt8Slot(5, 0, -1)
    return POOL2D_OPTIONS, b.EndObject()


def _softmax_options(b: flatbuffers.Builder) -> tuple[int, int]:
    b.StartObject(1)
    b.PrependFloat32Slot(0, 1.0, 0.0)
    return SOFTMAX_OPTIONS, b.EndObject()


def _data(b: flatbuffers.Builder, array: np.ndarray) -> int:
    """A buffer's bytes, 16-byte aligned so the runtime can use them in place."""
    raw = np.ascontiguousarray(array).tobytes()
    b.StartVector(1, len(raw), 16)
    b.head = b.head - len(raw)
    b.Bytes[b.head : b.head + len(raw)] = raw
    return b.EndVector()


class _Subgraph:
    """The tensors, their constant buffers and the operators of one model being written, in
    the order they are added (the bytes written depend on it)."""

    def __init__(self) -> None:
        self.b = flatbuffers.Builder(1 << 16)
        self.buffers: list[int] = []
        self.tensors: list[int] = []
        self.ops: list[int] = []

    def tensor(
        self,
        name: str,
        shape: list[int],
        dtype: int = FLOAT32,
        quant: tuple | None = None,
        data: np.ndarray | None = None,
    ) -> int:
        """A static-shape tensor, constant when `data` is given; returns its index."""
        buffer = 0
        if data is not None:
            self.buffers.append(_data(self.b, data))
            buffer = len(self.buffers)
        self.tensors.append(_tensor(self.b, name, shape, shape, dtype, quant, buffer=buffer))
        return len(self.tensors) - 1

    def op(
        self, opcode_index: int, inputs: list[int], outputs: list[int], options: tuple[int, int] | None = None
    ) -> None:
        self.ops.append(_operator(self.b, opcode_index, inputs, outputs, options))

    def model(self, inputs: list[int], outputs: list[int], codes: list[int | tuple[int, int]]) -> bytes:
        return _model(self.b, self.tensors, self.ops, inputs, outputs, codes, self.buffers)


def _onnx_weights(onnx_path: Path) -> dict[str, np.ndarray]:
    import onnx
    from onnx import numpy_helper

    return {t.name: numpy_helper.to_array(t) for t in onnx.load(str(onnx_path)).graph.initializer}


def detector_from_onnx(onnx_path: Path) -> bytes:
    """The raw edge digit detector (tools/build_detector.py) as float TFLite, NHWC, with the
    trained weights read from its ONNX file: AVERAGE_POOL_2D, CONV_2D (+RELU), RESHAPE and
    SOFTMAX; outputs `scores` [1, 169, 11] and `deltas` [1, 169, 4], batch 1."""
    weights = _onnx_weights(onnx_path)
    g = _Subgraph()
    image = g.tensor("image", [1, 64, 64, 1])
    pooled = g.tensor("pooled", [1, 32, 32, 1])
    g.op(0, [image], [pooled], _pool_options(g.b, 2))
    heads = {
        head: _float_head(g, weights, head, classes, pooled) for head, classes in (("cls", 11), ("reg", 4))
    }
    scores = g.tensor("scores", [1, 169, 11])
    g.op(3, [heads["cls"]], [scores], _softmax_options(g.b))
    return g.model([image], [scores, heads["reg"]], [AVERAGE_POOL_2D, CONV_2D, RESHAPE, SOFTMAX])


def _float_head(g: _Subgraph, weights: dict[str, np.ndarray], head: str, classes: int, pooled: int) -> int:
    """One head's two convolutions and the reshape to [1, 169, classes]; returns that tensor."""
    w0, b0 = weights[f"{head}_W0"], weights[f"{head}_B0"]  # [H, 1, 8, 8] OIHW
    w1, b1 = weights[f"{head}_W1"], weights[f"{head}_B1"]  # [C, H, 1, 1]
    hidden = w0.shape[0]
    tw0 = g.tensor(f"{head}_W0", [hidden, 8, 8, 1], data=w0.transpose(0, 2, 3, 1).astype("<f4"))
    tb0 = g.tensor(f"{head}_B0", [hidden], data=b0.astype("<f4"))
    h0 = g.tensor(f"{head}_h0", [1, 13, 13, hidden])
    g.op(1, [pooled, tw0, tb0], [h0], _conv_options(g.b, 2, relu=True))
    tw1 = g.tensor(f"{head}_W1", [classes, 1, 1, hidden], data=w1.transpose(0, 2, 3, 1).astype("<f4"))
    tb1 = g.tensor(f"{head}_B1", [classes], data=b1.astype("<f4"))
    z = g.tensor(f"{head}_z", [1, 13, 13, classes])
    g.op(1, [h0, tw1, tb1], [z], _conv_options(g.b, 1, relu=False))
    shape = g.tensor(f"{head}_shape", [3], INT32, data=np.array([1, 169, classes], "<i4"))
    flat = g.tensor("logits" if head == "cls" else "deltas", [1, 169, classes])
    g.op(2, [z, shape], [flat])
    return flat


def _opcode(b: flatbuffers.Builder, code: int | tuple[int, int]) -> int:
    """`code` is a BuiltinOperator, or (BuiltinOperator, version)."""
    op, version = code if isinstance(code, tuple) else (code, 1)
    b.StartObject(4)
    b.PrependInt8Slot(0, op, -1)
    b.PrependInt32Slot(2, version, 0)
    b.PrependInt32Slot(3, op, -1)
    return b.EndObject()


def dynamic_add_mul() -> bytes:
    """Float32 x [-1, -1, -1] -> sum = x + x, product = x * x."""
    b = flatbuffers.Builder(1024)
    dyn = [-1, -1, -1]
    tensors = [_tensor(b, n, [1, 1, 1], dyn) for n in ("x", "sum", "product")]
    operators = [_operator(b, 0, [0, 0], [1]), _operator(b, 1, [0, 0], [2])]
    return _model(b, tensors, operators, [0], [1, 2], [ADD, MUL])


def int8_requantize() -> bytes:
    """int8 x [1, -1] (scale 0.5, zero point -3) -> uint8 y (scale 0.25, zero point 128)."""
    b = flatbuffers.Builder(1024)
    tensors = [
        _tensor(b, "x", [1, 1], [1, -1], INT8, INT8_IN),
        _tensor(b, "y", [1, 1], [1, -1], UINT8, UINT8_OUT),
    ]
    return _model(b, tensors, [_operator(b, 0, [0], [1])], [0], [1], [QUANTIZE])


def reshape_needs_resize() -> bytes:
    """float32 x [1, -1] (1 element by default) reshaped to y [2, -1]: a 1-element input cannot
    be split in 2 rows, so the model allocates only once it is resized to an even length."""
    b = flatbuffers.Builder(1024)
    shape_data = b.CreateByteVector(np.array([2, -1], "<i4").tobytes())
    tensors = [
        _tensor(b, "x", [1, 1], [1, -1]),
        _tensor(b, "new_shape", [2], [2], INT32, buffer=1),
        _tensor(b, "y", [2, 1], [2, -1]),
    ]
    return _model(b, tensors, [_operator(b, 0, [0, 1], [2])], [0], [2], [RESHAPE], [shape_data])


def _model(
    b: flatbuffers.Builder, tensors: list[int], operators: list[int], inputs: list[int], outputs: list[int],
    builtin_codes: list[int | tuple[int, int]], buffer_data: list[int] | None = None,
) -> bytes:  # fmt: skip
    name = b.CreateString("main")
    t_vec, o_vec = _offsets(b, tensors), _offsets(b, operators)
    ins, outs = _ints(b, inputs), _ints(b, outputs)
    b.StartObject(5)
    b.PrependUOffsetTRelativeSlot(0, t_vec, 0)
    b.PrependUOffsetTRelativeSlot(1, ins, 0)
    b.PrependUOffsetTRelativeSlot(2, outs, 0)
    b.PrependUOffsetTRelativeSlot(3, o_vec, 0)
    b.PrependUOffsetTRelativeSlot(4, name, 0)
    subgraph = b.EndObject()
    codes = [_opcode(b, c) for c in builtin_codes]
    buffer_tables = []
    for data in [None, *(buffer_data or [])]:
        b.StartObject(3)
        if data is not None:
            b.PrependUOffsetTRelativeSlot(0, data, 0)
        buffer_tables.append(b.EndObject())
    codes_vec = _offsets(b, codes)
    subgraphs = _offsets(b, [subgraph])
    buffers = _offsets(b, buffer_tables)
    description = b.CreateString("edgecascade tools/build_models_tflite.py")
    b.StartObject(8)
    b.PrependUint32Slot(0, 3, 0)
    b.PrependUOffsetTRelativeSlot(1, codes_vec, 0)
    b.PrependUOffsetTRelativeSlot(2, subgraphs, 0)
    b.PrependUOffsetTRelativeSlot(3, description, 0)
    b.PrependUOffsetTRelativeSlot(4, buffers, 0)
    model = b.EndObject()
    b.Finish(model, file_identifier=b"TFL3")
    return bytes(b.Output())


def _asymmetric(lo: float, hi: float) -> tuple[float, int]:
    """int8 (scale, zero point) covering [lo, hi], which always includes 0."""
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    scale = max(hi - lo, 1e-8) / 255.0
    return float(np.float32(scale)), int(np.clip(round(-128 - lo / scale), -128, 127))


def _rounded(value: float) -> float:
    return float(f"{float(value):.5g}")


def detector_int8_from_onnx(onnx_path: Path, calibration: np.ndarray) -> bytes:
    """The same detector as full-integer int8 TFLite with int8 input and outputs: per-channel
    symmetric int8 weights, int32 biases, and activation ranges measured on `calibration`
    ((N, 1, 64, 64) training canvases), as TensorFlow's converter would set them."""
    from edgecascade.tools.build_detector import patch_features

    weights = _onnx_weights(onnx_path)
    feats = patch_features(calibration.astype(np.float32), pooled=True)  # (N, 169, 64)
    feats64 = feats.astype(np.float64)
    g = _Subgraph()
    in_q = (1 / 255, -128)  # pixels 0..1
    image = g.tensor("image", [1, 64, 64, 1], INT8, in_q)
    pooled = g.tensor("pooled", [1, 32, 32, 1], INT8, in_q)  # average pooling keeps the scale
    g.op(0, [image], [pooled], _pool_options(g.b, 2))
    outputs = {
        head: _int8_head(g, weights, feats64, head, classes, pooled, in_q)
        for head, classes in (("cls", 11), ("reg", 4))
    }
    scores = g.tensor("scores", [1, 169, 11], INT8, (1 / 256, -128))  # the int8 softmax's fixed range
    g.op(3, [outputs["cls"]], [scores], _softmax_options(g.b))
    codes: list[int | tuple[int, int]] = [(AVERAGE_POOL_2D, 2), (CONV_2D, 3), RESHAPE, (SOFTMAX, 2)]
    return g.model([image], [scores, outputs["reg"]], codes)


def _int8_head(
    g: _Subgraph,
    weights: dict[str, np.ndarray],
    feats: np.ndarray,
    head: str,
    classes: int,
    pooled: int,
    in_q: tuple[float, int],
) -> int:
    """One head's two int8 convolutions, with activation ranges measured on `feats` (float64),
    and the reshape to [1, 169, classes]; returns that tensor."""
    w0 = weights[f"{head}_W0"].reshape(-1, 64)  # [H, 64]: the MLP's first layer
    b0 = weights[f"{head}_B0"]
    w1 = weights[f"{head}_W1"].reshape(classes, -1)  # [C, H]
    b1 = weights[f"{head}_B1"]
    # Ranges in float64, rounded to 5 significant digits: float32 BLAS sums differ in their
    # last bits between CPUs, and the rebuilt file must be byte for byte the committed one.
    hidden = np.maximum(feats @ w0.T.astype(np.float64) + b0, 0)
    z = hidden @ w1.T.astype(np.float64) + b1
    h_q = _asymmetric(0.0, _rounded(hidden.max()))
    z_q = _asymmetric(_rounded(z.min()), _rounded(z.max()))
    layers = (
        (w0, b0, in_q, h_q, [w0.shape[0], 8, 8, 1], 2, True),
        (w1, b1, h_q, z_q, [classes, 1, 1, w1.shape[1]], 1, False),
    )
    source = pooled
    for i, (w, bias, src_q, out_q, shape, stride, relu) in enumerate(layers):
        w_int, w_scale, b_int, bias_scale = _int8_weights(w, bias, src_q[0], shape)
        tw = g.tensor(f"{head}_W{i}", shape, INT8, ([float(v) for v in w_scale], [0] * len(w_scale)), w_int)
        tb = g.tensor(
            f"{head}_B{i}", [len(bias)], INT32, ([float(v) for v in bias_scale], [0] * len(bias)), b_int
        )
        out = g.tensor(f"{head}_z{i}", [1, 13, 13, shape[0]], INT8, out_q)
        g.op(1, [source, tw, tb], [out], _conv_options(g.b, stride, relu=relu))
        source = out
    shape_t = g.tensor(f"{head}_shape", [3], INT32, (1.0, 0), np.array([1, 169, classes], "<i4"))
    flat = g.tensor("logits" if head == "cls" else "deltas", [1, 169, classes], INT8, z_q)
    g.op(2, [source, shape_t], [flat])
    return flat


def _int8_weights(
    w: np.ndarray, bias: np.ndarray, input_scale: float, shape: list[int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(int8 weights in `shape` (OHWI), their per-channel scales, int32 biases, their scales)."""
    peak = np.abs(w).max(axis=1)
    w_scale = np.where(peak > 1e-6, peak, 1.0) / 127.0  # a dead unit's bias must still fit
    w_int = np.clip(np.rint(w / w_scale[:, None]), -127, 127).astype(np.int8).reshape(shape)
    bias_scale = (input_scale * w_scale).astype(np.float32)
    b_int = np.clip(np.rint(bias / bias_scale), -(2**31), 2**31 - 1).astype("<i4")
    return w_int, w_scale, b_int, bias_scale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edgecascade.tools.build_models_tflite")
    parser.add_argument("--out", type=Path, default=Path("tests/fixtures/models"))
    args = parser.parse_args(argv)
    for name, build in (
        ("dynamic_add_mul.tflite", dynamic_add_mul),
        ("int8_requantize.tflite", int8_requantize),
        ("reshape_needs_resize.tflite", reshape_needs_resize),
    ):
        path = args.out / name
        path.write_bytes(build())
        print(f"wrote {path} ({path.stat().st_size} B)")
    source = args.out / "digit_detector_fp32.onnx"
    path = args.out / "digit_detector_fp32.tflite"
    path.write_bytes(detector_from_onnx(source))
    print(f"wrote {path} ({path.stat().st_size} B)")
    from edgecascade.tools.build_detector_data import canvas_splits

    train, _ = canvas_splits(train_count=200, held_count=1)
    int8 = args.out / "digit_detector_int8.tflite"
    int8.write_bytes(detector_int8_from_onnx(source, train.images))
    print(f"wrote {int8} ({int8.stat().st_size} B)")
    from edgecascade.tools.artifact_card import tool_versions
    from edgecascade.tools.build_models import describe_raw_detector

    tools = tool_versions("onnx", "numpy", "flatbuffers", "ai-edge-litert")
    for file, quant, float_source in ((path, "none", source.name), (int8, "int8", source.name)):
        recall, precision = describe_raw_detector(
            file, quantization=quant, float_source=float_source, layout="nhwc", tools=tools
        )
        print(f"  {file.name:28s} held-out recall {recall:.2%} precision {precision:.2%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
