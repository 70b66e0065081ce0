"""Shared fixtures. Helpers for specific layers live in tests/support/."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

pytest_plugins = ["tests.support.pg_fixtures"]

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


@pytest.fixture
def bin_dir() -> Path:
    """Folder holding the installed `automationd` and `automationctl` scripts."""
    return BIN


@pytest.fixture
def short_tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A short temp dir: Unix socket paths must stay under 108 bytes."""
    import tempfile

    d = Path(tempfile.mkdtemp(prefix="ad-", dir="/tmp"))
    yield d  # type: ignore[misc]
    import shutil

    shutil.rmtree(d, ignore_errors=True)


def pytest_configure(config: pytest.Config) -> None:
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
