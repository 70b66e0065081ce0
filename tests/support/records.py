"""Small builders of records and writes for store tests (defaults for every field a test
does not care about)."""

from __future__ import annotations

import random
from typing import Any

from automationd.core.ids import IdGenerator
from automationd.core.runstate import RunState
from automationd.records import Event, Run, Trigger
from automationd.store.rows import w_event, w_run
from automationd.store.write import Stmt, Write


def new_id(at: float, seed: int = 7) -> str:
    """An id for wall time ``at`` (a fresh generator: one generator never goes back)."""
    return IdGenerator(random.Random(seed)).new(at)


def run_record(run_id: str, *, job: str = "j", created_at: float = 1.0, **kw: Any) -> Run:
    kw.setdefault("state", RunState.QUEUED)
    kw.setdefault("trigger", Trigger.MANUAL)
    return Run(id=run_id, job=job, created_at=created_at, **kw)


def run_write(run_id: str, **kw: Any) -> Write:
    return w_run(run_record(run_id, **kw))


def event_write(event_id: str, name: str = "test", at: float = 0.0, **kw: Any) -> Write:
    return w_event(
        Event(id=event_id, name=name, payload=kw.pop("payload", None), created_at=at, **kw)
    )


def bad_write(event_id: str = "bad") -> Write:
    """An event row without a name: every backend refuses it (NOT NULL), failing its batch."""
    return Write(Stmt.EVENT, (event_id, None, None, 0.0, None, 0))
