"""`edgecascade cloud export`: the model repository for Triton and KServe (cloud/export.py)."""

from __future__ import annotations

import argparse
from typing import Any

from edgecascade.shared import cli_values

EPILOG = """examples:
  edgecascade cloud export --repository var/cloud-models --out var/export \\
      --storage-uri s3://my-bucket/edgecascade/triton
  # then: copy var/export/triton/ to that URI; kubectl apply -f var/export/inferenceservice.json
"""


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "export",
        help="write the model repository as a Triton repository and a KServe InferenceService",
        description="Write <out>/triton/ (a Triton model repository: <model>/<n>/model.onnx with a "
        "config.pbtxt carrying each model's batching and instances) and <out>/inferenceservice.json "
        "(a KServe InferenceService, V2 protocol, Triton runtime, serving that repository).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--repository", type=cli_values.path, required=True, help="cloud model repository folder")
    p.add_argument("--out", type=cli_values.path, required=True, help="output folder")
    p.add_argument("--name", default="edgecascade-cloud", help="InferenceService name (default: %(default)s)")
    p.add_argument("--namespace", default=None, help="Kubernetes namespace (default: kubectl's)")
    p.add_argument(
        "--storage-uri",
        required=True,
        help="where the triton/ folder will be uploaded (s3://, gs://, pvc://, https://)",
    )
    p.set_defaults(func=_export)


def _export(args: argparse.Namespace) -> int:
    from edgecascade.cloud.export import export

    models, manifest = export(
        args.repository, args.out, name=args.name, storage_uri=args.storage_uri, namespace=args.namespace
    )
    for model in models:
        mapping = ", ".join(f"{ours} -> {n}" for ours, n in model.versions.items())
        print(f"triton: {model.config.parent} (versions {mapping})")
    print(f"kserve: {manifest}")
    return 0
