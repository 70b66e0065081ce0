"""Manual triggers: idempotency keys, dry runs, and the durable answer.

Idempotency keys are scoped per job and handled by ``engine/once.py``: concurrent requests
with one key share one run, and a key from an earlier life is found in the database.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from functools import partial
from typing import Any

import structlog

from automationd.actions.base import ActionContext, build_action
from automationd.admin.protocol import RawJSON
from automationd.engine.dispatcher import Engine
from automationd.engine.jobs import JobRuntime
from automationd.engine.liverun import LiveRun
from automationd.engine.once import OncePerKey
from automationd.errors import ActionError, AdminError
from automationd.records import Phase, Run, Trigger
from automationd.store.db import Write
from automationd.store.runs import RunStore

Reply = Callable[[Any, BaseException | None], None]


class Intake:
    def __init__(self, engine: Engine, runs: RunStore) -> None:
        self.engine = engine
        self.runs = runs
        self._once: OncePerKey[Run] = OncePerKey()
        self._lives: list[LiveRun] = []  # this turn's plain triggers, launched together
        self._writes: list[Write] = []
        self._replies: list[tuple[Run, Reply]] = []

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
            run, fut = self.engine.create_run(job, trigger=trigger, payload=payload)
            await fut
            return run, False
        key = idempotency_key

        async def lookup() -> Run | None:
            return await self.runs.by_key(job.name, key)

        async def create() -> Run:
            run, durable = self.engine.create_run(
                job, trigger=trigger, payload=payload, idempotency_key=key
            )
            await durable
            return run

        return await self._once.get_or_create((job.name, key), lookup, create)

    def trigger_then(self, job: JobRuntime, reply: Reply, *, payload: Any = None) -> None:
        """Create a run now; ``reply(run_json, None)`` once it is durable, or ``reply(None,
        error)``. A callback rather than a coroutine or a future: the admin socket answers
        straight from the write's settlement, with no task and no future per trigger.

        The triggers of one loop turn are launched together, as one writer entry.
        """
        live, writes = self.engine.prepare_run(job, trigger=Trigger.MANUAL, payload=payload)
        self.engine.track(live)
        if not self._lives:
            asyncio.get_running_loop().call_soon(self._launch)
        self._lives.append(live)
        self._writes += writes
        self._replies.append((live.run, reply))

    def _launch(self) -> None:
        lives, writes, replies = self._lives, self._writes, self._replies
        self._lives, self._writes, self._replies = [], [], []
        try:
            self.engine.launch(lives, writes, partial(_answer, replies))
        except Exception as exc:  # the store refused them (closing): each trigger hears why
            for live in lives:
                self.engine.forget(live)
            _answer(replies, exc)

    async def dry_run(self, job: JobRuntime, payload: Any) -> dict[str, Any]:
        """Run only the check phase and say what would be performed; nothing is stored."""
        spec = job.spec
        targets = list(spec.targets) if spec.targets is not None else None
        if spec.check is None:
            return {"dry_run": True, "perform": True, "targets": targets, "payload": payload}
        action = build_action(spec.check, http=self.engine.http)

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
        try:
            res = await action(ctx)
        except ActionError as exc:
            raise AdminError("unavailable", f"check failed: {exc.kind}: {exc.message}") from exc
        return {
            "dry_run": True,
            "perform": res.perform,
            "targets": list(res.targets) if res.targets is not None else targets,
            "payload": res.payload if res.payload is not None else payload,
            "result": res.value,
        }


def _answer(replies: list[tuple[Run, Reply]], exc: BaseException | None) -> None:
    """Tell each trigger of a launched group: its run as stored (queued), or the error."""
    for run, reply in replies:
        if exc is None:
            reply(RawJSON(run.to_json_text()), None)
        else:
            reply(None, exc)
