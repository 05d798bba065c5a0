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
ADD, MUL, RESHAPE, QUANTIZE = 0, 18, 22, 114  # BuiltinOperator


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


def _quantization(b: flatbuffers.Builder, scale: float, zero_point: int) -> int:
    b.StartVector(4, 1, 4)
    b.PrependFloat32(scale)
    scales = b.EndVector()
    b.StartVector(8, 1, 8)
    b.PrependInt64(zero_point)
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
    quant: tuple[float, int] | None = None,
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


def _operator(b: flatbuffers.Builder, opcode_index: int, inputs: list[int], outputs: list[int]) -> int:
    ins, outs = _ints(b, inputs), _ints(b, outputs)
    b.StartObject(13)
    b.PrependUint32Slot(0, opcode_index, 1 << 31)
    b.PrependUOffsetTRelativeSlot(1, ins, 0)
    b.PrependUOffsetTRelativeSlot(2, outs, 0)
    return b.EndObject()


def _opcode(b: flatbuffers.Builder, code: int) -> int:
    b.StartObject(4)
    b.PrependInt8Slot(0, code, -1)
    b.PrependInt32Slot(2, 1, 0)
    b.PrependInt32Slot(3, code, -1)
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
    builtin_codes: list[int], buffer_data: list[int] | None = None,
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
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
