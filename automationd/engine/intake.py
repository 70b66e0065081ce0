"""Manual triggers: the hot plain trigger, idempotency keys, dry runs.

A plain trigger answers from its write's settlement: a callback, no task and no future per
trigger (the writer puts every trigger of a loop turn in one batch anyway).

Idempotency keys are scoped per job and handled by ``engine/once.py``: concurrent requests
with one key share one run, and a key from an earlier life is found in the store. A repeated
key is answered with the run as it is *now* (from memory while it lives, else from the
store), not as it was created.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable
from functools import partial
from typing import Any

import structlog

from automationd.actions.base import Action, ActionContext, ActionResult, HttpClients
from automationd.actions.build import build_action
from automationd.admin.protocol import RawJSON
from automationd.engine.jobs import JobRuntime
from automationd.engine.launcher import Launcher
from automationd.engine.live import LiveRun
from automationd.engine.once import OncePerKey
from automationd.errors import ActionError, AdminError
from automationd.records import Phase, Run, Trigger
from automationd.store.api import Store

Reply = Callable[[Any, BaseException | None], None]


class Intake:
    def __init__(self, launcher: Launcher, store: Store, http: HttpClients) -> None:
        self._launcher = launcher
        self._store = store
        self._http = http
        self._once: OncePerKey[str] = OncePerKey()

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

        run_id, existing = await self._once.get_or_create((job.name, key), lookup, create)
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

    async def dry_run(self, job: JobRuntime, payload: Any) -> dict[str, Any]:
        """Run only the check phase, in a task of its own, and say what would be performed;
        nothing is stored."""
        spec = job.spec
        targets = list(spec.targets) if spec.targets is not None else None
        if spec.check is None:
            return {"dry_run": True, "perform": True, "targets": targets, "payload": payload}
        action = build_action(spec.check, http=self._http)
        ctx = ActionContext(
            job=job.name,
            run_id="dry-run",
            attempt=1,
            phase=Phase.CHECK,
            target=None,
            payload=payload,
            log=structlog.get_logger("automationd.dry_run").bind(job=job.name),
            service=spec.service,
            timeout=getattr(spec.check, "timeout", None) or spec.timeout,
            idempotency_key="dry-run",
        )
        # User code never runs in the admin connection's task: the check gets a task and a
        # context of its own (cancelled with the request if the client goes away).
        async with asyncio.TaskGroup() as tg:
            task = tg.create_task(
                _attempt(action, ctx), name=f"dry-run:{job.name}", context=contextvars.Context()
            )
        res = task.result()
        if isinstance(res, ActionError):
            raise AdminError("unavailable", f"check failed: {res.kind}: {res.message}") from res
        return {
            "dry_run": True,
            "perform": res.perform,
            "targets": list(res.targets) if res.targets is not None else targets,
            "payload": res.payload if res.payload is not None else payload,
            "result": res.value,
        }


async def _attempt(action: Action, ctx: ActionContext) -> ActionResult | ActionError:
    """One call of ``action``, its failure returned (a task's error would end its group)."""
    try:
        return await action(ctx)
    except ActionError as exc:
        return exc


def _answer(live: LiveRun, reply: Reply, exc: BaseException | None) -> None:
    """Tell a trigger its run as created (queued, or running with attempt 1: its task has
    not taken a step yet), or the error."""
    if exc is None:
        reply(RawJSON(live.snapshot().to_json_text()), None)
    else:
        reply(None, exc)
