"""edgecascade: an edge-ML runtime with a cloud fallback."""

__version__ = "0.1.0"
