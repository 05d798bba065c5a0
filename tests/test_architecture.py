"""The import rules of the house, read from the code itself (every import, also those inside
functions): dependencies point one way, and no module imports itself back through others."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PARTS = ("edge", "cloud", "shared", "tools")
CLI_ONLY = {"edgecascade.cli", "edgecascade.__main__"}

# part -> the parts it must never import
FORBIDDEN = {
    "shared": {"edge", "cloud", "tools"},
    "cloud": {"edge", "tools"},
    "edge": {"cloud", "tools"},
}


def _module_name(path: Path) -> str:
    rel = path.relative_to(REPO).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(["edgecascade", *parts])


def _sources() -> Iterator[tuple[str, Path]]:
    for part in PARTS:
        for path in sorted((REPO / part).rglob("*.py")):
            yield part, path


def _imports(path: Path) -> set[str]:
    """Absolute names imported by `path` (relative imports resolved), skipping TYPE_CHECKING blocks."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = _module_name(path).rsplit(".", 1)[0] if path.name != "__init__.py" else _module_name(path)
    found: set[str] = set()

    class Visitor(ast.NodeVisitor):
        def visit_If(self, node: ast.If) -> None:
            if "TYPE_CHECKING" not in ast.unparse(node.test):
                self.generic_visit(node)

        def visit_Import(self, node: ast.Import) -> None:
            found.update(alias.name for alias in node.names)

        def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base]) if base else ".".join(anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)

    Visitor().visit(tree)
    return found


def _part_of(name: str) -> str | None:
    pieces = name.split(".")
    if len(pieces) >= 2 and pieces[0] == "edgecascade" and pieces[1] in PARTS:
        return pieces[1]
    return None


@pytest.mark.parametrize("part", sorted(FORBIDDEN))
def test_dependencies_point_one_way(part: str) -> None:
    wrong = []
    for owner, path in _sources():
        if owner != part:
            continue
        for name in _imports(path):
            target = _part_of(name)
            if target in FORBIDDEN[part] or name in CLI_ONLY or name == "edgecascade":
                wrong.append(f"{path.relative_to(REPO)} imports {name}")
    assert wrong == []


def test_no_import_circles() -> None:
    """No circle of imports, those inside functions included: a late import still ties two
    modules together, and neither can be understood or moved without the other."""
    modules = {_module_name(path): path for _, path in _sources()}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = set()
        for imported in _imports(path):
            # `from a.b import c` names a.b.c: keep the longest prefix that is a module of the house
            while imported and imported not in modules:
                imported = imported.rpartition(".")[0]
            if imported and imported != name and not name.startswith(imported + "."):
                targets.add(imported)
        graph[name] = targets

    circles: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def walk(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                circles.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                walk(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            walk(node)
    assert circles == []


#: The most lines (from `def` to its last line) a function in edge/, cloud/ or shared/ may take.
#: A longer one holds several steps: split it along them, so a reader can hold each.
FUNCTION_LINES = 75
GENERATED = ("_pb2.py", "_pb2_grpc.py")


def _long_functions(path: Path, limit: int) -> Iterator[str]:
    tree = ast.parse(path.read_text(), filename=str(path))

    def walk(node: ast.AST, prefix: str) -> Iterator[str]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                name = f"{prefix}{child.name}"
                if not isinstance(child, ast.ClassDef):
                    lines = (child.end_lineno or child.lineno) - child.lineno + 1
                    if lines > limit:
                        yield f"{path.relative_to(REPO)}:{child.lineno} {name} is {lines} lines"
                yield from walk(child, f"{name}.")
            else:
                yield from walk(child, prefix)

    yield from walk(tree, "")


def test_functions_fit_in_a_screen() -> None:
    too_long = [
        found
        for part, path in _sources()
        if part != "tools" and not path.name.endswith(GENERATED)
        for found in _long_functions(path, FUNCTION_LINES)
    ]
    assert too_long == [], f"over {FUNCTION_LINES} lines; split along their steps: {too_long}"
