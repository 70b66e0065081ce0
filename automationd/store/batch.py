"""A writer batch: how many callers' writes become ordered steps, and how the connection
thread runs them as one transaction. (The rules are the writer's: store/writer.py.)"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Hashable, Sequence
from itertools import chain
from typing import Any, NamedTuple, Protocol

from automationd.errors import StoreError

TxnFn = Callable[[sqlite3.Connection], Any]


class Write(NamedTuple):
    """One parameterised statement for the writer (see store/writer.py, theory of operation).

    A named tuple rather than a dataclass: immutable all the same, and built three times per
    run, where a tuple's constructor costs half a frozen dataclass's."""

    sql: str
    params: tuple[Any, ...]
    key: Hashable | None = None
    barrier: bool = False


class Planned(Protocol):
    """What a batch is planned from: a caller's writes, or one function."""

    @property
    def writes(self) -> Sequence[Write]: ...

    @property
    def fn(self) -> TxnFn | None: ...


# A step is either (sql, rows) for executemany or a function run inside the transaction.
Step = tuple[str, list[tuple[Any, ...]]] | TxnFn


def plan_batch(entries: Sequence[Planned]) -> tuple[list[Step], int, int]:
    """Turn entries into ordered steps; return (steps, statements, collapsed writes).

    Each group keeps its rows and their keys side by side; duplicates are looked for once per
    group, with a set (C speed), and collapsed only if there are any: in the hot path (new
    rows, ends) there are none.
    """
    steps: list[Step] = []
    groups: dict[str, tuple[list[tuple[Any, ...]], list[Hashable | None]]] = {}
    counts = [0, 0]  # statements, collapsed

    def flush() -> None:
        for sql, (rows, keys) in groups.items():
            nones = keys.count(None)
            if len(set(keys)) - (1 if nones else 0) != len(keys) - nones:
                last = {k: i for i, k in enumerate(keys) if k is not None}
                kept = [
                    r
                    for i, (r, k) in enumerate(zip(rows, keys, strict=True))
                    if k is None or last[k] == i
                ]
                counts[1] += len(rows) - len(kept)
                rows = kept
            counts[0] += len(rows)
            steps.append((sql, rows))
        groups.clear()

    get = groups.get
    for entry in entries:
        if entry.fn is not None:
            flush()
            steps.append(entry.fn)
            continue
        for w in entry.writes:
            if w.barrier:
                flush()
                steps.append((w.sql, [w.params]))
                counts[0] += 1
                continue
            group = get(w.sql)
            if group is None:
                group = groups[w.sql] = ([], [])
            group[0].append(w.params)
            group[1].append(w.key)
    flush()
    return steps, counts[0], counts[1]


_CHUNKS = (1024, 256, 64, 16, 4)
_MAX_PARAMS = 32000  # below SQLite's default SQLITE_MAX_VARIABLE_NUMBER (32766)
_multi_sql: dict[tuple[str, int], str | None] = {}


def _multirow(sql: str, n: int) -> str | None:
    """``INSERT … VALUES (?,…) rest`` with ``n`` value groups; None if ``sql`` is not that form.

    Why: ``executemany`` steps once per row, and every step releases and re-takes the GIL.
    With the event loop busy, each re-take can wait a whole switch interval (5 ms), so a
    5,000-row batch spent most of its time waiting for the GIL, not in SQLite. One statement
    with many value groups binds them all in C and hands the GIL over once. Chunk sizes are
    fixed so SQLite's statement cache keeps hitting.
    """
    key = (sql, n)
    if key in _multi_sql:
        return _multi_sql[key]
    out: str | None = None
    head, sep, tail = sql.partition(" VALUES (")
    if sep and head.lstrip().upper().startswith("INSERT"):
        group, close, rest = tail.partition(")")
        if close and group and set(group.replace(" ", "")) <= {"?", ","}:
            out = f"{head} VALUES {','.join([f'({group})'] * n)}{rest}"
    _multi_sql[key] = out
    return out


def _execute_rows(conn: sqlite3.Connection, sql: str, rows: Sequence[Sequence[Any]]) -> None:
    i, total = 0, len(rows)
    if total >= _CHUNKS[-1] and _multirow(sql, 1) is not None:
        width = len(rows[0])
        for size in _CHUNKS:
            if size * width > _MAX_PARAMS or total - i < size:
                continue
            stmt = _multirow(sql, size)
            assert stmt is not None
            while total - i >= size:
                conn.execute(stmt, list(chain.from_iterable(rows[i : i + size])))
                i += size
    if i < total:
        conn.executemany(sql, rows[i:])


def execute_plan(conn: sqlite3.Connection, steps: Sequence[Step]) -> list[Any]:
    """Run on the connection thread: one transaction for all steps; results of functions."""
    if not steps:
        conn.execute("SELECT 1").fetchone()  # a probe or an empty submit: prove the thread lives
        return []
    results: list[Any] = []
    sql = "BEGIN IMMEDIATE"
    try:
        conn.execute(sql)
        for step in steps:
            if isinstance(step, tuple):
                sql = step[0]
                _execute_rows(conn, sql, step[1])
            else:
                sql = getattr(step, "__name__", "function")
                results.append(step(conn))
        sql = "COMMIT"
        conn.execute(sql)
    except BaseException as exc:
        if conn.in_transaction:
            # If even ROLLBACK fails the connection is broken; the first error is what matters.
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
        if isinstance(exc, sqlite3.Error):
            raise StoreError(f"{type(exc).__name__}: {exc} (in {sql[:200]!r})") from exc
        raise
    return results
