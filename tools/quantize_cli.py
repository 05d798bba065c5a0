"""`edgecascade models quantize`: static int8 for any ONNX model, with a float vs int8 report."""

from __future__ import annotations

import argparse
from pathlib import Path

from edgecascade.shared import cli_values


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "quantize",
        help="static int8 (QDQ) quantization of an ONNX model, calibrated on your inputs",
        description="Quantize MODEL.onnx to static int8 (QDQ, per-channel weights) with onnxruntime's "
        "quantization tools, calibrated on the inputs in --calibration, then run the float and int8 "
        "models on --eval (or the calibration inputs) and report agreement (and accuracy when the "
        "folder has labels.npy), size and latency. Input folders hold .npz files (one array per input "
        "name), .npy files (one-input models) or images (one image input). A TensorFlow SavedModel "
        "folder as MODEL is converted to full-integer int8 .tflite instead (needs TensorFlow).",
        epilog="example:\n  edgecascade models quantize detector.onnx --calibration calib/ --eval heldout/",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", type=cli_values.path, help="float ONNX model (or a TensorFlow SavedModel folder)")
    p.add_argument("--calibration", type=cli_values.path, required=True, help="folder of calibration inputs")
    p.add_argument(
        "--eval",
        type=cli_values.path,
        default=None,
        help="folder of evaluation inputs (default: calibration)",
    )
    p.add_argument(
        "--out", type=cli_values.path, default=None, help="output file (default: MODEL_int8.onnx / .tflite)"
    )
    p.add_argument("--per-tensor", action="store_true", help="one scale per weight tensor, not per channel")
    p.set_defaults(func=_quantize)


def _quantize(args: argparse.Namespace) -> int:
    from edgecascade.edge.model_check import check_in_child
    from edgecascade.shared.backends import BackendOptions, load_backend
    from edgecascade.shared.errors import EdgecascadeError
    from edgecascade.tools.quantize import (
        LABELS_FILE,
        compare,
        load_inputs,
        quantize_static_int8,
        read_arrays,
        tflite_int8_from_saved_model,
    )

    try:
        if args.model.is_dir():
            out = args.out or args.model.with_name(args.model.name + "_int8.tflite")
            raise_if_no_tf()
            calib = _saved_model_inputs(args.calibration)
            tflite_int8_from_saved_model(args.model, out, calib)
            print(f"wrote {out} ({out.stat().st_size} B)")
            return 0
        # A crafted model that crashes the runtime natively does so in a child process.
        check_in_child([(args.model, None)], bare=True)
        probe = load_backend(args.model, BackendOptions(warmup_runs=0))
        sig = probe.signature
        probe.close()
        calibration = load_inputs(args.calibration, sig)
        out = args.out or args.model.with_name(args.model.stem + "_int8.onnx")
        print(f"calibrating on {len(calibration)} batches from {args.calibration}")
        quantize_static_int8(args.model, out, calibration, per_channel=not args.per_tensor)
        eval_dir = args.eval or args.calibration
        feeds = load_inputs(eval_dir, sig) if args.eval else calibration
        labels_path = eval_dir / LABELS_FILE
        labels = read_arrays(labels_path)[""].reshape(-1) if labels_path.is_file() else None
        report = compare(args.model, out, feeds, labels)
    except EdgecascadeError as exc:
        print(f"error: {exc}")
        return 2
    print(f"wrote {out}")
    for line in report.lines():
        print("  " + line)
    return 0


def raise_if_no_tf() -> None:
    import importlib.util

    from edgecascade.shared.errors import ConfigError

    if importlib.util.find_spec("tensorflow") is None:
        raise ConfigError(
            "converting a SavedModel to int8 .tflite needs TensorFlow, which is not installed "
            "(pip install 'edgecascade[tflite-convert]'); quantize an .onnx model instead"
        )


def _saved_model_inputs(folder: Path) -> list:
    from edgecascade.tools.quantize import read_arrays

    return [read_arrays(path) for path in sorted(folder.glob("*.npz"))]
