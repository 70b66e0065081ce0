"""Reading rows back even when they do not read back: a damaged page, a value written by hand.

A listing reports such a row instead of failing (issue 11: one undecodable payload made
``runs.list`` answer ``internal`` for good). Each ``read_*`` tries the fast converter of
store/rows.py and, if it fails or the backend marked the row repaired (``damaged``: the
columns that were not UTF-8, decoded with U+FFFD), builds the record from whatever each column
still holds and says what was wrong: a run's ``reason`` (and an event's payload, a target's,
attempt's or dead letter's error) reads ``store: damaged row (…)``.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable
from typing import Any, TypeVar

from automationd.core.runstate import RunState, TargetState
from automationd.errors import ErrorKind
from automationd.records import Attempt, DlqEntry, Event, Phase, Run, RunError, Target, Trigger
from automationd.store.rows import (
    Row,
    attempt_from_row,
    dlq_from_row,
    event_from_row,
    loads,
    run_error,
    run_from_row,
    target_from_row,
)

E = TypeVar("E", bound=enum.Enum)
R = TypeVar("R")


def _whole(r: Row, convert: Callable[[Row], R]) -> tuple[R | None, str]:
    """The record when the row reads back whole; else None and what was wrong, as said."""
    problem = _damage(r)
    if problem is None:
        try:
            return convert(r), ""
        except Exception as exc:
            problem = f"{type(exc).__name__}: {exc}"[:200]
    return None, f"store: damaged row ({problem})"


def _damage(r: Row) -> str | None:
    cols: tuple[str, ...] = getattr(r, "damaged", ())
    return f"not valid UTF-8 in {', '.join(cols)}" if cols else None


def _cell(r: Row, col: str) -> Any:
    try:
        return r[col]
    except (KeyError, IndexError):
        return None


def _num(v: Any) -> float | None:
    return float(v) if type(v) in (int, float) and math.isfinite(v) else None


def _int(v: Any) -> int:
    return v if type(v) is int else 0


def _text(v: Any) -> str | None:
    return v if type(v) is str else None if v is None else repr(v)[:200]


def _member(kind: type[E], v: Any, default: E) -> E:
    try:
        return kind(v)
    except ValueError:
        return default


def _loads(v: Any) -> Any:
    return loads(v) if type(v) is str else None if v is None else {"undecodable": repr(v)[:200]}


def read_run(r: Row) -> Run:
    run, why = _whole(r, run_from_row)
    if run is not None:
        return run
    return Run(
        id=_text(_cell(r, "id")) or "?",
        job=_text(_cell(r, "job")) or "?",
        state=_member(RunState, _cell(r, "state"), RunState.FAILED),
        trigger=_member(Trigger, _cell(r, "trigger"), Trigger.MANUAL),
        scheduled_for=_num(_cell(r, "scheduled_for")),
        created_at=_num(_cell(r, "created_at")) or 0.0,
        started_at=_num(_cell(r, "started_at")),
        finished_at=_num(_cell(r, "finished_at")),
        attempts=_int(_cell(r, "attempts")),
        idempotency_key=_text(_cell(r, "idempotency_key")),
        payload=_loads(_cell(r, "payload")),
        targets_total=_int(_cell(r, "targets_total")),
        targets_succeeded=_int(_cell(r, "targets_succeeded")),
        targets_failed=_int(_cell(r, "targets_failed")),
        error=run_error(_text(_cell(r, "error_kind")), _text(_cell(r, "error_message"))),
        result=_loads(_cell(r, "result")),
        depth=_int(_cell(r, "depth")),
        origin=_text(_cell(r, "origin")),
        reason=why,
        lease=_int(_cell(r, "lease")),
    )


def read_target(r: Row) -> Target:
    target, why = _whole(r, target_from_row)
    if target is not None:
        return target
    return Target(
        run_id=_text(_cell(r, "run_id")) or "?",
        idx=_int(_cell(r, "idx")),
        target=_loads(_cell(r, "target")),
        state=_member(TargetState, _cell(r, "state"), TargetState.FAILED),
        attempts=_int(_cell(r, "attempts")),
        error=RunError(kind=ErrorKind.FATAL, message=why),
        result=_loads(_cell(r, "result")),
    )


def read_attempt(r: Row) -> Attempt:
    attempt, why = _whole(r, attempt_from_row)
    if attempt is not None:
        return attempt
    return Attempt(
        run_id=_text(_cell(r, "run_id")) or "?",
        n=_int(_cell(r, "n")),
        phase=_member(Phase, _cell(r, "phase"), Phase.PERFORM),
        target=_loads(_cell(r, "target")),
        target_idx=_int(_cell(r, "target_idx")),
        started_at=_num(_cell(r, "started_at")) or 0.0,
        finished_at=_num(_cell(r, "finished_at")),
        outcome=_text(_cell(r, "outcome")),
        error=why,
    )


def read_dlq(r: Row) -> DlqEntry:
    entry, why = _whole(r, dlq_from_row)
    if entry is not None:
        return entry
    return DlqEntry(
        id=_text(_cell(r, "id")) or "?",
        run_id=_text(_cell(r, "run_id")) or "?",
        job=_text(_cell(r, "job")) or "?",
        target_idx=_int(_cell(r, "target_idx")),
        target=_loads(_cell(r, "target")),
        error=RunError(kind=ErrorKind.FATAL, message=why),
        failed_at=_num(_cell(r, "failed_at")) or 0.0,
    )


def read_event(r: Row) -> Event:
    event, why = _whole(r, event_from_row)
    if event is not None:
        return event
    return Event(
        id=_text(_cell(r, "id")) or "?",
        name=_text(_cell(r, "name")) or "?",
        payload={
            "damaged": why,
            "payload": _loads(_cell(r, "payload")),
        },
        created_at=_num(_cell(r, "created_at")) or 0.0,
        idempotency_key=_text(_cell(r, "idempotency_key")),
        depth=_int(_cell(r, "depth")),
    )
