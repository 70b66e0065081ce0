"""The run and target state machines, walked as tables (core/runstate.py, SPEC §4 and §7.2)."""

from __future__ import annotations

import ast
import itertools
from pathlib import Path

import pytest

from automationd.core.runstate import (
    LIVE,
    RUN_TRANSITIONS,
    TARGET_TRANSITIONS,
    TERMINAL,
    InvalidTransition,
    RunEvent,
    RunState,
    TargetEvent,
    TargetState,
    aggregate,
    next_run_state,
    next_target_state,
)
from automationd.errors import ErrorKind
from automationd.records import Trigger

Q, R, T = RunState.QUEUED, RunState.RUNNING, RunState.RETRYING
RB = RunState.ROLLING_BACK

# Every legal transition, written out once: the table in core/ must be exactly this.
EXPECTED_RUN: dict[tuple[RunState, RunEvent], RunState] = {
    (Q, RunEvent.START): R,
    (R, RunEvent.BACKOFF): T,
    (T, RunEvent.RESUME): R,
    (R, RunEvent.RESUME): R,
    (Q, RunEvent.RESUME): R,
    **{(s, RunEvent.SKIP): RunState.SKIPPED for s in (Q, R, T)},
    **{(s, RunEvent.CANCEL): RunState.CANCELLED for s in (Q, R, T)},
    **{(s, RunEvent.SUCCEED): RunState.SUCCEEDED for s in (R, T)},
    **{(s, RunEvent.PARTIAL): RunState.PARTIAL for s in (R, T)},
    **{(s, RunEvent.FAIL): RunState.FAILED for s in (Q, R, T)},
    # previews and apply
    **{(s, RunEvent.PREVIEW): RunState.PREVIEWED for s in (Q, R, T)},
    **{(s, RunEvent.STALE): RunState.STALE for s in (Q, R, T)},
    # rollback continues the same run
    (RunState.PARTIAL, RunEvent.ROLLBACK): RB,
    (RunState.FAILED, RunEvent.ROLLBACK): RB,
    (RB, RunEvent.RESUME): RB,
    (RB, RunEvent.ROLLED_BACK): RunState.ROLLED_BACK,
    (RB, RunEvent.FAIL): RunState.FAILED,
    (RB, RunEvent.CANCEL): RunState.FAILED,
}

EXPECTED_TARGET: dict[tuple[TargetState, TargetEvent], TargetState] = {
    (TargetState.PENDING, TargetEvent.SUCCEED): TargetState.SUCCEEDED,
    (TargetState.PENDING, TargetEvent.FAIL): TargetState.FAILED,
    (TargetState.SUCCEEDED, TargetEvent.ROLL_BACK): TargetState.ROLLED_BACK,
}

SPEC_RUN_STATES = {
    "queued", "running", "retrying", "succeeded", "partial", "failed", "skipped", "cancelled",
    "previewed", "stale", "rolled_back",
}  # fmt: skip
SPEC_TARGET_STATES = {"pending", "succeeded", "failed", "rolled_back"}
SPEC_TRIGGERS = {
    "schedule", "manual", "event", "retry", "replay", "misfire", "preview", "apply", "backfill"
}  # fmt: skip
SPEC_KINDS = {
    "retryable", "fatal", "timeout", "rate_limited", "breaker_open", "interrupted", "stale"
}  # fmt: skip


def test_run_table_is_exactly_the_expected_one() -> None:
    """No transition is missing from the table and none is there by accident."""
    assert RUN_TRANSITIONS == EXPECTED_RUN


@pytest.mark.parametrize(
    ("state", "event"), list(itertools.product(RunState, RunEvent)), ids=lambda x: x.value
)
def test_every_run_state_and_event(state: RunState, event: RunEvent) -> None:
    """Each (state, event) pair either moves where the table says or raises naming both."""
    if (state, event) in EXPECTED_RUN:
        assert next_run_state(state, event) is EXPECTED_RUN[(state, event)]
    else:
        with pytest.raises(InvalidTransition) as ei:
            next_run_state(state, event)
        assert state.value in str(ei.value) and event.value in str(ei.value)


@pytest.mark.parametrize(
    ("state", "event"), list(itertools.product(TargetState, TargetEvent)), ids=lambda x: x.value
)
def test_every_target_state_and_event(state: TargetState, event: TargetEvent) -> None:
    """Targets: pending ends succeeded or failed; only a succeeded one can be rolled back."""
    if (state, event) in EXPECTED_TARGET:
        assert next_target_state(state, event) is EXPECTED_TARGET[(state, event)]
    else:
        with pytest.raises(InvalidTransition):
            next_target_state(state, event)
    assert TARGET_TRANSITIONS == EXPECTED_TARGET


def test_states_split_into_live_and_terminal() -> None:
    """Every run state is live or terminal, never both; only partial and failed leave an end
    (to roll back), and every live state can end."""
    assert set(RunState) == LIVE | TERMINAL and not LIVE & TERMINAL
    leaving_ends = {s for (s, _e) in RUN_TRANSITIONS if s in TERMINAL}
    assert leaving_ends == {RunState.PARTIAL, RunState.FAILED}
    for live in LIVE:
        assert any(s is live and new in TERMINAL for (s, _e), new in RUN_TRANSITIONS.items())


def test_names_match_the_spec() -> None:
    """The SPEC's run states, target states, triggers and error kinds all exist as spelled
    (rolling_back is ours: the live state a crash resumes a rollback from)."""
    assert {s.value for s in RunState} == SPEC_RUN_STATES | {"rolling_back"}
    assert {s.value for s in TargetState} == SPEC_TARGET_STATES
    assert {t.value for t in Trigger} == SPEC_TRIGGERS
    assert {k.value for k in ErrorKind} >= SPEC_KINDS
    assert not ErrorKind.STALE.retryable


@pytest.mark.parametrize(
    ("succeeded", "failed", "event"),
    [(3, 0, RunEvent.SUCCEED), (0, 3, RunEvent.FAIL), (2, 1, RunEvent.PARTIAL)],
)
def test_aggregate(succeeded: int, failed: int, event: RunEvent) -> None:
    """A run's end follows from its targets: all ok, none ok, or some of each."""
    assert aggregate(succeeded, failed, succeeded + failed) is event


def _state_literals(source: str) -> list[int]:
    """Lines where ``source`` sets a ``state`` to a ``RunState``/``TargetState`` member
    directly (``x.state = RunState.FAILED``, ``Run(state=RunState.SKIPPED, ...)``)."""
    found: list[int] = []

    def member(node: ast.AST) -> bool:
        return (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in {"RunState", "TargetState"}
        )

    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Assign) and member(node.value):
            if any(isinstance(t, ast.Attribute) and t.attr == "state" for t in node.targets):
                found.append(node.lineno)
        elif isinstance(node, ast.keyword) and node.arg == "state" and member(node.value):
            found.append(node.value.lineno)
    return found


def test_the_engine_changes_states_only_through_the_tables() -> None:
    """No engine module sets a run's or a target's state to a member by hand: every change
    is a transition of ``next_run_state``/``next_target_state``, so an illegal one raises."""
    engine = Path(__file__).resolve().parents[2] / "automationd" / "engine"
    by_hand = {
        path.name: lines
        for path in sorted(engine.glob("*.py"))
        if (lines := _state_literals(path.read_text()))
    }
    assert by_hand == {}
