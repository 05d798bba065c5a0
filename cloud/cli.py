"""`edgecascade cloud ...`: each subcommand's options live with its code."""

from __future__ import annotations

import argparse
import importlib

# subcommand -> module whose add_parser(subparsers) defines it
SUBCOMMANDS = {
    "serve": "edgecascade.cloud.server_cli",
    "ingest": "edgecascade.cloud.ingest.cli",
    "export": "edgecascade.cloud.export_cli",
}


def register(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="command", metavar="SUBCOMMAND")
    for module in SUBCOMMANDS.values():
        try:
            importlib.import_module(module).add_parser(sub)
        except ModuleNotFoundError as exc:
            if not (exc.name and module.startswith(exc.name)):
                raise
