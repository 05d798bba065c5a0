"""The one home of edgecascade's version: what the installed distribution says.

The edge (update checks, the local API), the cloud (server metadata, manifests) and the CLI all
read it from here, so `edgecascade/` stays the command line only."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

#: Reported when the code runs from a source tree that was never installed (no metadata).
UNKNOWN_VERSION = "0.0.0+unknown"


def _installed_version() -> str:
    try:
        return version("edgecascade")
    except PackageNotFoundError:
        return UNKNOWN_VERSION


__version__ = _installed_version()
