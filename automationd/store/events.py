"""The event log ↔ SQL: stored events, idempotency keys, history filters and replay windows.

Event ids sort by creation time (core/ids.py) and start with the creation millisecond, so a
time window is a primary-key range: the ``since``/``until`` filters never scan the table. A
``name`` glob is pushed into SQL as ``GLOB`` when SQLite's glob means the same as ours (no
``[...]`` classes, whose negation syntax differs), and every row is re-checked with
``core.match.glob_match`` either way, in pages, so a filter never loads the whole history.
"""

from __future__ import annotations

import math
import sqlite3
from typing import Any

from automationd.core.ids import id_floor
from automationd.core.match import glob_match
from automationd.records import Event
from automationd.store.db import Database, Write
from automationd.store.runs import dumps, loads

_INSERT = (
    "INSERT INTO events (id, name, payload, created_at, idempotency_key, depth)"
    " VALUES (?,?,?,?,?,?)"
)
_PAGE = 500


def w_event(e: Event) -> Write:
    return w_event_row(e.id, e.name, dumps(e.payload), e.created_at, e.idempotency_key, e.depth)


def w_event_row(
    event_id: str,
    name: str,
    payload_json: str | None,
    created_at: float,
    key: str | None,
    depth: int,
) -> Write:
    """An event's row from its parts, the payload already JSON (``run.*`` events: see
    EventBus.outcome)."""
    return Write(_INSERT, (event_id, name, payload_json, created_at, key, depth), key=event_id)


def event_from_row(r: sqlite3.Row) -> Event:
    return Event(
        id=r["id"],
        name=r["name"],
        payload=loads(r["payload"]),
        created_at=r["created_at"],
        idempotency_key=r["idempotency_key"],
        depth=r["depth"],
    )


def _ms_id(ts: float, plus: int = 0) -> str:
    """The id prefix of ``ts``'s millisecond (+ ``plus``): bounds are whole milliseconds, as
    listed (RFC 3339 with ms), and the small bias undoes float error in ``.123`` → 0.12299…"""
    return f"{max(0, math.floor(ts * 1000 + 0.01) + plus):012x}"


class EventStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def by_key(self, key: str) -> Event | None:
        row = await self.db.fetchone("SELECT * FROM events WHERE idempotency_key=?", (key,))
        return event_from_row(row) if row else None

    async def get(self, event_id: str) -> Event | None:
        row = await self.db.fetchone("SELECT * FROM events WHERE id=?", (event_id,))
        return event_from_row(row) if row else None

    async def run_ids_of(self, event: Event) -> list[str]:
        """Runs the event itself started (not replays): created in the event's transaction,
        so their ids lie just above the event's; the range keeps this off a table scan."""
        rows = await self.db.fetchall(
            "SELECT id FROM runs WHERE id > ? AND id < ? AND origin=? AND trigger='event'"
            " ORDER BY id",
            (event.id, id_floor(event.created_at + 60.0), event.id),
        )
        return [r["id"] for r in rows]

    async def window(
        self,
        *,
        since: float | None,
        until: float | None,
        limit: int | None,
        newest_first: bool,
        name: str | None = None,
    ) -> list[Event]:
        """Events created in [since, until] (whole milliseconds) whose name matches ``name``.

        Newest first for history listings, oldest first for replay; at most ``limit``.
        """
        where: list[str] = []
        params: list[Any] = []
        if since is not None:
            where.append("id >= ?")
            params.append(_ms_id(since))
        if until is not None:
            where.append("id < ?")
            params.append(_ms_id(until, 1))
        if name is not None and "[" not in name and "]" not in name:
            where.append("name GLOB ?")
            params.append(name)
        order = "DESC" if newest_first else "ASC"
        cursor_op = "<" if newest_first else ">"
        out: list[Event] = []
        cursor: str | None = None
        while limit is None or len(out) < limit:
            conds = list(where)
            page_params = list(params)
            if cursor is not None:
                conds.append(f"id {cursor_op} ?")
                page_params.append(cursor)
            clause = f"WHERE {' AND '.join(conds)}" if conds else ""
            rows = await self.db.fetchall(
                f"SELECT * FROM events {clause} ORDER BY id {order} LIMIT {_PAGE}",
                tuple(page_params),
            )
            for r in rows:
                if name is None or glob_match(name, r["name"]):
                    out.append(event_from_row(r))
            if len(rows) < _PAGE:
                break
            cursor = rows[-1]["id"]
        return out if limit is None else out[:limit]
