"""The event log ↔ SQL: stored events, idempotency keys and replay windows."""

from __future__ import annotations

import sqlite3

from automationd.records import Event
from automationd.store.db import Database, Write
from automationd.store.runs import dumps, loads

_INSERT = (
    "INSERT INTO events (id, name, payload, created_at, idempotency_key, depth)"
    " VALUES (?,?,?,?,?,?)"
)


def w_event(e: Event) -> Write:
    return Write(
        _INSERT, (e.id, e.name, dumps(e.payload), e.created_at, e.idempotency_key, e.depth),
        key=e.id,
    )


def event_from_row(r: sqlite3.Row) -> Event:
    return Event(
        id=r["id"],
        name=r["name"],
        payload=loads(r["payload"]),
        created_at=r["created_at"],
        idempotency_key=r["idempotency_key"],
        depth=r["depth"],
    )


class EventStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def by_key(self, key: str) -> Event | None:
        row = await self.db.fetchone("SELECT * FROM events WHERE idempotency_key=?", (key,))
        return event_from_row(row) if row else None

    async def window(
        self, *, since: float | None, until: float | None, limit: int | None, newest_first: bool
    ) -> list[Event]:
        where, params = [], []
        if since is not None:
            where.append("created_at >= ?")
            params.append(since)
        if until is not None:
            where.append("created_at <= ?")
            params.append(until)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        order = "DESC" if newest_first else "ASC"
        lim = f"LIMIT {int(limit)}" if limit is not None else ""
        rows = await self.db.fetchall(
            f"SELECT * FROM events {clause} ORDER BY id {order} {lim}", tuple(params)
        )
        return [event_from_row(r) for r in rows]
