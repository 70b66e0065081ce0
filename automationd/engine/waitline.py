"""A FIFO line in which only the head waiter is awake (leader hand-off).

Why: a service gate must hand each token or freed slot to exactly one waiter. Instead of a
separate pump task (which would need a TaskGroup of its own) the head of the line *is* the
pump: it alone sleeps until the next token time or waits for a freed slot, takes what it
needs, and on ``leave()`` resolves the future of the next waiter, which becomes the new head.
Every other waiter sleeps on its own future and is woken exactly once, when its turn comes.

Cancellation: a waiter cancelled before its turn leaves a cancelled future that ``leave()``
skips; a waiter cancelled just as its turn was handed over passes the turn on itself, so the
line never stalls and no place leaks.
"""

from __future__ import annotations

import asyncio
from collections import deque

__all__ = ["WaitLine"]


class WaitLine:
    __slots__ = ("_led", "_queue")

    def __init__(self) -> None:
        self._queue: deque[asyncio.Future[None]] = deque()
        self._led = False  # someone is at the head (between enter() returning and leave())

    async def enter(self) -> None:
        """Return once the caller is at the head. The caller must then call ``leave()``."""
        if not self._led and not self._queue:
            self._led = True
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append(fut)
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.leave()  # our turn arrived as we were cancelled: pass it on
            raise

    def leave(self) -> None:
        """The head is done: wake the next live waiter (and only it)."""
        queue = self._queue
        while queue:
            fut = queue.popleft()
            if not fut.done():
                fut.set_result(None)
                return
        self._led = False
