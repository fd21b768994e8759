"""The house rules of docs/architecture.md, checked on the source tree itself.

- No module reads another module's private names. The rule, on the AST of every module under
  ``src/sigmavault``: an attribute whose name starts with one underscore (``x._name``, not a
  dunder) may be read or written only on ``self`` or ``cls``, that is by the class that owns it;
  ``from m import _name`` and ``getattr/setattr/hasattr(x, "_name")`` on anything else count too.
  A module that needs something of another offers or uses a public method instead.
- The import graph (grimp, the engine of import-linter; function-level and TYPE_CHECKING imports
  included) has no cycles.
- The import-linter layers contract in pyproject.toml names every package and top-level module,
  so a new package cannot slip outside the layers (``lint-imports`` in scripts/test.sh then
  checks that every arrow points down).
"""

from __future__ import annotations

import ast
import sys
import tomllib
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "sigmavault"
_OWNERS = {"self", "cls"}
_ATTR_FUNCS = {"getattr", "setattr", "hasattr", "delattr"}


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _owner(node: ast.expr) -> bool:
    return isinstance(node, ast.Name) and node.id in _OWNERS


def _attr_call(node: ast.AST) -> bool:
    """``getattr(x, "name", ...)`` and its siblings, with the name given as a string literal."""
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in _ATTR_FUNCS
        and len(node.args) >= 2
        and isinstance(node.args[1], ast.Constant)
        and isinstance(node.args[1].value, str)
    )


def private_reads(source: str, filename: str = "<src>") -> list[str]:
    """Every place in ``source`` that touches a private name not owned by ``self``/``cls``."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Attribute) and _private(node.attr):
            if not _owner(node.value):
                found.append(f"{filename}:{node.lineno}: {ast.unparse(node)}")
        elif isinstance(node, ast.ImportFrom) and node.module != "__future__":
            names = [a.name for a in node.names if _private(a.name)]
            found += [f"{filename}:{node.lineno}: from {node.module} import {name}" for name in names]
        elif _attr_call(node) and _private(node.args[1].value) and not _owner(node.args[0]):
            found.append(f"{filename}:{node.lineno}: {ast.unparse(node)}")
    return found


def test_the_rule_finds_what_it_should_and_nothing_else() -> None:
    source = """
from __future__ import annotations
from pkg.mod import _helper, public
class A:
    def __init__(self) -> None:
        self._x = 1
        self.__dict__
    @classmethod
    def make(cls) -> None:
        cls._registry = {}
    def peek(self, other: A, vault: object) -> None:
        other._x
        vault._db.write()
        self._db._lock
        getattr(vault, "_parts")
        getattr(self, "_x")
        getattr(vault, "name")
"""
    assert sorted(f.split(": ", 1)[1] for f in private_reads(source)) == sorted(
        [
            "from pkg.mod import _helper",
            "other._x",
            "vault._db",
            "self._db._lock",
            "getattr(vault, '_parts')",
        ]
    )


def test_no_module_reads_another_modules_private_names() -> None:
    files = sorted(SRC.rglob("*.py"))
    assert len(files) > 80  # the walk really covers the package
    found = [hit for path in files for hit in private_reads(path.read_text(), str(path.relative_to(ROOT)))]
    assert found == []


def _graph() -> grimp.ImportGraph:
    sys.path.insert(0, str(ROOT / "src"))
    try:
        return grimp.build_graph("sigmavault", cache_dir=None)
    finally:
        sys.path.remove(str(ROOT / "src"))


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    comp.append(member)
                    if member == node:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def test_cycle_finder_finds_cycles() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_import_graph_has_no_cycles() -> None:
    graph = _graph()
    edges = {m: graph.find_modules_directly_imported_by(m) for m in graph.modules}
    assert len(edges) > 80
    assert cycles(edges) == []


def test_the_layers_contract_names_every_package() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    (layers,) = [c for c in config["contracts"] if c["type"] == "layers"]
    named = {name.strip().strip("()") for layer in layers["layers"] for name in layer.replace("|", ":").split(":")}
    present = {p.stem for p in SRC.glob("*.py") if p.stem != "__init__"}
    present |= {p.name for p in SRC.iterdir() if (p / "__init__.py").exists()}
    assert present - named == set(), "add these to the layers contract in pyproject.toml"
