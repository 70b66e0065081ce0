"""web/feed.py: the live feed watches the store only while someone looks, coalesces what
durable batches wrote, never lets a slow client hold anything up, and resumes by id."""

from __future__ import annotations

import json
from typing import Any

from automationd.core.runstate import RunState
from automationd.records import Attempt, Event, Phase, Run, Trigger
from automationd.store.rows import w_attempt, w_event, w_run
from automationd.store.write import Observer
from automationd.web.feed import CLIENT_BUFFER, IDLE_GRACE, PER_FLUSH, Feed, RunFilter
from tests.support.clock import FakeClock


class Watched:
    """The store's side of ``watch``: remembers the observer it was given."""

    def __init__(self) -> None:
        self.observer: Observer | None = None
        self.calls = 0

    def __call__(self, observer: Observer | None) -> None:
        self.observer = observer
        self.calls += 1


def _feed() -> tuple[Feed, Watched, FakeClock]:
    clock = FakeClock()
    store = Watched()
    return Feed(store, clock, lambda: {"dlq_size": 0}), store, clock


def _run(run_id: str, state: RunState, job: str = "sync") -> Run:
    return Run(id=run_id, job=job, state=state, trigger=Trigger.MANUAL, created_at=1.0)


def _messages(raw: list[bytes]) -> list[tuple[str | None, str, Any]]:
    out = []
    for chunk in raw:
        fields = dict(
            line.split(": ", 1) for line in chunk.decode().strip().splitlines() if ": " in line
        )
        out.append((fields.get("id"), fields["event"], json.loads(fields["data"])))
    return out


def test_no_page_no_observer() -> None:
    """Until a page is rendered or a stream opens, the store has no observer at all."""
    feed, store, _ = _feed()
    assert store.calls == 0 and not feed.watching
    feed.keep_watching()
    assert store.observer is not None and feed.watching


def test_observer_goes_away_after_the_last_page() -> None:
    """Once the last stream closed and IDLE_GRACE passed, the next batch removes the observer."""
    feed, store, clock = _feed()
    client = feed.subscribe(["runs"])
    feed.unsubscribe(client)
    assert store.observer is not None
    store.observer([[w_run(_run("a1", RunState.RUNNING))]])
    assert store.observer is not None  # still within the grace
    clock.advance(IDLE_GRACE + 1)
    store.observer([[w_run(_run("a1", RunState.SUCCEEDED))]])
    assert store.observer is None and not feed.watching


def test_run_changes_are_coalesced_per_flush() -> None:
    """Two rows of one run in a flush become one entry with the newest state."""
    feed, store, _ = _feed()
    client = feed.subscribe(["runs", "counters"])
    client.take()
    assert store.observer is not None
    store.observer([[w_run(_run("a1", RunState.RUNNING))], [w_run(_run("a1", RunState.SUCCEEDED))]])
    feed.flush()
    msgs = _messages(client.take())
    runs = [data for _, topic, data in msgs if topic == "runs"]
    assert runs == [
        {
            "runs": [
                {
                    "id": "a1",
                    "job": "sync",
                    "state": "succeeded",
                    "trigger": "manual",
                    "created_at": "1970-01-01T00:00:01.000Z",
                    "started_at": None,
                    "finished_at": None,
                    "attempts": 0,
                    "error": None,
                }
            ],
            "dropped": 0,
        }
    ]
    assert [topic for _, topic, _ in msgs] == ["runs", "counters"]


def test_topics_and_event_globs_filter_what_a_client_gets() -> None:
    """A runs stream gets no events; an events stream with a glob gets only matching names."""
    feed, store, _ = _feed()
    runs_only = feed.subscribe(["runs"])
    inventory = feed.subscribe(["events"], glob="inventory.*")
    for c in (runs_only, inventory):
        c.take()
    assert store.observer is not None
    ev = [
        w_event(Event(id=f"e{i}", name=name, payload={"i": i}, created_at=2.0))
        for i, name in enumerate(["inventory.changed", "other.thing"])
    ]
    store.observer([ev])
    feed.flush()
    assert _messages(runs_only.take()) == []
    (msg,) = _messages(inventory.take())
    assert msg[1] == "events" and [e["name"] for e in msg[2]["events"]] == ["inventory.changed"]
    assert msg[2]["events"][0]["payload"] == '{"i":0}'


def test_a_burst_beyond_the_cap_is_counted_as_dropped() -> None:
    """More than PER_FLUSH runs in one flush: the rest is counted, nothing waits."""
    feed, store, _ = _feed()
    client = feed.subscribe(["runs"])
    client.take()
    assert store.observer is not None
    store.observer([[w_run(_run(f"r{i:05d}", RunState.QUEUED)) for i in range(PER_FLUSH + 7)]])
    feed.flush()
    ((_, _, data),) = _messages(client.take())
    assert len(data["runs"]) == PER_FLUSH and data["dropped"] == 7


def test_a_client_too_far_behind_is_told_to_reload() -> None:
    """A client that does not take its messages is cut off with one reload message;
    another client is unaffected."""
    feed, store, _ = _feed()
    slow = feed.subscribe(["runs"])
    fast = feed.subscribe(["runs"])
    assert store.observer is not None
    for i in range(CLIENT_BUFFER + 5):
        store.observer([[w_run(_run(f"r{i}", RunState.QUEUED))]])
        feed.flush()
        fast.take()
    assert slow.overflowed
    assert [topic for _, topic, _ in _messages(slow.take())] == ["reload"]
    assert not fast.overflowed


def test_resume_from_last_event_id() -> None:
    """1. A client sees messages N, N+1.  2. A new stream resuming after N gets N+1.
    3. A number from before the watch began (or the future) gets reload. Result: no gap is
    ever silent."""
    feed, store, _ = _feed()
    first = feed.subscribe(["runs", "attempts"])
    first.take()
    assert store.observer is not None
    store.observer([[w_run(_run("a1", RunState.RUNNING))]])
    feed.flush()
    attempt = Attempt(
        run_id="a1", n=1, phase=Phase.PERFORM, target=None, target_idx=-1, started_at=3.0
    )
    store.observer([[w_attempt(attempt)]])
    feed.flush()
    seen = _messages(first.take())
    assert [topic for _, topic, _ in seen] == ["runs", "attempts"]
    n = int(seen[0][0] or 0)
    again = feed.subscribe(["runs", "attempts"], after=n)
    resumed = _messages(again.take())
    assert [topic for _, topic, _ in resumed] == ["attempts", "counters"]  # counters: a stream's
    # first message always says where the numbers stand
    assert resumed[0][2]["attempts"][0]["run_id"] == "a1"
    for stale in (n - 1_000_000, feed.seq + 5):
        late = feed.subscribe(["runs"], after=stale)
        assert next(topic for _, topic, _ in _messages(late.take())) == "reload"


def test_close_ends_every_stream_and_the_watch() -> None:
    """Closing the feed wakes every client as closed and leaves the store unobserved."""
    feed, store, _ = _feed()
    clients = [feed.subscribe(["runs"]) for _ in range(3)]
    feed.close()
    assert all(c.closed and c.wake.is_set() for c in clients)
    assert store.observer is None


def test_a_page_gets_only_the_runs_it_shows() -> None:
    """A job's page gets its job's runs; a run's page that run and its attempts only; an
    unfiltered page everything."""
    feed, store, _ = _feed()
    job_page = feed.subscribe(["runs"], runs=RunFilter(jobs=frozenset({"a"})))
    run_page = feed.subscribe(["runs", "attempts"], runs=RunFilter(run="r2"))
    everything = feed.subscribe(["runs"])
    for c in (job_page, run_page, everything):
        c.take()
    assert store.observer is not None
    attempts = [
        w_attempt(Attempt(run_id=r, n=1, phase=Phase.PERFORM, target=None, target_idx=-1,
                          started_at=1.0))
        for r in ("r1", "r2")
    ]  # fmt: skip
    store.observer([[w_run(_run("r1", RunState.RUNNING, job="a"))],
                    [w_run(_run("r2", RunState.RUNNING, job="b")), *attempts]])  # fmt: skip
    feed.flush()

    def seen(client: Any) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for _, topic, data in _messages(client.take()):
            rows = data.get("runs") or data.get("attempts") or []
            out[topic] = [r.get("id") or r.get("run_id") for r in rows]
        return out

    assert seen(job_page) == {"runs": ["r1"]}
    assert seen(run_page) == {"runs": ["r2"], "attempts": ["r2"]}
    assert seen(everything) == {"runs": ["r1", "r2"]}
