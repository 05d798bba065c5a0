"""edgecascade: an edge-ML runtime with a cloud fallback."""

from typing import Any


def __getattr__(name: str) -> Any:
    # `edgecascade.__version__` still works; importing any edgecascade module does not pay for
    # importlib.metadata unless the version is asked for (its one home is shared/version.py).
    if name == "__version__":
        from edgecascade.shared.version import __version__

        return __version__
    raise AttributeError(f"module 'edgecascade' has no attribute {name!r}")
