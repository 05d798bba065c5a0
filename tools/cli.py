"""`edgecascade models ...`: build, tune and package models."""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path

from edgecascade.shared import cli_values

# further subcommands, each defined by add_parser(subparsers) in its own module
MODULES = [
    "edgecascade.tools.tune_cli",
    "edgecascade.tools.table_cli",
    "edgecascade.tools.import_cli",
    "edgecascade.tools.quantize_cli",
]


def register(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="command", metavar="SUBCOMMAND")
    p = sub.add_parser(
        "build-demo",
        help="train the demo models on real digits and write .tflite/.onnx artifacts with model cards",
        description="Train a small edge MLP and a larger cloud SVC on scikit-learn's UCI digits (70/30 "
        "stratified split, seed 0), export int8 TFLite, int8 and float ONNX, and the cloud ONNX model, "
        "evaluate each with the serving backends and write <artifact>.card.json beside it. "
        "The .tflite conversion needs TensorFlow (pip install 'edgecascade[tflite-convert]').",
    )
    p.add_argument(
        "--out",
        type=cli_values.path,
        default=Path("tests/fixtures/models"),
        help="output folder (default: %(default)s)",
    )
    p.add_argument(
        "--no-tflite", action="store_true", help="skip the .tflite conversion (no TensorFlow needed)"
    )
    p.set_defaults(func=_build_demo)
    for module in MODULES:
        try:
            importlib.import_module(module).add_parser(sub)
        except ModuleNotFoundError as exc:
            if not (exc.name and module.startswith(exc.name)):
                raise


def _build_demo(args: argparse.Namespace) -> int:
    from edgecascade.tools.build_demo import build_demo

    build_demo(args.out, tflite=not args.no_tflite)
    return 0
