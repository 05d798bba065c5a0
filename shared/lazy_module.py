"""Optional heavy dependencies, imported on first use instead of at import time.

`agent predict` on a LiteRT model must not pay for OpenCV (about 69 MiB high-water mark on
its own) or cryptography; a module that needs one of them only in some functions names it
once at the top as `cv2 = lazy_module("cv2", ...)` (and imports it normally under
TYPE_CHECKING for the types). Whether it was loaded stays visible in sys.modules."""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

from edgecascade.shared.errors import ConfigError


class LazyModule(ModuleType):
    """Stands for module `name` until an attribute is read, then imports it; a missing
    package becomes a ConfigError saying what needs it and how to install it."""

    def __init__(self, name: str, needed_for: str, install: str) -> None:
        super().__init__(name)
        self.__dict__["_lazy"] = (name, needed_for, install)

    def __getattr__(self, attr: str) -> Any:
        name, needed_for, install = self.__dict__["_lazy"]
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            raise ConfigError(
                f"{needed_for} needs the Python package {exc.name!r}, which is not installed ({install})"
            ) from None
        # Later reads find the attributes directly, without this hook.
        self.__dict__.update(module.__dict__)
        return getattr(module, attr)


def lazy_module(name: str, *, needed_for: str, install: str = "pip install 'edgecascade[edge]'") -> Any:
    """A stand-in for `import name` that imports on first attribute access."""
    return LazyModule(name, needed_for, install)
