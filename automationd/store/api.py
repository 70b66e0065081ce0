"""The store interface: what the engine, the admin commands and retention ask of a backend.

Every backend (SQLite here; PostgreSQL for several daemons) implements ``Store`` and passes the
one contract suite in tests/contract/. The engine never sees SQL, a connection or a thread.

Writes are values, not calls: a ``Write`` names a statement (``Stmt``) and carries its
parameters, built by the ``w_*`` functions in ``store/rows.py`` from records. Each backend maps
a ``Stmt`` to its own SQL, so one list of writes means the same on every backend. Three verbs
submit them, and they differ only in who is told and what happens on failure:

- ``post(writes)``: nobody waits. The writes must land: if their batch fails (disk full, I/O
  error) they are retried, in order, until they are stored.
- ``submit_then(writes, then, retry=…)``: ``then(None)`` is called from the batch's settlement
  once the writes are durable, or ``then(StoreError)`` if they failed. With ``retry=True`` a
  failure is not reported: the writes are retried like posted ones, and ``then(None)`` comes
  once they land (a run's end: its report waits, it is never lost).
- ``await commit(writes)``: durable on return, or ``StoreError``.

``post`` and ``submit_then(…, defer=True)`` are *deferrable*: nobody is held up until they are
durable (a run's end), so a backend may keep them a few milliseconds to share the commit of
the next write someone waits for (the SQLite writer's rule 1). The others are committed at
the end of the loop turn.

All three keep submission order: a write submitted later is never stored before one
submitted earlier, and writes with the same ``(stmt, key)`` in one batch collapse to the last.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from automationd.records import Attempt, AuditEntry, DlqEntry, Event, Run, Target
from automationd.store.jobs import StoredJobs
from automationd.store.write import Observer, Stmt, Then, Write

__all__ = [
    "AuditQuery",
    "Observer",
    "OpenAttempt",
    "PrunePass",
    "RunQuery",
    "Stmt",
    "Store",
    "Then",
    "Write",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class RunQuery:
    """A ``runs.list``: filters, newest first, keyset (``before``) or offset paging."""

    job: str | None = None
    state: str | None = None
    trigger: str | None = None
    since: float | None = None  # created at or after (epoch seconds)
    until: float | None = None  # created at or before
    before: str | None = None  # only ids below this one (keyset pagination)
    limit: int = 50
    offset: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditQuery:
    """An ``audit.list``: newest first, optionally one job's, one uid's, or since a time."""

    job: str | None = None
    uid: int | None = None
    since: float | None = None
    limit: int = 50


@dataclass(frozen=True, slots=True)
class OpenAttempt:
    """An attempt row without an outcome: found at start, it was cut short by a crash."""

    n: int
    phase: str
    target_idx: int
    pgid: int | None


@dataclass(slots=True)
class PrunePass:
    """What one retention pass remembers between its steps (owned by that pass)."""

    before: str  # prune finished runs with ids below this
    cursor: str = ""  # runs at or below this id were pruned or kept on purpose
    dlq_seen: str = ""  # newest dead-letter id read so far
    dlq_runs: set[str] = field(default_factory=set)  # runs with dead letters are kept


class Store(Protocol):
    """A durable store: group-committed writes and the reads the daemon needs."""

    @property
    def healthy(self) -> bool:
        """False while writes fail or the store stopped answering (``health_reason`` says)."""

    @property
    def health_reason(self) -> str | None: ...

    async def wait_healthy(self) -> None:
        """Return once the store is healthy (at once if it is)."""

    # -- writes ---------------------------------------------------------------------------
    def post(self, writes: Sequence[Write]) -> None: ...

    def submit_then(
        self, writes: Sequence[Write], then: Then, *, retry: bool = False, defer: bool = False
    ) -> None: ...

    async def commit(self, writes: Sequence[Write]) -> None: ...

    def watch(self, observer: Observer | None) -> None:
        """Tell ``observer`` the writes of every batch once it is durable (None: stop).

        For live views (the web console): called in the event loop, from the batch's
        settlement, with each entry's writes; it must be quick and must not raise. Nobody
        watching costs nothing per batch.
        """

    # -- runs -----------------------------------------------------------------------------
    async def run(self, run_id: str) -> Run | None: ...

    async def run_by_key(self, job: str, key: str) -> Run | None: ...

    async def runs(self, query: RunQuery) -> list[Run]: ...

    async def runs_window(self, query: RunQuery, scan: int) -> tuple[list[Run], str | None]:
        """``runs`` looking at no more than ``scan`` candidate rows (store/reads.py)."""

    async def recent_states(self, jobs: Sequence[str], per_job: int) -> dict[str, list[str]]:
        """Each job's newest outcome states (succeeded/partial/failed), newest first."""

    async def apply_of(self, preview_id: str) -> Run | None:
        """The run that applied preview ``preview_id``, if one was made (SPEC §7.2)."""

    async def live_runs(self) -> list[Run]:
        """Runs left queued, running or retrying (crash recovery), oldest first."""

    async def target_rows(self, run_id: str) -> list[Target]:
        """The run's stored targets (none for a run with the one implicit target)."""

    async def targets(self, run: Run) -> list[Target]:
        """The run's stored targets, or its one implicit target (state on the run row)."""

    async def attempts(self, run_id: str) -> list[Attempt]: ...

    async def open_attempts(self, run_id: str) -> list[OpenAttempt]: ...

    async def logs(self, run_id: str) -> list[dict[str, Any]]:
        """Captured output: ``[{attempt, phase, target, stream, text}]`` in attempt order."""

    # -- dead letters ---------------------------------------------------------------------
    async def dlq(self, *, job: str | None, limit: int) -> list[DlqEntry]: ...

    async def dlq_select(
        self,
        *,
        id: str | None,
        job: str | None,
        all: bool,
        kind: str | None = None,
        since: float | None = None,
    ) -> list[DlqEntry]:
        """One entry by id; or those matching every given filter (job, error kind, failed at
        or after ``since``); or all of them. Oldest first."""

    async def dlq_summary(
        self,
        *,
        job: str | None = None,
        kind: str | None = None,
        since: float | None = None,
        newest: int | None = None,
    ) -> list[dict[str, Any]]:
        """``[{job, kind, count, oldest, newest, sample, messages}]`` (times as epoch
        seconds), the largest groups first; of the ``newest`` entries only, when given."""

    async def dlq_count(self) -> int: ...

    # -- events ---------------------------------------------------------------------------
    async def event_by_key(self, key: str) -> Event | None: ...

    async def event_runs(self, event: Event) -> list[str]:
        """Ids of the runs the event itself started (not replays)."""

    async def events(
        self,
        *,
        since: float | None,
        until: float | None,
        limit: int | None,
        newest_first: bool,
        name: str | None = None,
        before: str | None = None,
    ) -> list[Event]:
        """Events created in [since, until] (whole milliseconds) whose name matches the glob."""

    # -- jobs -----------------------------------------------------------------------------
    async def job_rows(self) -> StoredJobs:
        """Every job's durable state (and API jobs' specs), as read at start-up."""

    # -- damage ---------------------------------------------------------------------------
    async def check(self) -> list[str]:
        """Problems found reading the whole store (``store.check``), or none."""

    # -- fires, the audit trail, backups (issue 14) ----------------------------------------
    async def fired(self, job: str, since: float, until: float) -> set[int]:
        """Fire times in [since, until) of ``job`` that already have a run, as ``fire_ms``
        (store/rows.py): the ``scheduled_for`` of its stored runs. Schedule, misfire and
        backfill runs are unique per (job, ``scheduled_for``): a second one is refused."""

    async def audit(self, query: AuditQuery) -> list[AuditEntry]: ...

    async def backup(self, path: str) -> int:
        """Write a consistent copy of the store to the new file ``path`` while serving;
        returns its size in bytes."""

    async def prune_audit_step(self, before: str, batch: int) -> tuple[int, bool, float]:
        """Delete up to ``batch`` audit entries with ids below ``before``; as below."""

    # -- retention ------------------------------------------------------------------------
    async def prune_runs_step(self, prune: PrunePass, batch: int) -> tuple[int, bool, float]:
        """Delete up to ``batch`` finished runs below ``prune.before`` (with their targets,
        attempts and output; runs with dead letters are kept). Returns (deleted, more,
        seconds the step held the writer)."""

    async def prune_events_step(self, before: str, batch: int) -> tuple[int, bool, float]:
        """Delete up to ``batch`` events with ids below ``before``; as above."""
