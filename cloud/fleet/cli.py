"""`edgecascade fleet ...`: the fleet manager's commands; each module adds its own."""

from __future__ import annotations

import argparse
import importlib

# modules whose add_parsers(subparsers) add fleet subcommands
MODULES = ["edgecascade.cloud.fleet.updates_cli", "edgecascade.cloud.fleet.telemetry_cli"]


def register(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="command", metavar="SUBCOMMAND")
    for module in MODULES:
        try:
            importlib.import_module(module).add_parsers(sub)
        except ModuleNotFoundError as exc:
            if not (exc.name and module.startswith(exc.name)):
                raise
