"""Stored ``run.*`` events on their way to the jobs that listen for them.

Why a box and not a call: a run's end is reported (engine/report.py) from its write's
settlement, and its listeners' runs are started by the event bus, which starts runs through
the launcher, which spawns runs that end in the report. The report puts the event here; the
bus's delivery task takes it out. Nothing is patched into anything after construction, and
no module imports the one that imports it.
"""

from __future__ import annotations

import asyncio
from collections import deque

from automationd.records import Event


class Outbox:
    def __init__(self) -> None:
        self._events: deque[Event] = deque()
        self._ready = asyncio.Event()

    def put(self, event: Event) -> None:
        self._events.append(event)
        self._ready.set()

    async def take(self) -> list[Event]:
        """Wait until there is something, then take everything there is."""
        while not self._events:
            self._ready.clear()
            await self._ready.wait()
        out = list(self._events)
        self._events.clear()
        return out

    def __len__(self) -> int:
        return len(self._events)
