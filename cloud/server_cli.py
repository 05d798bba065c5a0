"""`edgecascade cloud serve`: flags derived from cloud.settings.ServerSettings."""

from __future__ import annotations

import argparse
from typing import Any

EPILOG = """examples:
  edgecascade cloud serve --repository var/cloud-models --no-auth
  EDGECASCADE_SERVE__TOKENS="store-12=s3cret" edgecascade cloud serve --repository var/cloud-models --port 8080
  edgecascade cloud serve --repository var/cloud-models --tokens-file tokens.toml --workers 4 --host 0.0.0.0
  edgecascade cloud serve --repository var/cloud-models --tokens-file tokens.toml --host 0.0.0.0 \
      --grpc-port 8001 --tls-certfile server.pem --tls-keyfile server.key [--tls-client-ca devices-ca.pem]

model repository layout:
  <repo>/<model>/model.toml              default_version, max_batch_size, max_queue_delay_ms, instances
  <repo>/<model>/<version>/model.onnx    (+ model.onnx.card.json)
  `edgecascade models build-demo` then cloud.repository.seed_demo_repository() lays out the demo.
"""

# Set only through the environment: a token on the command line shows in `ps`.
_ENV_ONLY = {"tokens", "log_level"}


def add_parser(subparsers: Any) -> None:
    from edgecascade.cloud.settings import ServerSettings

    p = subparsers.add_parser(
        "serve",
        help="serve cloud models over the Open Inference Protocol (KServe V2 REST and gRPC)",
        description="Serve every model of a model repository over the Open Inference Protocol "
        "(KServe V2 REST, JSON and binary tensors; gRPC on --grpc-port) with dynamic batching, "
        "per-device bearer tokens or client certificates, HTTPS, and Prometheus metrics at /metrics. "
        "Every flag can also be set as EDGECASCADE_SERVE__<FLAG> (e.g. EDGECASCADE_SERVE__PORT=8080).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    for name, field in ServerSettings.model_fields.items():
        if name in _ENV_ONLY:
            continue
        flag = "--" + name.replace("_", "-")
        help_text = field.description or ""
        if field.annotation is bool:
            p.add_argument(flag, action="store_true", default=None, help=help_text)
        else:
            default = "" if field.is_required() else f" (default: {field.default})"
            p.add_argument(flag, default=None, metavar=name.upper(), help=help_text + default)
    p.set_defaults(func=_serve)


def _serve(args: argparse.Namespace) -> int:
    from edgecascade.cloud.server import serve
    from edgecascade.cloud.settings import ServerSettings, load_server_settings

    given = {
        name: getattr(args, name)
        for name in ServerSettings.model_fields
        if getattr(args, name, None) is not None
    }
    given["log_level"] = args.log_level
    serve(load_server_settings(given))
    return 0
