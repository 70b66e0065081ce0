"""Store contract: attempts from their durable start to their end, the process group of an
exec attempt, interrupted attempts (what recovery closes) and captured output."""

from __future__ import annotations

import asyncio

from automationd.records import Attempt, Phase
from automationd.store.api import OpenAttempt, Store
from automationd.store.rows import w_attempt, w_attempt_interrupted, w_attempt_pgid

T0 = 1_780_000_000.0


def _start(run_id: str, n: int, phase: Phase = Phase.PERFORM, idx: int = -1) -> Attempt:
    target = None if idx < 0 else f"t{idx}"
    return Attempt(
        run_id=run_id, n=n, phase=phase, target=target, target_idx=idx, started_at=T0 + n
    )


def _end(a: Attempt, outcome: str, error: str | None = None) -> Attempt:
    return Attempt(
        run_id=a.run_id,
        n=a.n,
        phase=a.phase,
        target=a.target,
        target_idx=a.target_idx,
        started_at=a.started_at,
        finished_at=a.started_at + 0.5,
        outcome=outcome,
        error=error,
    )


async def test_an_attempt_is_open_from_its_start_until_its_end(store: Store) -> None:
    """A started attempt has no outcome and is listed as open (with its phase, target and
    process group); once its end is written it is closed, with its outcome and error."""
    first, second = _start("r", 1, Phase.CHECK), _start("r", 2, idx=0)
    async with asyncio.timeout(5):
        await store.commit([w_attempt(first), w_attempt(second)])
        assert await store.attempts("r") == [first, second]
        assert await store.open_attempts("r") == [
            OpenAttempt(1, "check", -1, None),
            OpenAttempt(2, "perform", 0, None),
        ]
        await store.commit([w_attempt_pgid("r", 2, 4242)])
        assert (await store.open_attempts("r"))[1] == OpenAttempt(2, "perform", 0, 4242)
        ended = _end(first, "ok")
        await store.commit([w_attempt(ended)])
        assert await store.open_attempts("r") == [OpenAttempt(2, "perform", 0, 4242)]
        assert await store.attempts("r") == [ended, second]
        assert await store.attempts("other") == [] and await store.open_attempts("other") == []


async def test_an_attempts_end_keeps_its_process_group(store: Store) -> None:
    """Writing an attempt's end does not erase the pgid its start recorded (another open
    attempt shows whether pgids are kept per attempt)."""
    a, b = _start("r", 1), _start("r", 2)
    async with asyncio.timeout(5):
        await store.commit([w_attempt(a), w_attempt(b), w_attempt_pgid("r", 1, 11)])
        await store.commit([w_attempt(a)])  # rewritten without a pgid: it stays
        assert await store.open_attempts("r") == [
            OpenAttempt(1, "perform", -1, 11),
            OpenAttempt(2, "perform", -1, None),
        ]


async def test_interrupted_closes_only_an_open_attempt(store: Store) -> None:
    """Recovery's ``interrupted`` close applies to an attempt without an outcome, and leaves
    one that ended alone."""
    open_one, done = _start("r", 1), _end(_start("r", 2), "ok")
    async with asyncio.timeout(5):
        await store.commit([w_attempt(open_one), w_attempt(done)])
        await store.commit(
            [
                w_attempt_interrupted("r", 1, T0 + 9, "the daemon stopped"),
                w_attempt_interrupted("r", 2, T0 + 9, "the daemon stopped"),
            ]
        )
        got = await store.attempts("r")
        assert [(a.n, a.outcome, a.error, a.finished_at) for a in got] == [
            (1, "interrupted", "the daemon stopped", T0 + 9),
            (2, "ok", None, done.finished_at),
        ]
        assert await store.open_attempts("r") == []


async def test_captured_output_is_listed_by_attempt_and_stream(store: Store) -> None:
    """``logs`` lists each attempt's non-empty stdout then stderr, in attempt order, with
    its phase and target."""
    one, two, three = _start("r", 1), _start("r", 2, idx=3), _start("r", 3)
    async with asyncio.timeout(5):
        await store.commit(
            [
                w_attempt(_end(two, "ok"), stdout="out 2\n", stderr="err 2\n"),
                w_attempt(_end(one, "retryable", "boom"), stderr="trace\n"),
                w_attempt(_end(three, "ok"), stdout="", stderr=None),
            ]
        )
        assert await store.logs("r") == [
            {
                "attempt": 1,
                "phase": "perform",
                "target": None,
                "stream": "stderr",
                "text": "trace\n",
            },
            {
                "attempt": 2,
                "phase": "perform",
                "target": "t3",
                "stream": "stdout",
                "text": "out 2\n",
            },
            {
                "attempt": 2,
                "phase": "perform",
                "target": "t3",
                "stream": "stderr",
                "text": "err 2\n",
            },
        ]
        assert await store.logs("other") == []
