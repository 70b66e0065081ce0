"""core/ stays pure: no event loop, no IO, no reading the time (STYLE habit 2)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[2] / "automationd" / "core"
BANNED_MODULES = frozenset({"asyncio", "aiosqlite", "aiohttp", "time", "socket", "subprocess"})
BANNED_CLOCK_ATTRS = frozenset({"now", "utcnow", "today"})
CLOCK_OWNERS = frozenset({"datetime", "date", "dt"})


def violations(source: str) -> list[str]:
    """Each banned import or clock read in ``source``, as ``line: what``."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""] if node.level == 0 else []
            if node.module in ("datetime",):
                names += [f"datetime.{a.name}" for a in node.names if a.name in BANNED_CLOCK_ATTRS]
        elif isinstance(node, ast.Attribute) and node.attr in BANNED_CLOCK_ATTRS:
            owner = node.value
            base = owner.attr if isinstance(owner, ast.Attribute) else getattr(owner, "id", "")
            if base in CLOCK_OWNERS:
                found.append(f"{node.lineno}: reads {base}.{node.attr}")
            continue
        else:
            continue
        for name in names:
            if name.split(".")[0] in BANNED_MODULES or name.startswith("datetime."):
                found.append(f"{node.lineno}: imports {name}")
    return found


@pytest.mark.parametrize(
    ("source", "bad"),
    [
        ("import asyncio", True),
        ("import asyncio.tasks", True),
        ("from asyncio import sleep", True),
        ("import aiosqlite", True),
        ("from aiohttp import web", True),
        ("import time", True),
        ("from time import monotonic", True),
        ("import socket", True),
        ("import subprocess", True),
        ("import datetime as dt\nx = dt.datetime.now()", True),
        ("from datetime import datetime\nx = datetime.now(tz)", True),
        ("import datetime\nx = datetime.date.today()", True),
        ("import datetime\nx = datetime.datetime.utcnow()", True),
        ("from datetime import now", True),
        ("import datetime as dt\nx = dt.datetime.fromtimestamp(0, dt.UTC)", False),
        ("import math, heapq, enum", False),
        ("from automationd.units import parse_duration", False),
        ("from . import cron", False),
        ("import timeit_like_name", False),
        ("x = obj.now", False),
    ],
)
def test_checker_flags_exactly_the_banned_things(source: str, bad: bool) -> None:
    """The checker catches banned imports and clock reads and passes innocent code."""
    assert bool(violations(source)) is bad


def test_core_modules_exist() -> None:
    """The walk sees the core modules (a wrong path would make the purity test vacuous)."""
    names = {p.name for p in CORE.glob("*.py")}
    assert {"schedule.py", "wheel.py", "policy.py", "runstate.py"} <= names


@pytest.mark.parametrize("path", sorted(CORE.glob("*.py")), ids=lambda p: p.name)
def test_core_module_is_pure(path: Path) -> None:
    """No core module imports asyncio/aiosqlite/aiohttp/time/socket/subprocess or reads now()."""
    assert violations(path.read_text()) == []
