"""Second chances: ``runs.retry``, ``runs.rollback`` and the dead-letter queue's retry and
purge.

A retried run re-does only the failed targets of a ``failed``/``partial`` run, without the
check phase, as a new run (``trigger: "retry"``, ``origin`` = the old run), and takes the old
run's dead letters out of the DLQ in the same transaction (their targets are being redone).
A DLQ retry does the same for the entries chosen. Each picks its dead letters and launches
under one lock (``_letters``, with purges), so two requests never both redo one letter, and
the DLQ count goes down once per letter.

A rollback is the same run going on (engine/undo.py has its rules): its ``rolling_back`` row
is durable before its task starts, and the undo dead letters of an earlier incomplete
rollback leave the DLQ in that same transaction (they are being undone again). Retrying a
dead letter whose *undo* failed rolls its run back again; it never performs the target.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

from automationd.core.runstate import ROLLBACK_FROM, RunState, TargetState
from automationd.engine.intake import ANSWER_WAIT
from automationd.engine.jobs import JobTable
from automationd.engine.launcher import Launcher
from automationd.engine.live import LiveRun
from automationd.engine.report import DlqCount, Report
from automationd.engine.undo import begin
from automationd.errors import AdminError, conflict, not_found
from automationd.records import DlqEntry, Phase, Run, Trigger
from automationd.store.api import Store
from automationd.store.rows import w_dlq_delete, w_run


class Redo:
    def __init__(
        self, launcher: Launcher, jobs: JobTable, store: Store, dlq: DlqCount, report: Report
    ) -> None:
        self._launcher = launcher
        self.jobs = jobs
        self._store = store
        self._dlq = dlq
        self._report = report
        self._rolling: set[str] = set()  # rollbacks being started (a second one is refused)
        self._letters = asyncio.Lock()  # from picking dead letters to their launch (docstring)

    async def retry_run(self, run_id: str) -> Run:
        async with self._letters:
            return await self._retry_run(run_id)

    async def _retry_run(self, run_id: str) -> Run:
        old = await self._store.run(run_id)
        if old is None:
            raise not_found(f"no run with id {run_id!r}")
        if old.state not in (RunState.FAILED, RunState.PARTIAL):
            raise conflict(f"run {run_id} is {old.state.value}; only failed or partial runs retry")
        job = self.jobs.get(old.job)
        if job is None:
            raise not_found(f"job {old.job!r} of run {run_id} no longer exists")
        stored = await self._store.target_rows(run_id)
        failed = [t for t in stored if t.state is TargetState.FAILED]
        values: list[Any] | None = [t.target for t in failed] if failed else None
        # targets_total == 0: it failed in the check phase, so the retry redoes the check too
        skip_check = old.targets_total > 0
        live = self._launcher.prepare(
            job,
            trigger=Trigger.RETRY,
            payload=old.payload,
            targets=values,
            skip_check=skip_check,
            origin=old.id,
            depth=old.depth,
        )
        letters = [
            e.id
            for e in await self._store.dlq_select(id=None, job=old.job, all=False)
            if e.run_id == run_id and e.phase is not Phase.UNDO
        ]
        run = (await self._launcher.start([live], w_dlq_delete(letters)))[0]
        self._dlq.remove(len(letters))
        return run

    async def rollback(self, run_id: str) -> Run:
        """Roll a ``partial``/``failed`` run back: the same run, answered once it ended (or
        after ``ANSWER_WAIT``, as it is then)."""
        live, _ = await self._start_rollback(run_id)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(ANSWER_WAIT):
                await asyncio.shield(live.ended())
        await self._report.settle()
        return await self._store.run(run_id) or live.snapshot()

    async def _start_rollback(self, run_id: str) -> tuple[LiveRun, int]:
        """The run goes ``rolling_back`` (durable) and its task starts; returns it and how
        many undo dead letters left the DLQ."""
        if run_id in self._rolling or run_id in self._launcher.live:
            raise conflict(f"run {run_id} is still live (running or rolling back)")
        self._rolling.add(run_id)
        try:
            return await self._begin_rollback(run_id)
        finally:
            self._rolling.discard(run_id)

    async def _begin_rollback(self, run_id: str) -> tuple[LiveRun, int]:
        old = await self._store.run(run_id)
        if old is None:
            raise not_found(f"no run with id {run_id!r}")
        if old.state not in ROLLBACK_FROM:
            raise conflict(
                f"run {run_id} is {old.state.value}; only partial or failed runs roll back"
            )
        job = self.jobs.get(old.job)
        if job is None:
            raise not_found(f"job {old.job!r} of run {run_id} no longer exists")
        if job.spec.undo is None:
            raise conflict(f"job {job.name!r} has no undo action")
        rows = await self._store.target_rows(run_id)
        if not any(t.state is TargetState.SUCCEEDED for t in rows):
            raise conflict(f"run {run_id} has no succeeded targets to undo")
        undo_letters = [
            e.id
            for e in await self._store.dlq_select(id=None, job=old.job, all=False)
            if e.run_id == run_id and e.phase is Phase.UNDO
        ]
        live = LiveRun.from_stored(old, job, rows)
        live.resumed = False
        live.error = old.error
        begin(live)
        await self._store.commit([w_run(live), *w_dlq_delete(undo_letters)])
        self._dlq.remove(len(undo_letters))
        self._launcher.resume(live)
        return live, len(undo_letters)

    async def dlq_retry(self, pick: Callable[[], Awaitable[list[DlqEntry]]]) -> int:
        """One new run per (run, job) group of the entries ``pick`` chooses; they leave the
        DLQ atomically. Entries whose undo failed roll their run back again instead."""
        async with self._letters:
            return await self._dlq_retry(await pick())

    async def _dlq_retry(self, entries: list[DlqEntry]) -> int:
        groups: dict[str, list[DlqEntry]] = {}
        undone = 0
        for run_id in dict.fromkeys(e.run_id for e in entries if e.phase is Phase.UNDO):
            with contextlib.suppress(AdminError):  # not rollable now: its entries stay
                undone += (await self._start_rollback(run_id))[1]
        for e in entries:
            if e.phase is not Phase.UNDO:
                groups.setdefault(e.run_id, []).append(e)
        lives: list[LiveRun] = []
        done: list[str] = []
        for run_id, group in groups.items():
            job = self.jobs.get(group[0].job)
            if job is None:
                continue
            old = await self._store.run(run_id)
            perform = [e for e in group if e.target_idx >= 0]
            live = self._launcher.prepare(
                job,
                trigger=Trigger.RETRY,
                payload=old.payload if old else None,
                targets=[e.target for e in perform] if perform else None,
                skip_check=bool(perform),
                origin=run_id,
                depth=old.depth if old else 0,
            )
            lives.append(live)
            done.extend(e.id for e in group)
        if done:
            await self._launcher.start(lives, w_dlq_delete(done))
        self._dlq.remove(len(done))
        return len(done) + undone

    async def dlq_purge(self, pick: Callable[[], Awaitable[list[DlqEntry]]]) -> int:
        async with self._letters:
            ids = [e.id for e in await pick()]
            if ids:
                await self._store.commit(w_dlq_delete(ids))
            self._dlq.remove(len(ids))
            return len(ids)
