"""Checking a SQLite store for damage: the start-up check and ``store.check`` / ``check-store``.

Why: SQLite's own checks look at the file's structure (pages, b-trees, indexes). A page whose
*content* was scribbled on can pass them and still hold text that is not UTF-8 or JSON that
does not parse; such a row made every read that met it fail. So a check here has three parts:

1. ``PRAGMA quick_check`` (at start) or ``integrity_check`` (on demand): the structure;
2. references: every target, attempt and dead letter belongs to a stored run (the schema has
   no foreign keys, for the writer's speed, so ``foreign_key_check`` alone proves nothing);
3. decodable rows: every text column is UTF-8, every JSON column parses (finite numbers only:
   automationd/strictjson.py), every state, trigger, phase and time has a readable value.

At start (``startup_problems``) part 3 looks only at what the daemon reads first (every job
row and the newest rows of each table), so start-up stays fast, and only for text that is not
UTF-8 (which no read survives; a JSON or state value that does not read back is reported by
the read itself: store/salvage.py, and a broken stored job is skipped by the catalog);
``check_problems`` reads it all. These are plain functions on a ``sqlite3.Connection``: the
store runs them on a thread.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from automationd.core.runstate import RunState, TargetState
from automationd.records import Phase, Trigger
from automationd.strictjson import loads

MAX_PROBLEMS = 100
STARTUP_ROWS = 200  # newest rows per table read at start

_TEXT, _JSON, _TIME, _INT = "text", "json", "time", "int"


def _enum(values: frozenset[str]) -> Callable[[Any], str | None]:
    def check(v: Any) -> str | None:
        return None if v in values else f"unknown value {v!r}"

    return check


def _of(enum_type: Any) -> frozenset[str]:
    return frozenset(m.value for m in enum_type)


# table → (key columns, {column: kind or checker}); keys name the row in a problem.
_COLUMNS: dict[str, tuple[tuple[str, ...], dict[str, Any]]] = {
    "runs": (
        ("id",),
        {
            "id": _TEXT,
            "job": _TEXT,
            "state": _enum(_of(RunState)),
            "trigger": _enum(_of(Trigger)),
            "created_at": _TIME,
            "scheduled_for": _TIME,
            "started_at": _TIME,
            "finished_at": _TIME,
            "attempts": _INT,
            "idempotency_key": _TEXT,
            "payload": _JSON,
            "error_kind": _TEXT,
            "error_message": _TEXT,
            "result": _JSON,
            "origin": _TEXT,
            "reason": _TEXT,
            "plan": _JSON,
        },
    ),
    "targets": (
        ("run_id", "idx"),
        {
            "run_id": _TEXT,
            "idx": _INT,
            "target": _JSON,
            "state": _enum(_of(TargetState)),
            "error_message": _TEXT,
            "result": _JSON,
        },
    ),
    "attempts": (
        ("run_id", "n"),
        {
            "run_id": _TEXT,
            "n": _INT,
            "phase": _enum(_of(Phase)),
            "target": _JSON,
            "started_at": _TIME,
            "finished_at": _TIME,
            "outcome": _TEXT,
            "error": _TEXT,
            "stdout": _TEXT,
            "stderr": _TEXT,
        },
    ),
    "dlq": (
        ("id",),
        {
            "id": _TEXT,
            "run_id": _TEXT,
            "job": _TEXT,
            "target": _JSON,
            "error_kind": _TEXT,
            "error_message": _TEXT,
            "failed_at": _TIME,
        },
    ),
    "events": (
        ("id",),
        {"id": _TEXT, "name": _TEXT, "payload": _JSON, "created_at": _TIME},
    ),
    "jobs": (
        ("name",),
        {"name": _TEXT, "source": _TEXT, "spec": _JSON, "last_run": _TEXT},
    ),
    "audit": (
        ("id",),
        {
            "id": _TEXT,
            "at": _TIME,
            "via": _TEXT,
            "user": _TEXT,
            "cmd": _TEXT,
            "target": _TEXT,
            "job": _TEXT,
            "args": _JSON,
            "outcome": _TEXT,
            "error": _TEXT,
        },
    ),
}
# what must point at a stored run: (table, column)
_REFERENCES = (
    ("targets", "run_id"),
    ("attempts", "run_id"),
    ("dlq", "run_id"),
)


class Problems(list[str]):
    """Problems found so far, capped at ``MAX_PROBLEMS`` (the rest are counted)."""

    def __init__(self, limit: int = MAX_PROBLEMS) -> None:
        super().__init__()
        self.limit = limit
        self.more = 0

    def add(self, problem: str) -> None:
        if len(self) < self.limit:
            self.append(problem)
        else:
            self.more += 1

    @property
    def full(self) -> bool:
        return len(self) >= self.limit

    def report(self) -> list[str]:
        return [*self, f"... and {self.more} more"] if self.more else list(self)


def _value_problem(kind: Any, value: Any) -> str | None:
    """What is wrong with one stored value (None: nothing). Text arrives as bytes."""
    if value is None:
        return None
    if isinstance(value, bytes):
        try:
            text = value.decode("utf-8")
        except UnicodeDecodeError as exc:
            return f"not valid UTF-8 (byte {exc.start})"
        if kind is _JSON:
            try:
                loads(text)
            except ValueError as exc:
                return f"not readable JSON ({str(exc)[:80]})"
            return None
        if callable(kind):
            return kind(text)  # type: ignore[no-any-return]
        if kind in (_TIME, _INT):
            return f"text where a number belongs ({text[:40]!r})"
        return None
    if kind is _TIME and type(value) not in (float, int):
        return f"not a time ({type(value).__name__})"
    if kind is _INT and type(value) is not int:
        return f"not an integer ({type(value).__name__})"
    if kind in (_TEXT, _JSON) or callable(kind):
        return f"not text ({type(value).__name__})"
    if kind is _TIME and not -1e11 < value < 1e12:
        return f"time out of range ({value!r})"
    return None


def _rows(conn: sqlite3.Connection, table: str, newest: int | None) -> Iterator[sqlite3.Row]:
    keys, cols = _COLUMNS[table]
    order = (
        f" ORDER BY {', '.join(f'{k} DESC' for k in keys)} LIMIT {int(newest)}" if newest else ""
    )
    yield from conn.execute(f"SELECT {', '.join(cols)} FROM {table}{order}")


def _tables(conn: sqlite3.Connection) -> set[str]:
    """Tables present (a database not migrated yet lacks some: the migration says so)."""
    names = conn.execute("SELECT name FROM sqlite_master WHERE type='table'").fetchall()
    return {n.decode() if isinstance(n, bytes) else str(n) for (n,) in names}


def _decodable(
    conn: sqlite3.Connection, problems: Problems, newest: int | None, *, utf8_only: bool
) -> None:
    present = _tables(conn)
    for table, (keys, cols) in _COLUMNS.items():
        if table not in present:
            continue
        for row in _rows(conn, table, None if table == "jobs" else newest):
            for col, kind in cols.items():
                value = row[col]
                if utf8_only and not isinstance(value, bytes):
                    continue
                why = _value_problem(_TEXT if utf8_only else kind, value)
                if why is None:
                    continue
                ident = ", ".join(f"{k}={_shown(row[k])}" for k in keys)
                problems.add(f"{table} row {ident}: column {col} is {why}")
                if problems.full:
                    return


def _shown(value: Any) -> str:
    if isinstance(value, bytes):
        return repr(value.decode("utf-8", "backslashreplace"))
    return repr(value)


def _structure(conn: sqlite3.Connection, pragma: str, problems: Problems) -> None:
    for (line,) in conn.execute(f"PRAGMA {pragma}({MAX_PROBLEMS})"):
        text = line.decode("utf-8", "replace") if isinstance(line, bytes) else str(line)
        if text != "ok":  # one problem may span lines ("*** in database main ***\n…")
            parts = [p.strip() for p in text.splitlines() if p.strip()]
            parts = [p for p in parts if not p.startswith("*** in database")]
            problems.add(f"{pragma}: {'; '.join(parts) or text.strip()}")


def _references(conn: sqlite3.Connection, problems: Problems) -> None:
    for (line,) in conn.execute("SELECT COUNT(*) FROM pragma_foreign_key_check"):
        if line:
            problems.add(f"foreign_key_check: {line} rows point at missing rows")
    present = _tables(conn)
    for table, col in _REFERENCES:
        if table not in present:
            continue
        n, example = conn.execute(
            f"SELECT COUNT(*), MIN(t.{col}) FROM {table} t"
            f" WHERE NOT EXISTS (SELECT 1 FROM runs r WHERE r.id = t.{col})"
        ).fetchone()
        if n:
            problems.add(
                f"{table}: {n} row{'s' * (n != 1)} of runs that are not stored"
                f" (e.g. run_id={_shown(example)})"
            )


def _bytes_conn(path: Path) -> sqlite3.Connection:
    """A connection that only reads (``query_only``; opened read-write because a WAL file can
    only be read by a connection that may set up its shared memory) and hands text over as
    bytes, so it never fails to decode. ``path`` must exist: connecting would create it."""
    if not path.exists():
        raise sqlite3.OperationalError(f"no database file at {path}")
    conn = sqlite3.connect(path, timeout=5.0, check_same_thread=False)
    conn.text_factory = bytes
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA query_only=1")
    return conn


def _run_checks(path: Path, *, full: bool) -> list[str]:
    problems = Problems()
    try:
        conn = _bytes_conn(path)
    except sqlite3.Error as exc:
        return [f"cannot open {path}: {exc}"]
    try:
        _structure(conn, "integrity_check" if full else "quick_check", problems)
        if problems:  # a broken structure makes the row reads below meaningless or fail
            return problems.report()
        if full:
            _references(conn, problems)
        _decodable(conn, problems, None if full else STARTUP_ROWS, utf8_only=not full)
    except sqlite3.Error as exc:
        problems.add(f"reading failed: {type(exc).__name__}: {exc}")
    finally:
        conn.close()
    return problems.report()


def startup_problems(path: Path) -> list[str]:
    """Quick check, then what the daemon reads first (see the module docstring)."""
    return _run_checks(path, full=False)


def check_problems(path: Path) -> list[str]:
    """Everything: integrity_check, references and every row (``store.check``)."""
    return _run_checks(path, full=True)


def damaged_message(path: Path, problems: list[str]) -> str:
    """The one line a refused start prints: what is wrong and the ways back."""
    more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
    return (
        f"store damaged: {path}: {problems[0]}{more}; restore a backup "
        f"(`automationctl backup FILE` makes one), or salvage what is readable with "
        f"`sqlite3 {path} \"VACUUM INTO '{path}.salvaged'\"` and move that into place; "
        f"`automationd check-store --config FILE` lists every problem"
    )


class RepairedRow(dict[str, Any]):
    """A row read with text as bytes: text that was not UTF-8 is decoded with U+FFFD and its
    column named in ``damaged``. Indexable by name and by position, as ``sqlite3.Row`` is."""

    damaged: tuple[str, ...] = ()

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, int):
            return list(self.values())[key]
        return super().__getitem__(key)


def read_repaired(path: Path, sql: str, params: Any) -> list[RepairedRow]:
    """Run a read again with text taken as bytes (for rows that are not UTF-8)."""
    conn = _bytes_conn(path)
    try:
        cursor = conn.execute(sql, params)
        names = [d[0] for d in cursor.description]
        rows = cursor.fetchall()
    finally:
        conn.close()
    out: list[RepairedRow] = []
    for row in rows:
        fixed = RepairedRow()
        bad: list[str] = []
        for col, value in zip(names, tuple(row), strict=True):
            if isinstance(value, bytes):
                try:
                    value = value.decode("utf-8")
                except UnicodeDecodeError:
                    value = value.decode("utf-8", "replace")
                    bad.append(col)
            fixed[col] = value
        fixed.damaged = tuple(bad)
        out.append(fixed)
    return out
