"""Store contract: the dead-letter queue, stored events (by key, by time window and name,
the runs an event started) and the jobs table."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace

import pytest

from automationd.core.ids import IdGenerator
from automationd.core.runstate import RunState
from automationd.errors import ErrorKind, StoreError
from automationd.records import DlqEntry, Event, Run, RunError, Trigger
from automationd.store.ahead_rows import w_jobs_counted
from automationd.store.api import Store
from automationd.store.jobs import JobRow, w_job, w_job_delete
from automationd.store.rows import w_dlq, w_dlq_delete, w_event, w_run

T0 = 1_780_000_000.0


def _letter(ids: IdGenerator, at: float, job: str, idx: int = -1) -> DlqEntry:
    return DlqEntry(
        id=ids.new(at),
        run_id=f"run-{at}",
        job=job,
        target={"sku": idx} if idx >= 0 else None,
        target_idx=idx,
        error=RunError(kind=ErrorKind.FATAL, message=f"failed at {at}"),
        failed_at=at,
    )


def _event(ids: IdGenerator, at: float, name: str, **kw: object) -> Event:
    return Event(id=ids.new(at), name=name, payload=kw.pop("payload", None), created_at=at, **kw)  # type: ignore[arg-type]


async def test_dead_letters_are_listed_selected_counted_and_deleted(
    store: Store, ids: IdGenerator
) -> None:
    """``dlq`` lists newest first (all, or one job's), ``dlq_select`` picks one by id, a
    job's or all of them oldest first, ``dlq_count`` counts, and a delete removes."""
    a1, b2, a3 = _letter(ids, T0 + 1, "a"), _letter(ids, T0 + 2, "b", 4), _letter(ids, T0 + 3, "a")
    async with asyncio.timeout(5):
        assert await store.dlq_count() == 0 and await store.dlq(job=None, limit=10) == []
        await store.commit([w_dlq(e) for e in (a1, b2, a3)])
        assert await store.dlq(job=None, limit=10) == [a3, b2, a1]
        assert await store.dlq(job=None, limit=2) == [a3, b2]
        assert await store.dlq(job="a", limit=10) == [a3, a1]
        assert await store.dlq_select(id=b2.id, job=None, all=False) == [b2]
        assert await store.dlq_select(id="nope", job=None, all=False) == []
        assert await store.dlq_select(id=None, job="a", all=False) == [a1, a3]
        assert await store.dlq_select(id=None, job=None, all=True) == [a1, b2, a3]
        assert await store.dlq_select(id=None, job=None, all=False) == []
        assert await store.dlq_count() == 3
        await store.commit(w_dlq_delete([a1.id, b2.id]))
        assert await store.dlq_select(id=None, job=None, all=True) == [a3]
        assert await store.dlq_count() == 1


async def test_a_dead_letter_written_twice_is_one_entry(store: Store, ids: IdGenerator) -> None:
    """Writing the same entry again (a retried batch) leaves one entry."""
    entry = _letter(ids, T0, "a")
    async with asyncio.timeout(5):
        await store.commit([w_dlq(entry)])
        await store.commit([w_dlq(entry)])
        assert await store.dlq_count() == 1


async def test_events_by_key_window_and_order(store: Store, ids: IdGenerator) -> None:
    """An event reads back by its idempotency key; ``events`` lists a created-at window
    (whole milliseconds, both ends included) oldest or newest first, up to ``limit``."""
    e1 = _event(ids, T0 + 1, "order.created", payload={"n": 1}, idempotency_key="k1", depth=2)
    e2 = _event(ids, T0 + 2, "order.paid")
    e3 = _event(ids, T0 + 3.0004, "run.succeeded", payload={"run_id": "r"})
    async with asyncio.timeout(5):
        await store.commit([w_event(e) for e in (e3, e1, e2)])
        assert await store.event_by_key("k1") == e1
        assert await store.event_by_key("k2") is None

        async def window(**kw: object) -> list[Event]:
            kw.setdefault("since", None)
            kw.setdefault("until", None)
            kw.setdefault("limit", None)
            kw.setdefault("newest_first", False)
            return await store.events(**kw)  # type: ignore[arg-type]

        assert await window() == [e1, e2, e3]
        assert await window(newest_first=True) == [e3, e2, e1]
        assert await window(newest_first=True, limit=2) == [e3, e2]
        assert await window(limit=1) == [e1]
        assert await window(since=T0 + 2) == [e2, e3]
        assert await window(until=T0 + 2) == [e1, e2]
        assert await window(since=T0 + 3, until=T0 + 3) == [e3]  # its millisecond
        assert await window(since=T0 + 3.001) == []


@pytest.mark.parametrize(
    ("glob", "expected"),
    [
        ("order.*", ["order.created", "order.paid"]),
        ("*", ["order.created", "order.paid", "run.succeeded", "run.failed"]),
        ("run.?ailed", ["run.failed"]),
        ("[or]*d", ["order.created", "order.paid", "run.succeeded", "run.failed"]),
        ("[!o]*", ["run.succeeded", "run.failed"]),
        ("order.created", ["order.created"]),
        ("nothing", []),
    ],
)
async def test_events_filter_by_name_glob(
    store: Store, ids: IdGenerator, glob: str, expected: list[str]
) -> None:
    """A name filter is a glob with ``*``, ``?`` and ``[...]`` classes (``[!...]`` negates),
    matched on the whole name, combined with the window and the limit."""
    names = ["order.created", "order.paid", "run.succeeded", "run.failed"]
    async with asyncio.timeout(5):
        await store.commit([w_event(_event(ids, T0 + i, n)) for i, n in enumerate(names)])
        got = await store.events(since=None, until=None, limit=None, newest_first=False, name=glob)
        assert [e.name for e in got] == expected
        newest = await store.events(since=T0, until=None, limit=1, newest_first=True, name=glob)
        assert [e.name for e in newest] == expected[-1:]


async def test_an_event_written_twice_keeps_the_first(store: Store, ids: IdGenerator) -> None:
    """Events are inserted, never updated: writing one id again changes nothing; a second
    event with a known idempotency key is refused."""
    e = _event(ids, T0, "x", payload={"v": 1}, idempotency_key="k")
    async with asyncio.timeout(5):
        await store.commit([w_event(e)])
        await store.commit([w_event(Event(id=e.id, name="y", payload=None, created_at=T0))])
        assert await store.event_by_key("k") == e
        with pytest.raises(StoreError):
            await store.commit([w_event(_event(ids, T0 + 1, "z", idempotency_key="k"))])
        assert len(await store.events(since=None, until=None, limit=None, newest_first=False)) == 1


async def test_event_runs_are_the_runs_it_started(store: Store, ids: IdGenerator) -> None:
    """``event_runs`` lists the ids of runs the event started (trigger ``event``, origin its
    id), oldest first; replays and runs of other events are not among them."""
    event = _event(ids, T0, "order.created")
    other = _event(ids, T0 + 0.5, "order.created")

    def run(origin: str, trigger: Trigger) -> Run:
        return Run(
            id=ids.new(T0 + 1),
            job="j",
            state=RunState.QUEUED,
            trigger=trigger,
            created_at=T0 + 1,
            origin=origin,
        )

    started = [run(event.id, Trigger.EVENT), run(event.id, Trigger.EVENT)]
    others = [run(other.id, Trigger.EVENT), run(event.id, Trigger.REPLAY)]
    async with asyncio.timeout(5):
        await store.commit([w_event(event), w_event(other), *(w_run(r) for r in started + others)])
        assert await store.event_runs(event) == [r.id for r in started]
        assert await store.event_runs(other) == [others[0].id]


async def test_job_rows_round_trip_and_delete(store: Store) -> None:
    """A job's durable row reads back as written (an API job's spec as its JSON text); a
    later write replaces it and a delete removes it."""
    api = JobRow(
        name="api-job",
        source="api",
        spec={"name": "api-job", "action": {"type": "exec", "command": ["true"]}},
        paused=True,
        last_scheduled=T0,
        run_count=3,
        last_run="r3",
        last_success=T0 - 5,
    )
    cfg = JobRow(name="cfg-job", source="config", completed=True, run_count=1)
    async with asyncio.timeout(5):
        assert len(await store.job_rows()) == 0
        await store.commit([w_job(api), w_job(cfg)])
        rows = await store.job_rows()
        assert len(rows) == 2 and rows.get("nope") is None
        got = rows.get("api-job")
        assert got is not None and got.spec_json is not None
        assert json.loads(got.spec_json) == api.spec
        assert replace(got, spec=api.spec, spec_json=None) == api
        assert rows.get("cfg-job") == cfg
        await store.commit([w_job(JobRow(name="cfg-job", source="config", run_count=2))])
        await store.commit([w_job_delete("api-job")])
        rows = await store.job_rows()
        assert len(rows) == 1 and rows.get("api-job") is None
        cfg_now = rows.get("cfg-job")
        assert cfg_now is not None and (cfg_now.run_count, cfg_now.completed) == (2, False)


async def test_jobs_counted_adds_one_run_each(store: Store) -> None:
    """``w_jobs_counted`` (a herd unit's starts, engine/herd.py) adds one run to each named
    job and makes it its last run, keeping the rest of the row; an unnamed job is untouched."""
    a = JobRow(name="a", source="config", run_count=4, last_run="r4", last_success=T0)
    b = JobRow(name="b", source="config", run_count=1, last_run="r1")
    async with asyncio.timeout(5):
        await store.commit([w_job(a), w_job(b)])
        await store.commit([w_jobs_counted([("a", "r5")])])
        rows = await store.job_rows()
        assert rows.get("a") == replace(a, run_count=5, last_run="r5")
        assert rows.get("b") == b
