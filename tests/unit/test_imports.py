"""The package's shape (STYLE habit 1): no import cycles, not even through imports under
``if TYPE_CHECKING:`` or inside functions, and every module under 400 lines."""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "automationd"
MAX_LINES = 400


def modules(root: Path = PACKAGE) -> dict[str, Path]:
    """Dotted module name → file, for every module of the package (``__init__`` as the
    package's own name)."""
    out: dict[str, Path] = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def imported(name: str, source: str, known: Iterable[str], *, is_package: bool = False) -> set[str]:
    """The package modules that module ``name`` imports, wherever the import statement is
    (top level, ``if TYPE_CHECKING:``, a function): each counts toward a cycle."""
    known = set(known)
    package = name if is_package else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            # ``from pkg import mod`` imports the module; ``from mod import name`` the module
            targets = [
                f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names
            ]
        else:
            continue
        for target in targets:
            while target and target not in known:  # ``import a.b.c`` where c is a name
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group: list[str] = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def graph_of(root: Path = PACKAGE) -> dict[str, set[str]]:
    mods = modules(root)
    return {
        name: imported(name, path.read_text(), mods, is_package=path.name == "__init__.py")
        for name, path in mods.items()
    }


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"a": "import p.b", "b": "x = 1"}, []),
        ({"a": "from p import b", "b": "from p.a import f"}, [["p.a", "p.b"]]),
        (
            {
                "a": "from p.b import x",
                "b": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from p.c import y",
                "c": "from . import a",
            },
            [["p.a", "p.b", "p.c"]],
        ),
        ({"a": "def f():\n    from p.b import g", "b": "import p.a.z"}, [["p.a", "p.b"]]),
        ({"a": "from .b import x", "b": "from ..q import y"}, []),
        ({"a": "from p.sub.m import x", "sub/m": "from p.a import y"}, [["p.a", "p.sub.m"]]),
    ],
    ids=["none", "pair", "type-checking", "in-function", "relative", "subpackage"],
)
def test_cycle_finder_sees_every_kind_of_import(
    tmp_path: Path, files: dict[str, str], expected: list[list[str]]
) -> None:
    """The finder sees top-level, TYPE_CHECKING, function-local, relative and subpackage
    imports (so the real check below can be trusted)."""
    root = tmp_path / "p"
    for rel, text in {"__init__": "", **files}.items():
        path = root / f"{rel}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        (path.parent / "__init__.py").touch()
        path.write_text(text)
    assert cycles(graph_of(root)) == expected


def test_the_package_has_no_import_cycles() -> None:
    """No module of automationd reaches itself through imports of any kind."""
    graph = graph_of()
    assert len(graph) > 40 and "automationd.engine.launcher" in graph
    assert cycles(graph) == []


def test_every_module_is_under_400_lines() -> None:
    """Past 400 lines a module is split by noun (STYLE habit 1)."""
    long = {
        name: n
        for name, path in modules().items()
        if (n := len(path.read_text().splitlines())) >= MAX_LINES
    }
    assert long == {}


def private_uses(source: str) -> list[str]:
    """``x._name`` where ``x`` is not ``self`` or ``cls``: another object's private part."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if (
            isinstance(node, ast.Attribute)
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
            and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
        ):
            found.append(f"{node.lineno}: .{node.attr}")
    return found


def test_aiosqlite_is_used_through_its_public_api_only() -> None:
    """Modules that use aiosqlite touch no private attribute of anything (its ``_tx``,
    ``_connection``, ``_thread`` were once used, pinning the version)."""
    users = {n: p for n, p in modules().items() if "aiosqlite" in p.read_text()}
    assert "automationd.store.sqlite.store" in users
    assert private_uses("conn._tx.put(x)\nself._reader.execute()") == ["1: ._tx"]
    assert {n: private_uses(p.read_text()) for n, p in users.items()} == {n: [] for n in users}


def self_attributes(cls: ast.ClassDef) -> tuple[set[str], set[str], set[str]]:
    """A class's ``self._x`` names: (those it uses, its methods, those it assigns)."""
    used, state = set(), set()
    for node in ast.walk(cls):
        if not (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)):
            continue
        if node.value.id == "self" and node.attr.startswith("_") and "__" not in node.attr:
            used.add(node.attr)
            if isinstance(node.ctx, ast.Store):
                state.add(node.attr)
    methods = {n.name for n in cls.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)}
    return used, methods, state


def test_the_fleet_gate_changes_its_base_only_through_hooks() -> None:
    """FleetGate reads and writes none of ServiceGate's private state (its cap, in-flight
    count, slot future, gauges, pause arithmetic, clock): every ``self._x`` it uses is its own
    or a hook it overrides (``_admit``, ``_check_breaker``, ``_abandon_probe``, ``_pause``)."""

    def one_class(path: Path, name: str) -> ast.ClassDef:
        tree = ast.parse(path.read_text())
        (cls,) = [n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == name]
        return cls

    engine = PACKAGE / "engine"
    _, _, base_state = self_attributes(one_class(engine / "gate.py", "ServiceGate"))
    used, methods, state = self_attributes(one_class(engine / "fleetgate.py", "FleetGate"))
    assert used & base_state == set()  # the base's state: neither read nor written
    assert used - methods - state == set()  # a private method it calls is one it overrides
    assert {"_admit", "_check_breaker", "_abandon_probe", "_pause"} <= methods
