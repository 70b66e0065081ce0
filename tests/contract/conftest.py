"""The ``Store`` contract: every backend behind store/api.py passes the same suite.

How it works (the shape of APScheduler 4's one data-store suite): each backend has ONE
fixture, ``<name>_store``, that opens a fresh, empty store and closes it afterwards; the
``store`` fixture is parametrized over the backend names and hands each test every backend
in turn. Tests use only the ``Store`` protocol (no SQL, no private attributes), so a new
backend passes the suite unchanged.

To add a backend: write its ``<name>_store`` fixture below and add its name to ``BACKENDS``
(mark it, e.g. ``pytest.param("postgresql", marks=pytest.mark.postgresql)``, and skip inside
the fixture when its server is not there).
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from automationd.core.ids import IdGenerator
from automationd.store.api import Store
from automationd.store.sqlite.store import open_sqlite

BACKENDS = [pytest.param("sqlite", id="sqlite")]


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[Store]:
    """A fresh SQLite store in its own state directory."""
    async with open_sqlite(tmp_path / "state", close_timeout=5.0) as store:
        yield store


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest) -> Store:
    """Each backend's fresh store in turn (see the module docstring)."""
    backend: Store = request.getfixturevalue(f"{request.param}_store")
    return backend


@pytest.fixture
def ids() -> IdGenerator:
    """Time-ordered ids, as the engine makes them (a time window is an id range)."""
    return IdGenerator(random.Random(11))
