"""The store health shared by both backends (store/health.py), on a real group-commit writer
over a scripted committer: what a probe reports, that a probe which stops at the writer makes
no reader ping (a coroutine made and dropped is never awaited), and the log of a reader that
stalls and comes back."""

from __future__ import annotations

import asyncio
import gc
import warnings
from collections.abc import Sequence
from typing import Any

from structlog.testing import capture_logs

from automationd.errors import StoreError
from automationd.store.batch import Step
from automationd.store.health import StoreHealth
from automationd.store.writer import Writer
from tests.support.clock import FakeClock


class ScriptedCommitter:
    """Commits every batch at once, or fails it with ``failure`` while that is set."""

    def __init__(self) -> None:
        self.failure: StoreError | None = None

    def start(self, steps: Sequence[Step]) -> asyncio.Future[list[Any]]:
        fut: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        if self.failure is not None:
            fut.set_exception(self.failure)
        else:
            fut.set_result([])
        return fut


class Reader:
    """The backend's ``SELECT 1``: counts its calls; fails with ``failure`` while set. Given
    ``script``, each ping is announced on ``asked`` and waits for its answer there (an error,
    or None: it passes)."""

    def __init__(self, script: bool = False) -> None:
        self.pings = 0
        self.failure: StoreError | None = None
        self.script = script
        self.asked: asyncio.Queue[None] = asyncio.Queue()
        self.answers: asyncio.Queue[StoreError | None] = asyncio.Queue()

    async def ping(self) -> None:
        self.pings += 1
        failure = self.failure
        if self.script:
            self.asked.put_nowait(None)
            failure = await self.answers.get()
        if failure is not None:
            raise failure


class NoWaitClock(FakeClock):
    """The probe's interval passes at once: the scripted reader paces the probes."""

    async def sleep_until(self, deadline: float) -> None:
        await asyncio.sleep(0)


async def test_a_probe_stopped_by_the_writer_makes_no_reader_ping() -> None:
    """With every batch failing (disk full) the probe says so with the writer's reason and
    never creates the reader's ping, so no coroutine is left unawaited; with the writer back
    it pings the reader and passes."""
    async with asyncio.timeout(5):
        committer, reader, clock = ScriptedCommitter(), Reader(), FakeClock()
        writer = Writer(committer, clock)
        health = StoreHealth(writer, clock, reader.ping, interval=1.0, timeout=1.0)
        committer.failure = StoreError("store: disk full", kind="disk_full")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert await health.probe() == "store: disk full"
            gc.collect()
        assert reader.pings == 0
        assert not [w for w in caught if "never awaited" in str(w.message)]
        committer.failure = None
        assert await health.probe() is None and reader.pings == 1


async def test_a_stalled_reader_is_told_once_and_its_recovery_once() -> None:
    """1. The reader fails three pings in a row: the store turns unhealthy with the reader's
    reason, logged once.
    2. The reader answers again.
    Result: healthy, ``store.healthy`` logged once, and ``wait_healthy`` returns."""
    async with asyncio.timeout(5):
        reader, clock = Reader(script=True), NoWaitClock()
        writer = Writer(ScriptedCommitter(), clock)
        health = StoreHealth(writer, clock, reader.ping, interval=1.0, timeout=1.0)
        closed = StoreError("store: reader closed", kind="io")
        with capture_logs() as logs:
            async with asyncio.TaskGroup() as tg:
                loop = tg.create_task(health.probe_loop())
                for _ in range(3):
                    await reader.asked.get()
                    reader.answers.put_nowait(closed)
                await reader.asked.get()  # the fourth probe: the third one's verdict is in
                assert not health.healthy and health.reason == "store: reader closed"
                reader.answers.put_nowait(None)
                await health.wait_healthy()
                loop.cancel()
        assert health.healthy and health.reason is None
        assert [e["event"] for e in logs] == ["store.unhealthy", "store.healthy"]
