"""Kept so existing imports work: the opener lives in `edgecascade.shared.sqlite_file`, which
the ingester (cloud/) uses too."""

from edgecascade.shared.sqlite_file import open_checked

__all__ = ["open_checked"]
