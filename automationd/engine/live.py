"""A run while it lives in memory: the one mutable owner of its changing state.

A ``LiveRun`` is made by the launcher (engine/launcher.py) and, from its launch on, changed
only by its own task (engine/run.py) — and, before that task's first step, by the launcher's
pre-opened first attempt. Everyone else reads snapshots: ``snapshot()`` is the frozen ``Run``
record the socket answers with and the report publishes. The store writes a live run's row
straight from these attributes (store/rows.py ``RunView``), so a state change costs an
attribute store, not a record copy.

Targets: a run without explicit targets has one *implicit* target (``value`` None) whose state
lives on the run row only (``persist_targets`` False), so the common single-action run writes
no target rows at all. A job with a check phase starts with no targets until its check has
decided them (``needs_check``).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from automationd.actions.base import Action, ActionContext
from automationd.core.plan import Plan
from automationd.core.runstate import RunState, TargetState
from automationd.engine.pool import Reservation
from automationd.records import Phase, Run, RunError, Target, Trigger, fresh_run_json, is_fresh
from automationd.store.write import Write

if TYPE_CHECKING:
    from automationd.config.model import JobSpec
    from automationd.engine.jobs import JobRuntime

# A job's built actions, by phase slot (perform, check, verify, undo): engine/attempt.py.
Actions = tuple[Action, Action | None, Action | None, Action | None]


@dataclass(slots=True, eq=False)
class LiveTarget:
    idx: int
    value: Any
    state: TargetState = TargetState.PENDING
    attempts: int = 0  # perform attempts only: retries are counted per target
    error: RunError | None = None
    result: Any = None

    def snapshot(self, run_id: str) -> Target:
        return Target(
            run_id=run_id,
            idx=self.idx,
            target=self.value,
            state=self.state,
            attempts=self.attempts,
            error=self.error,
            result=self.result,
        )


@dataclass(slots=True, eq=False, kw_only=True)
class LiveRun:
    # fixed at creation
    id: str
    job: JobRuntime
    trigger: Trigger
    created_at: float
    scheduled_for: float | None = None
    idempotency_key: str | None = None
    depth: int = 0
    origin: str | None = None
    lease: int = 0
    # changed by the run's task
    state: RunState = RunState.QUEUED
    started_at: float | None = None
    finished_at: float | None = None
    attempts: int = 0
    payload: Any = None
    error: RunError | None = None
    result: Any = None
    reason: str | None = None
    targets: list[LiveTarget] = field(default_factory=list)
    targets_succeeded: int = 0
    targets_failed: int = 0
    persist_targets: bool = False
    needs_check: bool = False
    check_tries: int = 0  # check attempts already failed (after a crash, the interrupted)
    # previews, apply and rollback (engine/plan.py, engine/undo.py)
    plan: Any = None  # the plan as stored: a preview's, or an apply's once decided
    basis: tuple[Plan, float, Any] | None = None  # an apply's (preview plan, made at, check's)
    decided: asyncio.Future[None] | None = None  # an apply's answer waits for its decision
    targets_rolled_back: int = 0
    undo_from: int | None = None  # ``attempts`` when the latest rollback began
    undo_tries: dict[int, int] | None = None  # target idx → undo tries (after a crash)
    # life in memory
    after: tuple[asyncio.Future[None], ...] = ()  # previous runs' ends (overlap: queue)
    first: Any = None  # the attempt the launcher opened with the run (attempt.Opened)
    primed: tuple[Phase, Action, ActionContext] | None = None  # attempt 1's, made ahead (herd)
    reservation: Reservation | None = None  # its place in the worker pool's queue
    direct: tuple[Phase, LiveTarget | None] | None = None  # a first attempt the launcher opens
    unposted: list[Write] | None = None  # attempt end rows riding with the run's next write
    resumed: bool = False
    cancel_reason: str | None = None
    task: asyncio.Task[None] | None = None
    started: bool = False  # the task has taken its first step
    executing: int = 0  # attempts whose action is running now
    gone: bool = False  # left memory
    abandoned: bool = False  # another daemon holds it now: stop without a word to the store
    unowned: bool = False  # born for any daemon to claim (fleet/leases.py); not run here
    herd: bool = False  # launched with a herd; its task has not stepped yet (herd.Starts)
    made: bool = False  # stored ahead of its fire (engine/ahead.py): its row exists
    _ended: asyncio.Future[None] | None = None
    # The definition this run keeps when its job is redefined meanwhile (jobs.update, a
    # reload): (spec, built actions or None). None: the job's current one.
    pinned: tuple[JobSpec, Actions | None] | None = None

    @property
    def job_name(self) -> str:
        return self.job.spec.name

    @property
    def spec(self) -> JobSpec:
        """The definition this run follows: its job's, or the one pinned when it changed."""
        pinned = self.pinned
        return self.job.spec if pinned is None else pinned[0]

    def pin(self, spec: JobSpec, actions: Actions | None) -> None:
        """Keep ``spec`` (and its actions, if built) whatever the job becomes; first pin wins."""
        if self.pinned is None:
            self.pinned = (spec, actions)

    @property
    def targets_total(self) -> int:
        return len(self.targets)

    def snapshot(self) -> Run:
        return Run(
            id=self.id,
            job=self.job_name,
            state=self.state,
            trigger=self.trigger,
            created_at=self.created_at,
            scheduled_for=self.scheduled_for,
            started_at=self.started_at,
            finished_at=self.finished_at,
            attempts=self.attempts,
            idempotency_key=self.idempotency_key,
            payload=self.payload,
            targets_total=len(self.targets),
            targets_succeeded=self.targets_succeeded,
            targets_failed=self.targets_failed,
            error=self.error,
            result=self.result,
            depth=self.depth,
            origin=self.origin,
            reason=self.reason,
            lease=self.lease,
            plan=self.plan,
            targets_rolled_back=self.targets_rolled_back,
            undo_from=self.undo_from,
        )

    def riding(self, writes: list[Write]) -> list[Write]:
        """``writes`` with the attempt end rows that wait to ride with them in front (see
        engine/attempt.py: an attempt's end and what follows it are stored together)."""
        unposted = self.unposted
        if unposted is None:
            return writes
        self.unposted = None
        unposted.extend(writes)
        return unposted

    def to_json_text(self) -> str:
        """``snapshot().to_json_text()``; a run nothing has happened to yet (a trigger's
        answer, written once per run) is rendered from its attributes, with no snapshot."""
        if is_fresh(self):
            return fresh_run_json(
                self.id,
                self.job.spec.name,
                self.state,
                self.trigger,
                len(self.targets),
                self.created_at,
                self.started_at,
                self.attempts,
                self.payload,
                self.depth,
            )
        return self.snapshot().to_json_text()

    def ended(self) -> asyncio.Future[None]:
        """Resolves when the run leaves memory (what a queued fire waits for). Made on
        demand: most runs are never waited for."""
        if self._ended is None:
            self._ended = asyncio.get_running_loop().create_future()
            if self.gone:
                self._ended.set_result(None)
        return self._ended

    def leave(self) -> None:
        """The run left memory: wake whoever waits for its end."""
        self.gone = True
        if self._ended is not None and not self._ended.done():
            self._ended.set_result(None)

    @classmethod
    def from_stored(cls, run: Run, job: JobRuntime, rows: list[Target]) -> LiveRun:
        """A run read back at start-up (crash recovery), to resume under its own id. ``rows``
        are its stored targets: none for a run with the implicit target, or whose check has
        not decided them yet."""
        live = cls(
            id=run.id,
            job=job,
            trigger=run.trigger,
            created_at=run.created_at,
            scheduled_for=run.scheduled_for,
            idempotency_key=run.idempotency_key,
            depth=run.depth,
            origin=run.origin,
            lease=run.lease,
            state=run.state,
            started_at=run.started_at,
            attempts=run.attempts,
            payload=run.payload,
            result=run.result,
            resumed=True,
            persist_targets=bool(rows),
            error=run.error if run.state is RunState.ROLLING_BACK else None,
            plan=run.plan,
            undo_from=run.undo_from,
        )
        live.targets = [
            LiveTarget(t.idx, t.target, t.state, t.attempts, t.error, t.result) for t in rows
        ]
        if not rows and run.targets_total == 1:
            live.targets = [LiveTarget(0, None)]  # the implicit one; its tries are recounted
        # an apply run's check belongs to its decision (engine/plan.py), made once
        live.needs_check = (
            job.spec.check is not None
            and run.targets_total == 0
            and run.trigger is not Trigger.APPLY
        )
        live.targets_succeeded = sum(t.state is TargetState.SUCCEEDED for t in live.targets)
        live.targets_failed = sum(t.state is TargetState.FAILED for t in live.targets)
        live.targets_rolled_back = sum(t.state is TargetState.ROLLED_BACK for t in live.targets)
        return live
