"""Run and target state machines, written as data (h11 style).

Rules:
- A run is born ``queued`` (durable before any work), goes ``running`` when its first phase
  starts, may bounce ``running`` ⇄ ``retrying`` while a target waits out a backoff, and ends in
  exactly one terminal state. ``skipped`` and ``cancelled`` may be entered from any live state.
- A run resumed after a crash re-enters through ``RESUME`` (any live state → running).
- A target is ``pending`` until it ends ``succeeded`` or ``failed``; a retried run gives its
  failed targets a fresh ``pending`` life under a new run id, so no target event leaves a
  terminal state.
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

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset(
    {RunState.SUCCEEDED, RunState.PARTIAL, RunState.FAILED, RunState.SKIPPED, RunState.CANCELLED}
)
LIVE = frozenset({RunState.QUEUED, RunState.RUNNING, RunState.RETRYING})


class RunEvent(enum.StrEnum):
    START = "start"
    BACKOFF = "backoff"
    RESUME = "resume"
    SUCCEED = "succeed"
    PARTIAL = "partial"
    FAIL = "fail"
    SKIP = "skip"
    CANCEL = "cancel"


class TargetState(enum.StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class TargetEvent(enum.StrEnum):
    SUCCEED = "succeed"
    FAIL = "fail"


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
    for live in LIVE:
        t[(live, RunEvent.SKIP)] = RunState.SKIPPED
        t[(live, RunEvent.CANCEL)] = RunState.CANCELLED
    for live in (RunState.RUNNING, RunState.RETRYING):
        t[(live, RunEvent.SUCCEED)] = RunState.SUCCEEDED
        t[(live, RunEvent.PARTIAL)] = RunState.PARTIAL
        t[(live, RunEvent.FAIL)] = RunState.FAILED
    # A run can fail before it ever started (e.g. its job vanished while it waited).
    t[(RunState.QUEUED, RunEvent.FAIL)] = RunState.FAILED
    return t


RUN_TRANSITIONS: dict[tuple[RunState, RunEvent], RunState] = _run_table()

TARGET_TRANSITIONS: dict[tuple[TargetState, TargetEvent], TargetState] = {
    (TargetState.PENDING, TargetEvent.SUCCEED): TargetState.SUCCEEDED,
    (TargetState.PENDING, TargetEvent.FAIL): TargetState.FAILED,
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
