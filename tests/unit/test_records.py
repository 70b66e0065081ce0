"""Records: time-ordered ids, the generated constructors/copies, and the JSON text of a run."""

from __future__ import annotations

import dataclasses
import json
import random
from typing import Any

import pytest

from automationd.admin.protocol import RawJSON, encode_ok
from automationd.config.model import JobSpec, PythonAction
from automationd.core.ids import IdGenerator, id_floor
from automationd.core.runstate import RunState
from automationd.engine.jobs import JobRuntime
from automationd.engine.live import LiveRun
from automationd.errors import ErrorKind
from automationd.records import Event, Run, RunError, Target, Trigger

RUNS = [
    Run(
        id="0190a1b2c3d4e5f60718293a4b5c6d7e",
        job="noop",
        state=RunState.QUEUED,
        trigger=Trigger.MANUAL,
        created_at=1_790_000_000.123456,
    ),
    Run(
        id="0190a1b2c3d4e5f60718293a4b5c6d7f",
        job='ünï "cödé"\n',
        state=RunState.FAILED,
        trigger=Trigger.EVENT,
        created_at=1.5,
        scheduled_for=0.001,
        started_at=2.25,
        finished_at=3.0,
        attempts=3,
        idempotency_key="k\t1",
        payload={"a": [1, 2.5, None, "é"]},
        targets_total=5,
        targets_succeeded=2,
        targets_failed=1,
        error=RunError(kind=ErrorKind.FATAL, message="boom\u2028"),
        result=[1, {"x": True}],
        depth=2,
        origin="0190",
        reason="why",
    ),
    Run(
        id="odd id/with slash",
        job="j",
        state=RunState.SUCCEEDED,
        trigger=Trigger.SCHEDULE,
        created_at=0.0,
        result="\udc80 lone surrogate",
    ),
    Run(
        id="0190a1b2c3d4e5f60718293a4b5c6d80",
        job="fan",
        state=RunState.QUEUED,
        trigger=Trigger.EVENT,
        created_at=12.0,
        payload={"k": "v"},
        targets_total=3,
        depth=4,
    ),
    Run(
        id="0190a1b2c3d4e5f60718293a4b5c6d81",
        job="late",
        state=RunState.SKIPPED,
        trigger=Trigger.SCHEDULE,
        created_at=12.0,
        finished_at=12.0,
        reason="overlap",
    ),
]


@pytest.mark.parametrize("run", RUNS, ids=["queued", "everything", "odd", "fanout", "skipped"])
def test_run_json_text_is_the_same_line_as_its_dict(run: Run) -> None:
    """The trigger answer rendered from text is byte for byte the answer rendered from a dict."""
    for rid in (7, "r-1", None):
        assert encode_ok(rid, RawJSON(run.to_json_text())) == encode_ok(rid, run.to_json())


def test_ids_increase_strictly_within_a_millisecond_and_when_the_clock_steps_back() -> None:
    """Ids sort by creation: same millisecond, a stalled or stepped-back clock included."""
    g = IdGenerator(random.Random(3))
    ids = [g.new(100.0) for _ in range(50)] + [g.new(99.0), g.new(100.0005), g.new(100.002)]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    assert id_floor(100.0) <= ids[0] < id_floor(100.001) < ids[-1]


def test_id_counter_carries_into_the_random_part() -> None:
    """2**31 ids in one millisecond would overflow the counter: the next ids still increase."""
    g = IdGenerator(random.Random(4))
    first = g.new(5.0)
    g._low = (1 << 32) - 2  # as if billions of ids had been made in this millisecond
    more = [g.new(5.0) for _ in range(4)]
    assert [first, *more] == sorted([first, *more]) and len(set(more)) == 4
    assert all(m.startswith(first[:12]) for m in more)  # still that millisecond


def test_fast_records_build_copy_and_stay_frozen() -> None:
    """The generated __init__ behaves like the dataclass's own: defaults, ``replace`` copies,
    equality, assignment refused, and a missing or misspelt field raises TypeError."""
    t = Target(run_id="r", idx=0, target=None)
    assert (t.attempts, t.error) == (0, None)
    run = RUNS[0]
    moved = dataclasses.replace(run, state=RunState.RUNNING, attempts=1)
    assert (moved.state, moved.attempts, moved.id) == (RunState.RUNNING, 1, run.id)
    assert moved != run and dataclasses.replace(moved, state=RunState.QUEUED, attempts=0) == run
    assert run.state is RunState.QUEUED  # the original is untouched
    assert not hasattr(run, "evolve")  # one way to copy: dataclasses.replace
    with pytest.raises(dataclasses.FrozenInstanceError):
        run.attempts = 2  # type: ignore[misc]
    with pytest.raises(TypeError):
        Event(id="e", name="n", created_at=1.0)  # type: ignore[call-arg]  # payload missing
    with pytest.raises(TypeError, match="stat"):
        dataclasses.replace(run, stat=RunState.RUNNING)  # misspelt: not silently ignored
    with pytest.raises(TypeError, match="stat"):
        Run(  # type: ignore[call-arg]
            id="x", job="j", stat=RunState.QUEUED, trigger=Trigger.MANUAL, created_at=0.0
        )
    assert json.loads(RUNS[0].to_json_text())["targets"]["pending"] == 0


@pytest.mark.parametrize(
    "changed",
    [{}, {"plan": {"hash": "h1", "targets": ["a"]}}, {"targets_rolled_back": 1}, {"reason": "r"}],
    ids=["fresh", "plan", "rolled_back", "reason"],
)
def test_a_live_runs_json_text_is_its_snapshots(changed: dict[str, Any]) -> None:
    """A live run's JSON text (fast path for a run nothing has happened to) is the same line
    as its snapshot record's, also when it has a plan or rolled-back targets (the fast path
    must leave them to the slow one, as the record's does)."""
    spec = JobSpec(name="j", action=PythonAction(callable="t:j", fn=lambda ctx: None))
    live = LiveRun(
        id="0190a1b2c3d4e5f60718293a4b5c6d7e",
        job=JobRuntime(spec=spec, schedule=None),
        trigger=Trigger.APPLY,
        created_at=1_790_000_000.5,
        **changed,
    )
    assert live.to_json_text() == live.snapshot().to_json_text()
    assert json.loads(live.to_json_text()) == live.snapshot().to_json()
