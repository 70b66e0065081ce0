"""The live feed behind the console's server-sent-event streams.

Theory of operation
===================

Where changes come from: the store tells an observer the writes of every batch once they are
durable (``Store.watch``). The feed reads the rows it cares about (runs, attempts, events,
dead letters) straight from those writes, so every source of change (scheduler, triggers,
retries, recovery) shows up, and only what is on disk is ever shown.

Rules:
1. Nobody listening costs the engine nothing: the feed watches the store only while a page
   is open or was rendered in the last ``IDLE_GRACE`` seconds (a page opens its stream right
   after it is rendered; a browser reconnects after a blip). Otherwise the store has no
   observer at all.
2. The engine never waits for a browser. Observing a batch only notes, per run / attempt,
   the newest row (and the new events) that some open stream wants, bounded by
   ``PER_FLUSH``; the rest is counted as dropped. One feed task turns what was noted into
   messages at most every ``FLUSH_EVERY``: each message is encoded once and appended to
   every interested client's buffer (re-encoded only for a client that filters).
3. A client's buffer holds at most ``CLIENT_BUFFER`` messages. A client that falls that far
   behind (its socket does not drain) is cut off with a ``reload`` message: its page is
   stale and reloads, while everyone else goes on.
4. Every message has a sequence number, the SSE ``id``. The last ``RING`` messages are kept,
   so a browser that reconnects with ``Last-Event-ID: N`` gets what it missed, if the feed
   watched without a break since N and N is still in the ring; otherwise it gets ``reload``.
   A page is rendered with the current number, so its stream starts exactly where the
   page's data ended.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from automationd.clock import Clock
from automationd.core.match import glob_match
from automationd.store.write import Observer, Stmt, Write
from automationd.units import rfc3339

FLUSH_EVERY = 0.2  # seconds: changes are gathered this long into one message per topic
PER_FLUSH = 100  # runs / attempts / events per message (two pages' worth); the rest is
# counted as dropped
CLIENT_BUFFER = 32  # messages a client may fall behind before it is told to reload
RING = 1024  # messages kept for Last-Event-ID resumes
IDLE_GRACE = 10.0  # seconds the store stays watched after the last page was rendered or
# closed: long enough for a page's stream to connect, or a browser to reconnect (after 2 s)
PAYLOAD_CAP = 4096  # characters of an event payload sent live (the page links to the rest)

RUNS, ATTEMPTS, EVENTS, COUNTERS, RELOAD = "runs", "attempts", "events", "counters", "reload"
_ALL = frozenset({RUNS, ATTEMPTS, EVENTS, COUNTERS})

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


@dataclass(frozen=True, slots=True)
class RunFilter:
    """The runs a page shows (None: any), so a page gets only what it can use: a job's page
    its job's runs, a run's page that run and its attempts."""

    jobs: frozenset[str] | None = None
    states: frozenset[str] | None = None
    trigger: str | None = None
    run: str | None = None

    def __call__(self, run: dict[str, Any]) -> bool:
        return (
            (self.run is None or run["id"] == self.run)
            and (self.jobs is None or run["job"] in self.jobs)
            and (self.states is None or run["state"] in self.states)
            and (self.trigger is None or run["trigger"] == self.trigger)
        )


def sse(seq: int | None, topic: str, data: Any) -> bytes:
    """One server-sent event (compact JSON has no newlines, so one ``data:`` line)."""
    head = f"id: {seq}\n" if seq is not None else ""
    return f"{head}event: {topic}\ndata: {_dumps(data)}\n\n".encode()


@dataclass(slots=True, eq=False)
class Client:
    """One open stream: what it wants, and its bounded buffer (owned by the feed)."""

    topics: frozenset[str]
    glob: str | None = None  # event-name filter (events topic)
    runs: RunFilter | None = None  # which runs (and their attempts) this page shows
    pending: list[bytes] = field(default_factory=list)
    overflowed: bool = False
    closed: bool = False
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    def take(self) -> list[bytes]:
        out, self.pending = self.pending, []
        self.wake.clear()
        return out


class Feed:
    """See the theory of operation above."""

    def __init__(
        self,
        watch: Callable[[Observer | None], None],
        clock: Clock,
        counters: Callable[[], dict[str, Any]],
    ) -> None:
        self._watch = watch
        self._clock = clock
        self._counters = counters
        # Numbers of a new life start above any of an earlier one (a few per second at
        # most), so a browser resuming across a restart is told to reload.
        self.seq = int(clock.time() * 1000)
        self._ring: deque[tuple[int, str, Any, bytes]] = deque(maxlen=RING)
        self._clients: set[Client] = set()
        self._watching_since: int | None = None  # seq when the current watch began
        self._idle_until = 0.0
        self._dirty = asyncio.Event()
        self._runs: dict[str, tuple[Any, ...]] = {}
        self._attempts: dict[tuple[str, int], tuple[Any, ...]] = {}
        self._events: list[tuple[Any, ...]] = []
        self._dropped = {RUNS: 0, ATTEMPTS: 0, EVENTS: 0}
        self._counters_due = False
        self._wanted: frozenset[str] = frozenset()  # topics some open stream wants

    # -- who listens --------------------------------------------------------------------
    @property
    def watching(self) -> bool:
        return self._watching_since is not None

    def keep_watching(self) -> int:
        """A page is being rendered: watch (for at least ``IDLE_GRACE``); returns the
        sequence number its stream should start after."""
        self._idle_until = self._clock.monotonic() + IDLE_GRACE
        if self._watching_since is None:
            self._watching_since = self.seq
            self._watch(self._observe)
        return self.seq

    def subscribe(
        self,
        topics: Iterable[str],
        *,
        after: int | None = None,
        glob: str | None = None,
        runs: RunFilter | None = None,
    ) -> Client:
        client = Client(frozenset(topics), glob, runs)
        if after is not None:
            self._resume(client, after)  # before watching anew: a gap means reload
        self.keep_watching()
        self._clients.add(client)
        self._wanted = self._wanted | client.topics
        client.pending.append(sse(None, COUNTERS, self._counters()))
        client.wake.set()
        return client

    def unsubscribe(self, client: Client) -> None:
        self._clients.discard(client)
        client.closed = True
        self._wanted = frozenset().union(*(c.topics for c in self._clients))
        if not self._clients:
            self._idle_until = self._clock.monotonic() + IDLE_GRACE

    def close(self) -> None:
        """The console is stopping: every stream ends."""
        for client in list(self._clients):
            client.closed = True
            client.wake.set()
        self._clients.clear()
        self._unwatch()

    def _unwatch(self) -> None:
        if self._watching_since is not None:
            self._watching_since = None
            self._watch(None)

    def _resume(self, client: Client, after: int) -> None:
        ring = self._ring
        since = self._watching_since
        oldest = ring[0][0] if ring else self.seq + 1
        if since is None or after < since or after > self.seq or after + 1 < oldest:
            client.pending.append(sse(self.seq, RELOAD, {"reason": "missed updates"}))
            return
        for seq, topic, data, raw in ring:
            if seq > after:
                self._offer(client, seq, topic, data, raw)

    # -- noting changes (called by the store for every durable batch while watched) ------
    def _observe(self, batches: list[Sequence[Write]]) -> None:
        if not self._clients and self._clock.monotonic() > self._idle_until:
            self._unwatch()  # rule 1: the last page is long gone
            return
        runs, attempts, events, dropped = self._runs, self._attempts, self._events, self._dropped
        # a page just rendered (no stream yet) may want anything; open streams say what
        wanted = self._wanted if self._clients else _ALL
        want_runs, want_attempts, want_events = (t in wanted for t in (RUNS, ATTEMPTS, EVENTS))
        for writes in batches:
            for w in writes:
                stmt = w.stmt
                if stmt is Stmt.RUN and want_runs:
                    p = w.params
                    if p[0] in runs or len(runs) < PER_FLUSH:
                        runs[p[0]] = p
                    else:
                        dropped[RUNS] += 1
                elif stmt is Stmt.ATTEMPT and want_attempts:
                    p = w.params
                    if len(attempts) < PER_FLUSH:
                        attempts[(p[0], p[1])] = p
                    else:
                        dropped[ATTEMPTS] += 1
                elif stmt is Stmt.EVENT and want_events:
                    if len(events) < PER_FLUSH:
                        events.append(w.params)
                    else:
                        dropped[EVENTS] += 1
                elif stmt is Stmt.DLQ or stmt is Stmt.DLQ_DELETE:
                    self._counters_due = True
        self._dirty.set()

    async def run(self) -> None:
        """The feed's task: turn noted changes into messages, at most every FLUSH_EVERY."""
        while True:
            await self._dirty.wait()
            await self._clock.sleep_until(self._clock.monotonic() + FLUSH_EVERY)
            self._dirty.clear()
            self.flush()

    def flush(self) -> None:
        if self._runs or self._dropped[RUNS]:
            rows = sorted(self._runs.values(), key=lambda p: p[0])
            self._publish(RUNS, {"runs": [_run(p) for p in rows], "dropped": self._dropped[RUNS]})
            self._counters_due = True
        if self._attempts or self._dropped[ATTEMPTS]:
            rows = sorted(self._attempts.values(), key=lambda p: (p[0], p[1]))
            self._publish(ATTEMPTS, {"attempts": [_attempt(p) for p in rows]})
        if self._events or self._dropped[EVENTS]:
            self._publish(
                EVENTS,
                {"events": [_event(p) for p in self._events], "dropped": self._dropped[EVENTS]},
            )
        if self._counters_due:
            self._publish(COUNTERS, self._counters())
        self._runs, self._attempts, self._events = {}, {}, []
        self._dropped = {RUNS: 0, ATTEMPTS: 0, EVENTS: 0}
        self._counters_due = False

    def _publish(self, topic: str, data: Any) -> None:
        self.seq += 1
        raw = sse(self.seq, topic, data)
        self._ring.append((self.seq, topic, data, raw))
        for client in self._clients:
            self._offer(client, self.seq, topic, data, raw)

    def _offer(self, client: Client, seq: int, topic: str, data: Any, raw: bytes) -> None:
        if topic not in client.topics or client.overflowed:
            return
        if topic == EVENTS and client.glob is not None:
            kept = [e for e in data["events"] if glob_match(client.glob, e["name"])]
            if not kept:
                return
            raw = sse(seq, topic, {"events": kept, "dropped": data["dropped"]})
        elif topic == RUNS and client.runs is not None:
            wanted = client.runs
            runs = [r for r in data["runs"] if wanted(r)]
            if not runs:
                return
            raw = sse(seq, topic, {"runs": runs, "dropped": data["dropped"]})
        elif topic == ATTEMPTS and client.runs is not None and client.runs.run is not None:
            run_id = client.runs.run
            attempts = [a for a in data["attempts"] if a["run_id"] == run_id]
            if not attempts:
                return
            raw = sse(seq, topic, {"attempts": attempts})
        if len(client.pending) >= CLIENT_BUFFER:
            client.overflowed = True  # rule 3
            client.pending = [sse(seq, RELOAD, {"reason": "too far behind"})]
        else:
            client.pending.append(raw)
        client.wake.set()


def _run(p: tuple[Any, ...]) -> dict[str, Any]:
    """A RUN write's parameters (order: store/rows.py) as the live view of the run."""
    return {
        "id": p[0],
        "job": p[1],
        "state": p[2],
        "trigger": p[3],
        "created_at": rfc3339(p[5]),
        "started_at": rfc3339(p[6]),
        "finished_at": rfc3339(p[7]),
        "attempts": p[8],
        "error": {"kind": p[14], "message": p[15]} if p[14] else None,
    }


def _attempt(p: tuple[Any, ...]) -> dict[str, Any]:
    return {
        "run_id": p[0],
        "n": p[1],
        "phase": p[2],
        "started_at": rfc3339(p[5]),
        "finished_at": rfc3339(p[6]),
        "outcome": p[7],
    }


def _event(p: tuple[Any, ...]) -> dict[str, Any]:
    text = p[2] or ""
    return {
        "id": p[0],
        "name": p[1],
        "payload": text[:PAYLOAD_CAP],
        "truncated": len(text) > PAYLOAD_CAP,
        "created_at": rfc3339(p[3]),
        "depth": p[5],
    }
