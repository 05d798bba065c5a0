"""edgecascade: an edge-ML runtime with a cloud fallback."""

from edgecascade.shared.version import __version__

__all__ = ["__version__"]
