"""The writer connection's thread: functions run on it one at a time, in submission order.

Why not ``loop.run_in_executor`` on a one-thread ``ThreadPoolExecutor``: that hop builds a
work item and a ``concurrent.futures.Future`` (with its condition variable), checks the pool
size under a semaphore, and chains the result back through a second, asyncio future. The
group-commit writer makes one hop per batch, and a synchronous client's batch holds one or
two runs, so that bookkeeping was paid per run. Here a call is one ``SimpleQueue.put`` and
its answer one ``call_soon_threadsafe``, through public APIs only.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

_STOP = None


class WriterThread:
    """One thread owning one SQLite connection's work. Start it inside the running loop."""

    def __init__(self, name: str = "store-writer") -> None:
        self._loop = asyncio.get_running_loop()
        self._queue: queue.SimpleQueue[tuple[Callable[[], Any], asyncio.Future[Any]] | None]
        self._queue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._thread.start()

    def call(self, fn: Callable[[], T]) -> asyncio.Future[T]:
        """Run ``fn()`` on the thread; the future gives its result or its exception."""
        fut: asyncio.Future[T] = self._loop.create_future()
        self._queue.put((fn, fut))
        return fut

    def stop(self) -> None:
        """Finish what was submitted, then end the thread (blocks until it has)."""
        self._queue.put(_STOP)
        self._thread.join()

    def _work(self) -> None:
        get, call_back = self._queue.get, self._loop.call_soon_threadsafe
        while True:
            item = get()
            if item is None:
                return
            fn, fut = item
            try:
                result = fn()
            except BaseException as exc:  # handed to the loop: the caller's future raises it
                try:
                    call_back(_fail, fut, exc)
                except RuntimeError:  # the loop is closed: nobody is left to tell
                    return
                continue
            try:
                call_back(_succeed, fut, result)
            except RuntimeError:
                return


def _succeed(fut: asyncio.Future[Any], result: Any) -> None:
    if not fut.done():
        fut.set_result(result)


def _fail(fut: asyncio.Future[Any], exc: BaseException) -> None:
    if not fut.done():
        fut.set_exception(exc)
