"""The version has one home, shared/version.py; the installed metadata is read from it."""

from __future__ import annotations

import ast
import importlib.metadata
import tomllib
from pathlib import Path

import edgecascade
from edgecascade.shared.version import __version__

REPO = Path(__file__).parent.parent.parent


def test_installed_metadata_is_the_one_version() -> None:
    assert importlib.metadata.version("edgecascade") == __version__ == edgecascade.__version__
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert "version" not in project["project"] and project["project"]["dynamic"] == ["version"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {
        "attr": "edgecascade.shared.version.__version__"
    }


def test_edge_and_cloud_do_not_import_the_cli_package_for_it() -> None:
    offenders = []
    for folder in ("edge", "cloud", "shared"):
        for path in (REPO / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom) and node.module == "edgecascade":
                    offenders.append(str(path.relative_to(REPO)))
    assert offenders == []
