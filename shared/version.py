"""The one home of edgecascade's version. pyproject.toml reads it from here (setuptools'
dynamic `attr`), so the installed metadata and this literal cannot differ, and the edge (update
checks, the local API), the cloud (server metadata, manifests) and the CLI all import it from here
without importlib.metadata's cost at start-up (`edgecascade --version`)."""

__version__ = "0.1.0"
