"""Multi-row statements of the SQLite writer behave exactly like executemany (sqlite/sql.py)."""

from __future__ import annotations

import sqlite3

import pytest

from automationd.store.sqlite.sql import execute_rows, multirow

UPSERT = (
    "INSERT INTO t (k, v, w) VALUES (?,?,?) ON CONFLICT(k) DO UPDATE SET v=excluded.v, w=excluded.w"
)


def _db() -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER, w TEXT)")
    return conn


def test_multirow_rewrites_only_plain_insert_values() -> None:
    """An INSERT … VALUES (?,…) gains n groups and keeps its tail; other SQL is left alone."""
    assert multirow(UPSERT, 2) == UPSERT.replace("(?,?,?)", "(?,?,?),(?,?,?)")
    assert multirow("UPDATE t SET v=? WHERE k=?", 4) is None
    assert multirow("INSERT INTO t SELECT * FROM u", 4) is None


@pytest.mark.parametrize("n", [1, 3, 4, 5, 17, 100, 1361, 5000])
def test_execute_rows_matches_executemany(n: int) -> None:
    """Any row count (chunks of 1024/256/64/16/4 plus a remainder) gives the same table,
    upserts of repeated keys included (later rows win, as with executemany)."""
    rows = [(f"k{i % max(1, n // 2)}", i, f"w{i}") for i in range(n)]
    a, b = _db(), _db()
    execute_rows(a, UPSERT, rows)
    b.executemany(UPSERT, rows)
    q = "SELECT k, v, w FROM t ORDER BY k"
    assert a.execute(q).fetchall() == b.execute(q).fetchall()
