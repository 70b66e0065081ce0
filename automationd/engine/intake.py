"""Manual triggers: the hot plain trigger, idempotency keys, previews and apply.

A plain trigger answers from its write's settlement: a callback, no task and no future per
trigger (the writer puts every trigger of a loop turn in one batch anyway).

Idempotency keys are scoped per job and handled by ``engine/once.py``: concurrent requests
with one key share one run, and a key from an earlier life is found in the store. A repeated
key is answered with the run as it is *now* (from memory while it lives, else from the
store), not as it was created.

A dry run is a stored ``preview`` run (SPEC §7.2); its answer waits until it has planned, and
an apply's until it has decided, so both answer what the operator asked for — up to
``ANSWER_WAIT``, below the CLI's own timeout: a check slower than that is answered as it is.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from functools import partial
from typing import Any

from automationd.admin.protocol import RawJSON
from automationd.core.plan import plan_from_json
from automationd.core.runstate import RunState
from automationd.engine.jobs import JobRuntime, JobTable
from automationd.engine.launcher import Launcher
from automationd.engine.live import LiveRun
from automationd.engine.once import OncePerKey
from automationd.engine.report import Report
from automationd.errors import StoreError, conflict, not_found
from automationd.records import Run, Trigger
from automationd.store.api import Store

Reply = Callable[[Any, BaseException | None], None]
ANSWER_WAIT = 20.0  # seconds a preview/apply/rollback answer waits for its outcome


class Intake:
    def __init__(self, launcher: Launcher, store: Store, report: Report, jobs: JobTable) -> None:
        self._launcher = launcher
        self._store = store
        self._report = report
        self._jobs = jobs
        self._once: OncePerKey[str] = OncePerKey()
        self._applies: OncePerKey[str] = OncePerKey()

    def trigger_then(self, job: JobRuntime, reply: Reply, *, payload: Any = None) -> None:
        """Create a run now; ``reply(run_json, None)`` once it is durable, or ``reply(None,
        error)``."""
        live = self._launcher.prepare(job, trigger=Trigger.MANUAL, payload=payload)
        try:
            self._launcher.launch([live], then=partial(_answer, live, reply))
        except Exception as exc:  # the store refused it (closing): the trigger hears why
            reply(None, exc)

    async def trigger(
        self,
        job: JobRuntime,
        *,
        payload: Any = None,
        idempotency_key: str | None = None,
        trigger: Trigger = Trigger.MANUAL,
    ) -> tuple[Run, bool]:
        """Create a run and return it once durable; ``(run, True)`` for a key seen before."""
        if idempotency_key is None:
            return await self._create(job, trigger, payload, None), False
        key = idempotency_key

        async def lookup() -> str | None:
            old = await self._store.run_by_key(job.name, key)
            return None if old is None else old.id

        async def create() -> str:
            return (await self._create(job, trigger, payload, key)).id

        try:
            run_id, existing = await self._once.get_or_create((job.name, key), lookup, create)
        except StoreError as exc:
            # another daemon of the fleet stored this key first (store/pg/committer.py)
            old = await self._store.run_by_key(job.name, key) if exc.kind == "duplicate" else None
            if old is None:
                raise
            run_id, existing = old.id, True
        run = await self.current(run_id)
        if run is None:  # pruned by retention meanwhile: the key is free again
            return await self._create(job, trigger, payload, key), False
        return run, existing

    async def _create(
        self, job: JobRuntime, trigger: Trigger, payload: Any, key: str | None
    ) -> Run:
        """A new run, durable on return; answered as it was created."""
        live = self._launcher.prepare(job, trigger=trigger, payload=payload, idempotency_key=key)
        return (await self._launcher.start([live]))[0]

    async def current(self, run_id: str) -> Run | None:
        """The run as it is now: from memory while it lives, else as stored."""
        live = self._launcher.live.get(run_id)
        if live is not None:
            return live.snapshot()
        return await self._store.run(run_id)

    # -- previews and apply (SPEC §7.2; what their runs do: engine/plan.py) -----------------
    async def preview(
        self, job: JobRuntime, *, payload: Any = None, idempotency_key: str | None = None
    ) -> tuple[Run, bool]:
        """A stored ``preview`` run, answered once it has planned (or after ``ANSWER_WAIT``,
        as it is then); ``(run, True)`` for an idempotency key seen before."""
        run, existing = await self.trigger(
            job, payload=payload, idempotency_key=idempotency_key, trigger=Trigger.PREVIEW
        )
        if existing:
            return run, True
        live = self._launcher.live.get(run.id)
        if live is not None:
            await _until(live.ended())
        return await self._settled(run), False

    async def apply(self, preview_id: str, name: str | None) -> tuple[Run, bool]:
        """The ``apply`` run of a preview: made once (``(run, True)`` ever after, also across
        restarts), answered once it has decided whether the preview still holds."""

        async def lookup() -> str | None:
            old = await self._store.apply_of(preview_id)
            return None if old is None else old.id

        async def create() -> str:
            return await self._create_apply(preview_id, name)

        run_id, existing = await self._applies.get_or_create(preview_id, lookup, create)
        run = await self.current(run_id)
        if run is None:
            raise not_found(f"the apply run {run_id} of preview {preview_id} was pruned")
        if existing:
            return run, True
        live = self._launcher.live.get(run_id)
        if live is not None and live.decided is not None:
            await _until(live.decided)
        return await self._settled(run), False

    async def _create_apply(self, preview_id: str, name: str | None) -> str:
        found = await self._store.run(preview_id)
        if found is None:
            raise not_found(f"no run with id {preview_id!r}")
        if found.trigger is not Trigger.PREVIEW:
            raise conflict(f"run {preview_id} is not a preview (trigger {found.trigger.value})")
        if name is not None and name != found.job:
            raise conflict(f"run {preview_id} is a preview of job {found.job!r}, not {name!r}")
        plan = plan_from_json(found.plan)
        if found.state is not RunState.PREVIEWED or plan is None:
            raise conflict(
                f"preview {preview_id} is {found.state.value}; only a previewed run is applied"
            )
        job = self._jobs.get(found.job)
        if job is None:
            raise not_found(f"job {found.job!r} of preview {preview_id} no longer exists")
        live = self._launcher.prepare(
            job,
            trigger=Trigger.APPLY,
            payload=found.payload,
            origin=found.id,
            depth=found.depth,
            undecided=True,
        )
        live.basis = (plan, found.finished_at or found.created_at, found.result)
        live.decided = asyncio.get_running_loop().create_future()
        await self._launcher.start([live])
        return live.id

    async def _settled(self, run: Run) -> Run:
        """The run as it is now, its latest change durable (an end is stored after it is
        made: engine/report.py)."""
        await self._report.settle()
        return await self.current(run.id) or run


async def _until(fut: asyncio.Future[None]) -> None:
    """Wait for ``fut`` up to ``ANSWER_WAIT`` (then the answer is the run as it is)."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(ANSWER_WAIT):
            await asyncio.shield(fut)


def _answer(live: LiveRun, reply: Reply, exc: BaseException | None) -> None:
    """Tell a trigger its run as created (queued, or running with attempt 1: its task has
    not taken a step yet), or the error."""
    if exc is None:
        reply(RawJSON(live.to_json_text()), None)
    else:
        reply(None, exc)
