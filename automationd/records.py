"""Frozen records for runs, targets, attempts, events and dead letters.

Times are float epoch seconds (UTC) inside the daemon; ``to_json()`` renders them as RFC 3339
for the socket and the CLI. A record is a snapshot: a run's changing state lives in its
``LiveRun`` (engine/live.py) while it runs, and a new record is taken when it is reported.
Cold paths change records with ``dataclasses.replace`` (a misspelt field raises
``TypeError``, and mypy checks the names).
"""

from __future__ import annotations

import enum
import functools
import json
from dataclasses import dataclass
from typing import Any, Protocol

from automationd.core.runstate import RunState, TargetState
from automationd.errors import ErrorKind
from automationd.recordgen import fast_record
from automationd.units import rfc3339


class Trigger(enum.StrEnum):
    SCHEDULE = "schedule"
    MANUAL = "manual"
    EVENT = "event"
    RETRY = "retry"
    REPLAY = "replay"
    MISFIRE = "misfire"
    PREVIEW = "preview"  # only the check ran; the run holds its plan (SPEC §7.2)
    APPLY = "apply"  # performs a preview's plan, if it still holds
    BACKFILL = "backfill"  # a past fire run on request (jobs.backfill, SPEC §7.1)


class Phase(enum.StrEnum):
    CHECK = "check"
    PERFORM = "perform"
    VERIFY = "verify"
    UNDO = "undo"  # reverses a succeeded perform (rollback, SPEC §7.2)


@dataclass(frozen=True, slots=True, kw_only=True)
class RunError:
    kind: ErrorKind
    message: str

    def to_json(self) -> dict[str, str]:
        return {"kind": self.kind.value, "message": self.message}


@fast_record
@dataclass(frozen=True, slots=True, kw_only=True)
class Run:
    id: str
    job: str
    state: RunState
    trigger: Trigger
    created_at: float
    scheduled_for: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    attempts: int = 0
    idempotency_key: str | None = None
    payload: Any = None
    targets_total: int = 0
    targets_succeeded: int = 0
    targets_failed: int = 0
    error: RunError | None = None
    result: Any = None
    depth: int = 0  # event-chain depth: a run started by a run.* event is one deeper
    origin: str | None = None  # run id this one retries, or event id that started it
    reason: str | None = None  # why skipped/cancelled, when it was
    lease: int = 0  # fencing token of the daemon that owns the run (0: a single daemon)
    plan: Any = None  # a preview's or an apply's plan: {hash, targets, payload, ...}
    targets_rolled_back: int = 0  # succeeded targets whose undo ran (rollback)
    undo_from: int | None = None  # attempts the run had when its latest rollback began

    @property
    def job_name(self) -> str:
        """The job's name (what a ``LiveRun`` calls it too: there ``job`` is the job itself)."""
        return self.job

    def to_json_text(self) -> str:
        """``to_json()`` as compact JSON text (the admin socket's format, same bytes). A new
        run's is made without the dict: the answer to a trigger is the line written most."""
        if is_fresh(self):  # a new run (a trigger's answer): constant parts from a template
            return fresh_run_json(
                self.id,
                self.job,
                self.state,
                self.trigger,
                self.targets_total,
                self.created_at,
                self.started_at,
                self.attempts,
                self.payload,
                self.depth,
            )
        return _encode(self.to_json())

    def to_json(self) -> dict[str, Any]:
        ended = self.targets_succeeded + self.targets_failed + self.targets_rolled_back
        pending = max(0, self.targets_total - ended)
        out: dict[str, Any] = {
            "id": self.id,
            "job": self.job,
            "state": self.state.value,
            "trigger": self.trigger.value,
            "scheduled_for": rfc3339(self.scheduled_for),
            "created_at": rfc3339(self.created_at),
            "started_at": rfc3339(self.started_at),
            "finished_at": rfc3339(self.finished_at),
            "attempts": self.attempts,
            "idempotency_key": self.idempotency_key,
            "targets": {
                "total": self.targets_total,
                "succeeded": self.targets_succeeded,
                "failed": self.targets_failed,
                "pending": pending,
            },
            "error": self.error.to_json() if self.error else None,
            "result": self.result,
            "payload": self.payload,
            "depth": self.depth,
            "origin": self.origin,
            "reason": self.reason,
        }
        if self.targets_rolled_back:
            out["targets"]["rolled_back"] = self.targets_rolled_back
        if self.plan is not None:
            out["plan"] = self.plan
        return out


@fast_record
@dataclass(frozen=True, slots=True, kw_only=True)
class Target:
    run_id: str
    idx: int  # position in the run's target list; -1 means "no target" (one perform)
    target: Any
    state: TargetState = TargetState.PENDING
    attempts: int = 0
    error: RunError | None = None
    result: Any = None

    def to_json(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "state": self.state.value,
            "attempts": self.attempts,
            "error": self.error.to_json() if self.error else None,
            "result": self.result,
        }


@fast_record
@dataclass(frozen=True, slots=True, kw_only=True)
class Attempt:
    run_id: str
    n: int  # 1-based, counts every attempt of the run across phases and targets
    phase: Phase
    target: Any
    target_idx: int
    started_at: float
    finished_at: float | None = None
    outcome: str | None = None  # "ok" | ErrorKind value; None while in flight
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "phase": self.phase.value,
            "target": self.target,
            "started_at": rfc3339(self.started_at),
            "finished_at": rfc3339(self.finished_at),
            "outcome": self.outcome,
            "error": self.error,
        }


@fast_record
@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    id: str
    name: str
    payload: Any
    created_at: float
    idempotency_key: str | None = None
    depth: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "payload": self.payload,
            "created_at": rfc3339(self.created_at),
            "idempotency_key": self.idempotency_key,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class DlqEntry:
    id: str
    run_id: str
    job: str
    target: Any
    target_idx: int
    error: RunError
    failed_at: float
    phase: Phase = Phase.PERFORM  # undo: the target's rollback failed (retrying undoes again)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "run_id": self.run_id,
            "job": self.job,
            "target": self.target,
            "error": self.error.to_json(),
            "failed_at": rfc3339(self.failed_at),
            "phase": self.phase.value,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditEntry:
    """One state-changing command as the audit trail keeps it (admin/audit.py)."""

    id: str
    at: float
    via: str  # socket | web | signal | daemon
    uid: int | None
    user: str | None  # login name, or the web session
    cmd: str
    target: str | None  # what the command named: a job, a run id, a path
    job: str | None  # the job it concerned, when known (audit.list filters on it)
    args: Any  # the arguments with secrets redacted, cut short (core/redact.py)
    digest: str | None  # hash of the full arguments: equal requests, without their secrets
    outcome: str  # "ok" or the error code
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "at": rfc3339(self.at),
            "via": self.via,
            "uid": self.uid,
            "user": self.user,
            "cmd": self.cmd,
            "target": self.target,
            "job": self.job,
            "args": self.args,
            "digest": self.digest,
            "outcome": self.outcome,
            "error": self.error,
        }


_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode


def _json(value: Any) -> str:
    return "null" if value is None else _encode(value)


@functools.lru_cache(maxsize=4096)
def json_name(text: str) -> str:
    """A job name (or another short, often repeated string) as JSON text, cached."""
    return _encode(text)


@functools.lru_cache(maxsize=1024)
def _fresh(job: str, state: RunState, trigger: Trigger, total: int) -> tuple[str, str]:
    """The constant parts of a new run's JSON text (see ``Run.to_json_text``)."""
    head = (
        f'"job":{json_name(job)},"state":"{state.value}","trigger":"{trigger.value}",'
        '"scheduled_for":null,'
    )
    tail = (
        '"idempotency_key":null,'
        f'"targets":{{"total":{total},"succeeded":0,"failed":0,"pending":{total}}},'
        '"error":null,"result":null,'
    )
    return head, tail


class _RunParts(Protocol):
    """What ``is_fresh`` reads: a ``Run`` record's fields, or a ``LiveRun``'s attributes."""

    @property
    def finished_at(self) -> float | None: ...
    @property
    def scheduled_for(self) -> float | None: ...
    @property
    def idempotency_key(self) -> str | None: ...
    @property
    def error(self) -> RunError | None: ...
    @property
    def result(self) -> Any: ...
    @property
    def origin(self) -> str | None: ...
    @property
    def reason(self) -> str | None: ...
    @property
    def targets_succeeded(self) -> int: ...
    @property
    def targets_failed(self) -> int: ...
    @property
    def plan(self) -> Any: ...
    @property
    def targets_rolled_back(self) -> int: ...


def is_fresh(run: _RunParts) -> bool:
    """Whether ``fresh_run_json`` renders ``run`` exactly as ``Run.to_json`` would: nothing has
    happened to it yet that the template leaves out. The one test for the record and for the
    live run (engine/live.py), so the fast path cannot drift from the slow one."""
    return (
        run.finished_at is None
        and run.scheduled_for is None
        and run.idempotency_key is None
        and run.error is None
        and run.result is None
        and run.origin is None
        and run.reason is None
        and run.targets_succeeded == 0
        and run.targets_failed == 0
        and run.plan is None
        and run.targets_rolled_back == 0
    )


def fresh_run_json(
    run_id: str,
    job: str,
    state: RunState,
    trigger: Trigger,
    targets_total: int,
    created_at: float,
    started_at: float | None,
    attempts: int,
    payload: Any,
    depth: int,
) -> str:
    """``Run.to_json_text()`` of a run nothing has happened to yet (no end, error, result,
    schedule, key, origin or reason, no target done): what a trigger is answered with, from
    the run's parts, without a ``Run`` record or a dict."""
    head, tail = _fresh(job, state, trigger, targets_total)
    return (
        f'{{"id":{json_id(run_id)},{head}"created_at":{_time(created_at)},'
        f'"started_at":{_time(started_at)},"finished_at":null,'
        f'"attempts":{attempts},{tail}"payload":{_json(payload)},'
        f'"depth":{depth},"origin":null,"reason":null}}'
    )


def json_id(text: str) -> str:
    """A record id as JSON text: ours are hex, with nothing to escape."""
    return f'"{text}"' if text.isalnum() else _encode(text)


def _time(ts: float | None) -> str:
    return "null" if ts is None else f'"{rfc3339(ts)}"'
