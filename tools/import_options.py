"""The `KEY=VALUE,...` option lists of `models import` flags (--input, --detection, --anchors)."""

from __future__ import annotations

from pydantic import ValidationError

from edgecascade.shared.errors import ConfigError


def options(text: str, what: str, key: str = "--input") -> dict[str, str]:
    """`k=v,k=v,...`; an item without `=` continues the previous value, so a per-channel list
    reads `mean=0.485,0.456,0.406,std=0.229,0.224,0.225` (values joined by commas)."""
    opts: dict[str, str] = {}
    last: str | None = None
    for item in filter(None, (i.strip() for i in text.split(","))):
        name, sep, value = item.partition("=")
        if sep:
            last = name.strip()
            opts[last] = value.strip()
        elif last is not None:
            opts[last] = f"{opts[last]},{item}"
        else:
            raise ConfigError(f"{what}: expected KEY=VALUE, got {item!r}", key=key)
    return opts


def number(text: str, key: str = "--input") -> float:
    num, sep, den = text.partition("/")  # scale=1/255
    try:
        return float(num) / float(den) if sep else float(num)
    except (ValueError, ZeroDivisionError):
        raise ConfigError(f"expected a number (or A/B), got {text!r}", key=key) from None


def why(exc: ValidationError) -> str:
    """A pydantic error as 'field: message' lines, without its URL and input dump."""
    return "; ".join(
        (".".join(map(str, e["loc"])) + ": " if e["loc"] else "") + e["msg"].removeprefix("Value error, ")
        for e in exc.errors()
    )
