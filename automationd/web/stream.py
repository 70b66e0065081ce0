"""``/runs/stream`` and ``/events/stream``: the feed (web/feed.py) as server-sent events.

One stream per open page. ``/runs/stream`` carries run changes and the overview's counters;
a page asks only for the runs it shows (``?job=a,b``, ``?state=failed,partial``,
``?trigger=manual``, ``?run=ID``, which adds that run's finished attempts; ``?runs=none``:
counters only). ``/events/stream`` carries new events (``?name=GLOB`` filters them) and the
counters. A browser that reconnects sends ``Last-Event-ID`` and resumes (a first
connection passes the number its page was rendered at as ``?after=N``). A quiet stream sends
a comment every ``PING_EVERY`` so proxies and dead peers are noticed; a client too far
behind gets ``reload`` and the stream ends.
"""

from __future__ import annotations

import asyncio
import contextlib

from aiohttp import web

from automationd.web.console import Console
from automationd.web.feed import ATTEMPTS, COUNTERS, EVENTS, RUNS, RunFilter

PING_EVERY = 15.0
RETRY_MS = 2000  # how soon a browser reconnects after the stream broke


def _after(request: web.Request) -> int | None:
    text = request.headers.get("Last-Event-ID") or request.query.get("after")
    if text is None or not text.strip().isdigit():
        return None
    return int(text.strip())


def _set(text: str | None) -> frozenset[str] | None:
    """``a,b`` → {a, b} (job names and states hold no commas); empty → None (any)."""
    return frozenset(t for t in text.split(",") if t) or None if text else None


def make_streams(console: Console) -> web.RouteTableDef:
    routes = web.RouteTableDef()

    async def serve(
        request: web.Request,
        topics: tuple[str, ...],
        glob: str | None = None,
        runs: RunFilter | None = None,
    ) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-store",
                "X-Accel-Buffering": "no",
            }
        )
        await response.prepare(request)
        client = console.feed.subscribe(topics, after=_after(request), glob=glob, runs=runs)
        try:
            await response.write(f"retry: {RETRY_MS}\n\n".encode())
            while not client.closed:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(PING_EVERY):
                        await client.wake.wait()
                chunks = client.take()
                await response.write(b"".join(chunks) if chunks else b": ping\n\n")
                if client.overflowed:
                    break  # rule 3: it was told to reload
        except (ConnectionResetError, ConnectionError):
            pass  # the browser went away
        finally:
            console.feed.unsubscribe(client)
        return response

    @routes.get("/runs/stream")
    async def runs_stream(request: web.Request) -> web.StreamResponse:
        q = request.query
        if q.get("runs") == "none":  # a page that shows only the counters
            return await serve(request, (COUNTERS,))
        runs = RunFilter(
            jobs=_set(q.get("job")),
            states=_set(q.get("state")),
            trigger=q.get("trigger") or None,
            run=q.get("run") or None,
        )
        topics = (RUNS, ATTEMPTS, COUNTERS) if runs.run else (RUNS, COUNTERS)
        return await serve(request, topics, runs=runs if runs != RunFilter() else None)

    @routes.get("/events/stream")
    async def events_stream(request: web.Request) -> web.StreamResponse:
        return await serve(request, (EVENTS, COUNTERS), glob=request.query.get("name") or None)

    return routes
