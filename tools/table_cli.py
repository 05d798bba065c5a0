"""`edgecascade models build-table`: precompute cloud-model answers into a lookup table."""

from __future__ import annotations

import argparse

from edgecascade.shared import cli_values

EPILOG = """examples:
  # content keys over the digits held-out set
  edgecascade models build-table --cloud-model tests/fixtures/models/digits_cloud.onnx \\
      --dataset digits-heldout --version 2024.06.1 --out var/tables/digits.ectable
  # application keys (SKUs) from a CSV of key,input-file rows
  edgecascade models build-table --cloud-model tests/fixtures/models/digits_cloud.onnx \\
      --keys catalog.csv --key-scheme application --version 3 --out var/tables/catalog.ectable
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "build-table",
        help="run the cloud model offline over inputs and write a versioned lookup table",
        description="Run the cloud model (an .onnx/.tflite file with its model card) over a data set, a "
        "folder of input files or a key file, and write a table artifact: key -> outputs, with a header "
        "naming the cloud model and version, the feature-encoding version, the key scheme and a checksum. "
        "Devices answer from the table before running their model.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--dataset", choices=["digits-heldout", "digits-train", "digits-all"], help="a built-in data set"
    )
    src.add_argument(
        "--folder", type=cli_values.path, help="a folder of images, .npy or .json inputs (keys: file stems)"
    )
    src.add_argument(
        "--keys", type=cli_values.path, help="CSV rows key,input or a JSON object {key: input file}"
    )
    p.add_argument(
        "--cloud-model", type=cli_values.path, required=True, help="cloud model artifact (card beside it)"
    )
    p.add_argument(
        "--key-scheme",
        choices=["content", "application"],
        default="content",
        help="content: hash of the encoded input (default); application: the caller's key (SKU, barcode)",
    )
    p.add_argument("--name", default="lookup", help="table name (default: %(default)s)")
    p.add_argument("--version", required=True, help="table version, reported in every table answer")
    p.add_argument("--out", type=cli_values.path, required=True, help="table file to write (atomically)")
    p.set_defaults(func=_build_table)


def _build_table(args: argparse.Namespace) -> int:
    from edgecascade.edge.model_check import check_in_child
    from edgecascade.shared.model_card import ModelCard
    from edgecascade.tools.build_table import build_table, dataset_inputs, folder_inputs, keyfile_inputs

    card = ModelCard.load_for(args.cloud_model)
    # A crafted model that crashes the runtime natively does so in a child process, reported.
    check_in_child([(args.cloud_model, None)])
    if args.dataset:
        inputs = dataset_inputs(args.dataset)
    elif args.folder:
        inputs = folder_inputs(args.folder, card)
    else:
        inputs = keyfile_inputs(args.keys, card)
    meta = build_table(
        args.cloud_model, inputs, args.out, scheme=args.key_scheme, name=args.name, version=args.version
    )
    print(
        f"{args.out}: table {meta.name} {meta.version}, {meta.entries} entries, {meta.key_scheme} keys, "
        f"from {meta.cloud_model} {meta.cloud_model_version}, encoding v{meta.encoding_version}, "
        f"crc32 {meta.body_crc32:08x}"
    )
    return 0
