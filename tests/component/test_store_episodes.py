"""A store that fails and recovers, and fails again: one episode, said once (writer rule 7)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from automationd.admin.answers import error_line
from automationd.admin.protocol import Request
from automationd.errors import StoreError
from automationd.store.rows import w_event_row
from automationd.store.sqlite.sql import store_error
from automationd.store.sqlite.store import open_sqlite
from automationd.store.write import Write
from tests.support.engine import flaky


def _event(n: int) -> list[Write]:
    return [w_event_row(f"e{n:04d}", "x", None, 1.0, None, 0)]


async def test_a_flapping_store_is_one_episode_logged_once(tmp_path: Path) -> None:
    """1. Writes fail (disk full), then one gets through, then they fail again, then recover.
    Result: health follows each change at once; the log has one `store.write_failed` and,
    after writes have committed for the quiet spell, one `store.write_recovered`; every failed
    batch is counted by kind."""
    kinds: list[str] = []
    async with (
        asyncio.timeout(10),
        open_sqlite(tmp_path, on_error=kinds.append, quiet_after=0.3) as store,
    ):
        committer = flaky(store)
        with capture_logs() as logs:
            committer.failing = True
            with pytest.raises(StoreError) as err:
                await store.commit(_event(1))
            assert err.value.reason == "store: disk full (test)" and not store.healthy
            committer.failing = False
            await store.commit(_event(2))
            assert store.healthy  # at once
            committer.failing = True
            with pytest.raises(StoreError):
                await store.commit(_event(3))
            assert not store.healthy
            committer.failing = False
            await store.commit(_event(4))
            assert store.healthy
            names = [e["event"] for e in logs]
            assert names == ["store.write_failed"]
            await asyncio.sleep(0.5)
        names = [e["event"] for e in logs]
        assert names == ["store.write_failed", "store.write_recovered"], names
        assert kinds == ["disk_full", "disk_full"]


def test_store_errors_answer_unavailable_with_the_short_reason() -> None:
    """A StoreError from SQLite answers `unavailable` with "store: disk full", the driver's
    words kept for the log only, and logs nothing per request."""
    exc = sqlite3.OperationalError("database or disk is full")
    exc.sqlite_errorname = "SQLITE_FULL"  # type: ignore[attr-defined]
    err = store_error(exc, "in 'COMMIT'")
    assert (err.kind, err.reason) == ("disk_full", "store: disk full")
    assert str(err) == "store: disk full (database or disk is full; in 'COMMIT')"
    with capture_logs() as logs:
        line = error_line(Request(3, "jobs.trigger", {}), err)
    assert json.loads(line) == {
        "id": 3,
        "ok": False,
        "error": {"code": "unavailable", "message": "store: disk full"},
    }
    assert logs == []


async def test_a_value_sqlite_cannot_bind_is_repaired_not_retried_forever(tmp_path: Path) -> None:
    """A posted write holding a lone surrogate and an integer past 64 bits (what no check let
    through, but a bug might) is stored repaired in one retry of its batch, logged once, and
    the writer stays healthy: it must not be held and retried forever, wedging the store."""
    async with asyncio.timeout(5), open_sqlite(tmp_path) as store:
        with capture_logs() as logs:
            bad = w_event_row("e0001", "x.\ud800", None, 1.0, None, 2**70)
            store.post([bad])
            await store.commit(_event(2))
        assert store.healthy
        assert [e["event"] for e in logs] == ["store.values_repaired"]
        events = await store.events(since=None, until=None, limit=None, newest_first=False)
        assert [(e.id, e.name, e.depth) for e in events] == [
            ("e0001", "x.\\ud800", 2**63 - 1),
            ("e0002", "x", 0),
        ]
