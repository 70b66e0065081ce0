"""Run and target state machines, written as data (h11 style).

Rules:
- A run is born ``queued`` (durable before any work), goes ``running`` when its first phase
  starts, may bounce ``running`` ⇄ ``retrying`` while a target waits out a backoff, and ends in
  exactly one terminal state. ``skipped`` and ``cancelled`` may be entered from any live state.
- A run resumed after a crash re-enters through ``RESUME`` (any live state → running).
- A target is ``pending`` until it ends ``succeeded`` or ``failed``; a retried run gives its
  failed targets a fresh ``pending`` life under a new run id. The one event that leaves an
  end is ``ROLL_BACK``: a succeeded target whose ``undo`` ran becomes ``rolled_back``.
- Previews and apply (SPEC §7.2): a ``preview`` run runs only its check and ends
  ``previewed`` (its plan stored); an ``apply`` run whose plan no longer matches the
  preview's ends ``stale`` before anything is performed (from ``queued`` when the job's
  definition or the preview's age already says so, from ``running`` after its check).
- Rollback continues the SAME run: a ``partial``/``failed`` run goes ``rolling_back`` (a live
  state: a crash resumes it) and ends ``rolled_back`` when every succeeded target was undone,
  or ``failed`` when some were not (they are dead-lettered; rolling back again retries
  them). Cancelling a rollback also leaves it ``failed``: some targets may still be applied.
Illegal transitions raise ``InvalidTransition`` naming the state and the event.
"""

from __future__ import annotations

import enum


class RunState(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    RETRYING = "retrying"
    SUCCEEDED = "succeeded"
    PARTIAL = "partial"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"
    PREVIEWED = "previewed"
    STALE = "stale"
    ROLLING_BACK = "rolling_back"
    ROLLED_BACK = "rolled_back"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset(
    {
        RunState.SUCCEEDED,
        RunState.PARTIAL,
        RunState.FAILED,
        RunState.SKIPPED,
        RunState.CANCELLED,
        RunState.PREVIEWED,
        RunState.STALE,
        RunState.ROLLED_BACK,
    }
)
LIVE = frozenset({RunState.QUEUED, RunState.RUNNING, RunState.RETRYING, RunState.ROLLING_BACK})
ROLLBACK_FROM = frozenset({RunState.PARTIAL, RunState.FAILED})  # the ends a rollback undoes


class RunEvent(enum.StrEnum):
    START = "start"
    BACKOFF = "backoff"
    RESUME = "resume"
    SUCCEED = "succeed"
    PARTIAL = "partial"
    FAIL = "fail"
    SKIP = "skip"
    CANCEL = "cancel"
    PREVIEW = "preview"
    STALE = "stale"
    ROLLBACK = "rollback"
    ROLLED_BACK = "rolled_back"


class TargetState(enum.StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    ROLLED_BACK = "rolled_back"


class TargetEvent(enum.StrEnum):
    SUCCEED = "succeed"
    FAIL = "fail"
    ROLL_BACK = "roll_back"


class InvalidTransition(Exception):
    def __init__(self, state: enum.Enum, event: enum.Enum) -> None:
        super().__init__(f"invalid transition: {event.value!r} in state {state.value!r}")
        self.state = state
        self.event = event


def _run_table() -> dict[tuple[RunState, RunEvent], RunState]:
    t: dict[tuple[RunState, RunEvent], RunState] = {
        (RunState.QUEUED, RunEvent.START): RunState.RUNNING,
        (RunState.RUNNING, RunEvent.BACKOFF): RunState.RETRYING,
        (RunState.RETRYING, RunEvent.RESUME): RunState.RUNNING,
        (RunState.RUNNING, RunEvent.RESUME): RunState.RUNNING,
        (RunState.QUEUED, RunEvent.RESUME): RunState.RUNNING,
    }
    for live in (RunState.QUEUED, RunState.RUNNING, RunState.RETRYING):
        t[(live, RunEvent.SKIP)] = RunState.SKIPPED
        t[(live, RunEvent.CANCEL)] = RunState.CANCELLED
        t[(live, RunEvent.PREVIEW)] = RunState.PREVIEWED  # queued: a job without a check
        t[(live, RunEvent.STALE)] = RunState.STALE  # queued: definition or age differ
    for live in (RunState.RUNNING, RunState.RETRYING):
        t[(live, RunEvent.SUCCEED)] = RunState.SUCCEEDED
        t[(live, RunEvent.PARTIAL)] = RunState.PARTIAL
        t[(live, RunEvent.FAIL)] = RunState.FAILED
    # A run can fail before it ever started (e.g. its job vanished while it waited).
    t[(RunState.QUEUED, RunEvent.FAIL)] = RunState.FAILED
    for end in ROLLBACK_FROM:
        t[(end, RunEvent.ROLLBACK)] = RunState.ROLLING_BACK
    rb = RunState.ROLLING_BACK
    t[(rb, RunEvent.RESUME)] = rb  # a crash interrupted it: it goes on under the same id
    t[(rb, RunEvent.ROLLED_BACK)] = RunState.ROLLED_BACK
    t[(rb, RunEvent.FAIL)] = RunState.FAILED  # some targets could not be undone
    t[(rb, RunEvent.CANCEL)] = RunState.FAILED  # what was not undone yet is still applied
    return t


RUN_TRANSITIONS: dict[tuple[RunState, RunEvent], RunState] = _run_table()

TARGET_TRANSITIONS: dict[tuple[TargetState, TargetEvent], TargetState] = {
    (TargetState.PENDING, TargetEvent.SUCCEED): TargetState.SUCCEEDED,
    (TargetState.PENDING, TargetEvent.FAIL): TargetState.FAILED,
    (TargetState.SUCCEEDED, TargetEvent.ROLL_BACK): TargetState.ROLLED_BACK,
}


def next_run_state(state: RunState, event: RunEvent) -> RunState:
    try:
        return RUN_TRANSITIONS[(state, event)]
    except KeyError:
        raise InvalidTransition(state, event) from None


def next_target_state(state: TargetState, event: TargetEvent) -> TargetState:
    try:
        return TARGET_TRANSITIONS[(state, event)]
    except KeyError:
        raise InvalidTransition(state, event) from None


def aggregate(succeeded: int, failed: int, total: int) -> RunEvent:
    """The event that ends a run whose targets have all finished."""
    if failed == 0:
        return RunEvent.SUCCEED
    if succeeded == 0:
        return RunEvent.FAIL
    return RunEvent.PARTIAL
