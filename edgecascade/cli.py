"""The `edgecascade` command. Each group lives with the code it drives and is imported only
when its name is on the command line, so `edgecascade agent ...` on a Pi never imports the
cloud server or TensorFlow."""

from __future__ import annotations

import sys

from edgecascade.shared.version import __version__

# Not `from typing import TYPE_CHECKING`: typing pulls in re, collections and enum, a third of
# what `edgecascade --version` costs over the bare interpreter. Type checkers treat the name alike.
TYPE_CHECKING = False
if TYPE_CHECKING:
    # `edgecascade --version` answers before these (and any group) are imported.
    import argparse
    from collections.abc import Sequence

# group name -> (module with register(subparsers), one-line help)
GROUPS: dict[str, tuple[str, str]] = {
    "init": ("edgecascade.init", "write a ready device folder: profile, demo model, service files"),
    "agent": ("edgecascade.edge.cli", "run the device agent, or predict once with a device profile"),
    "cloud": (
        "edgecascade.cloud.cli",
        "serve cloud models over the Open Inference Protocol; ingest telemetry",
    ),
    "fleet": ("edgecascade.cloud.fleet.cli", "sign and push model updates, watch device status"),
    "models": ("edgecascade.tools.cli", "build demo models, tune thresholds, build lookup tables"),
    "demo": ("edgecascade.tools.demo.cli", "run the whole system on one machine and report"),
}

EXAMPLES = """examples:
  edgecascade init --profile raspberry-pi-4 --dir ~/edgecascade
  edgecascade models build-demo --out var/models
  edgecascade agent predict --config firmware-configs/x86-store-pc.toml digit.png
  edgecascade cloud serve --repository var/cloud-models
  edgecascade demo
"""


def build_parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    import argparse
    import importlib

    parser = argparse.ArgumentParser(
        prog="edgecascade",
        description="An edge-ML runtime with cloud fallback: quantized models on the device, "
        "hard cases escalated to a cloud model, telemetry and model updates over MQTT.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"edgecascade {__version__}")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    parser.add_argument(
        "--log-json", action="store_true", help="log JSON lines (for journald or a log shipper)"
    )
    sub = parser.add_subparsers(dest="group", metavar="COMMAND")
    wanted = next((a for a in argv if a in GROUPS), None)
    for name, (module, help_text) in GROUPS.items():
        if wanted is not None and name != wanted:
            sub.add_parser(name, help=help_text)
            continue
        try:
            register = importlib.import_module(module).register
        except ModuleNotFoundError as exc:
            if exc.name and module.startswith(exc.name):
                continue  # group not part of this install
            raise
        group = sub.add_parser(name, help=help_text, description=help_text)
        group.set_defaults(group_parser=group)
        register(group)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if "--version" in args_list and not any(a in GROUPS for a in args_list):
        # Answered before any command group (and numpy, pydantic, ...) is imported.
        print(f"edgecascade {__version__}")
        return 0
    import logging

    from edgecascade.shared.errors import EdgecascadeError
    from edgecascade.shared.logs import configure_logging, json_lines_enabled, parse_args, print_error

    parser = build_parser(args_list)
    args = parse_args(parser, args_list)
    # --log-json, or EDGECASCADE_LOG_JSON=1 (set for child processes by a parent with --log-json).
    json_lines = args.log_json or json_lines_enabled()
    configure_logging(args.log_level, json_lines=json_lines, capture_native=json_lines)
    func = getattr(args, "func", None)
    if func is None:
        # A group without a subcommand: show what it can do.
        target = getattr(args, "group_parser", parser)
        target.print_help()
        return 0 if args.group is None else 2
    try:
        return int(func(args) or 0)
    except EdgecascadeError as exc:
        logging.getLogger("edgecascade").debug("command failed", exc_info=True)
        print_error(str(exc))
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
