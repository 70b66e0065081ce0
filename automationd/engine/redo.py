"""Second chances: ``runs.retry`` and the dead-letter queue's retry and purge.

A retried run re-does only the failed targets of a ``failed``/``partial`` run, without the
check phase, as a new run (``trigger: "retry"``, ``origin`` = the old run). A DLQ retry does
the same for the entries chosen, and removes them in the same transaction.
"""

from __future__ import annotations

from typing import Any

from automationd.core.runstate import RunState, TargetState
from automationd.engine.jobs import JobTable
from automationd.engine.launcher import Launcher
from automationd.engine.live import LiveRun
from automationd.engine.report import DlqCount
from automationd.errors import conflict, not_found
from automationd.records import DlqEntry, Run, Trigger
from automationd.store.api import Store
from automationd.store.rows import w_dlq_delete


class Redo:
    def __init__(self, launcher: Launcher, jobs: JobTable, store: Store, dlq: DlqCount) -> None:
        self._launcher = launcher
        self.jobs = jobs
        self._store = store
        self._dlq = dlq

    async def retry_run(self, run_id: str) -> Run:
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
        return (await self._launcher.start([live]))[0]

    async def dlq_retry(self, entries: list[DlqEntry]) -> int:
        """One new run per (run, job) group of entries; the entries leave the DLQ atomically."""
        groups: dict[str, list[DlqEntry]] = {}
        for e in entries:
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
        return len(done)

    async def dlq_purge(self, entries: list[DlqEntry]) -> int:
        ids = [e.id for e in entries]
        if ids:
            await self._store.commit(w_dlq_delete(ids))
        self._dlq.remove(len(ids))
        return len(ids)
