"""Circuit breaker: the transition table, consecutive failures, the single half-open probe."""

from __future__ import annotations

import itertools

import pytest

from automationd.core.breaker import (
    GAUGE,
    TRANSITIONS,
    Breaker,
    BreakerEvent,
    BreakerState,
    InvalidTransition,
    next_breaker_state,
)

C, H, OP = BreakerState.CLOSED, BreakerState.HALF_OPEN, BreakerState.OPEN


def test_states_and_gauge_match_the_spec() -> None:
    """SPEC §3/§6 name the states closed/half_open/open and export them as 0/1/2."""
    assert [s.value for s in BreakerState] == ["closed", "half_open", "open"]
    assert {s.value: v for s, v in GAUGE.items()} == {"closed": 0, "half_open": 1, "open": 2}


@pytest.mark.parametrize(("state", "event"), list(itertools.product(BreakerState, BreakerEvent)))
def test_transition_table_is_total_or_raises(state: BreakerState, event: BreakerEvent) -> None:
    """Every (state, event) pair either has a table entry or raises InvalidTransition."""
    if (state, event) in TRANSITIONS:
        assert next_breaker_state(state, event) is TRANSITIONS[(state, event)]
    else:
        with pytest.raises(InvalidTransition, match=event.value):
            next_breaker_state(state, event)


def test_every_state_is_reachable_and_left() -> None:
    """The table reaches each state and each state has a way out (no dead ends)."""
    targets = set(TRANSITIONS.values())
    sources = {s for (s, _e), t in TRANSITIONS.items() if t is not s}
    assert targets == set(BreakerState)
    assert sources == set(BreakerState)


# Scenario steps: (op, now, expected state after, expected result of allow or None)
Step = tuple[str, float, BreakerState, bool | None]


@pytest.mark.parametrize(
    ("failures", "reset", "steps"),
    [
        pytest.param(
            3,
            10.0,
            [
                ("f", 0, C, None),
                ("f", 1, C, None),
                ("a", 1, C, True),
                ("f", 2, OP, None),
                ("a", 3, OP, False),
                ("a", 11.9, OP, False),
            ],
            id="three-consecutive-failures-open",
        ),
        pytest.param(
            3,
            10.0,
            [
                ("f", 0, C, None),
                ("f", 1, C, None),
                ("s", 2, C, None),
                ("f", 3, C, None),
                ("f", 4, C, None),
                ("f", 5, OP, None),
            ],
            id="a-success-restarts-the-count",
        ),
        pytest.param(
            1,
            10.0,
            [
                ("f", 0, OP, None),
                ("a", 10, H, True),
                ("a", 10, H, False),
                ("a", 15, H, False),
                ("s", 16, C, None),
                ("a", 16, C, True),
                ("a", 16, C, True),
            ],
            id="one-probe-then-closed",
        ),
        pytest.param(
            1,
            10.0,
            [
                ("f", 0, OP, None),
                ("a", 10, H, True),
                ("f", 12, OP, None),
                ("a", 21, OP, False),
                ("a", 22, H, True),
            ],
            id="failed-probe-reopens-and-restarts-reset",
        ),
        pytest.param(
            2,
            5.0,
            [
                ("f", 0, C, None),
                ("f", 0, OP, None),
                ("s", 1, OP, None),
                ("f", 2, OP, None),
                ("a", 5, H, True),
            ],
            id="late-answers-do-not-move-an-open-breaker",
        ),
        pytest.param(
            1,
            10.0,
            [("f", 0, OP, None), ("a", 10, H, True), ("a", 19.9, H, False), ("a", 20, H, True)],
            id="a-lost-probe-is-replaced-after-reset",
        ),
    ],
)
def test_breaker_scenarios(failures: int, reset: float, steps: list[Step]) -> None:
    """Each scenario drives allow/record_* with plain floats and checks state and answers."""
    breaker = Breaker(failures, reset)
    for op, now, state, allowed in steps:
        if op == "f":
            breaker.record_failure(now)
        elif op == "s":
            breaker.record_success(now)
        else:
            assert breaker.allow(now) is allowed, (op, now)
        assert breaker.state is state, (op, now)


def test_abandoned_probe_lets_the_next_caller_probe() -> None:
    """A probe whose caller vanished is given back at once, not after a whole reset."""
    breaker = Breaker(1, 30.0)
    breaker.record_failure(0.0)
    assert breaker.allow(30.0)
    assert not breaker.allow(31.0)
    breaker.abandon_probe()
    assert not breaker.probe_out
    assert breaker.allow(31.0)


def test_opened_at_is_the_wall_time_given_and_cleared_on_close() -> None:
    """opened_at shows the caller's wall time of the opening; closing clears it and the count."""
    breaker = Breaker(2, 5.0)
    breaker.record_failure(100.0, wall=1_700_000_000.0)
    assert (breaker.state, breaker.opened_at) == (C, None)
    breaker.record_failure(101.0, wall=1_700_000_001.0)
    opened = (breaker.state, breaker.failures, breaker.opened_at)
    assert opened == (OP, 2, 1_700_000_001.0)
    assert breaker.gauge_value == 2
    assert breaker.reopens_in(102.0) == pytest.approx(4.0)
    assert breaker.tick(106.0) is H and breaker.gauge_value == 1
    breaker.record_success(106.5)
    assert (breaker.state, breaker.failures, breaker.opened_at) == (C, 0, None)
    assert breaker.reopens_in(107.0) == 0.0


def test_retune_keeps_live_state() -> None:
    """A reload changes the limits of an open breaker without closing it."""
    breaker = Breaker(1, 60.0)
    breaker.record_failure(0.0)
    breaker.retune(5, 2.0)
    assert breaker.state is OP
    assert breaker.allow(2.0)
    breaker.record_success(2.5)
    for t in range(4):
        breaker.record_failure(3.0 + t)
    assert breaker.state is C and breaker.failures == 4


@pytest.mark.parametrize("bad", [0, -1])
def test_failures_must_be_positive(bad: int) -> None:
    """A breaker that opens on zero failures is a config bug."""
    with pytest.raises(ValueError, match="failures"):
        Breaker(bad, 1.0)
    with pytest.raises(ValueError, match="failures"):
        Breaker(1, 1.0).retune(bad, 1.0)
