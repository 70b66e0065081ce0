"""What one attempt may know: the ``ActionContext`` an action is called with (its ``ctx``).

Made once per attempt (engine/attempt.py ``open_attempt``). Its logger binds the run, the
attempt and the phase only on first use: most actions never log, and a bind per attempt
cost more than the rest of the context.
"""

from __future__ import annotations

from typing import Any, cast

from structlog.typing import FilteringBoundLogger

from automationd.actions.base import Action, ActionContext
from automationd.config.model import JobSpec
from automationd.engine.live import LiveRun, LiveTarget
from automationd.records import Phase
from automationd.store.api import Store
from automationd.store.rows import w_attempt_pgid


def attempt_context(
    store: Store,
    live: LiveRun,
    action: Action,
    n: int,
    phase: Phase,
    target: LiveTarget | None,
) -> ActionContext:
    """What attempt ``n`` may know: the action's ``ctx``."""
    job = live.job
    run_id = live.id
    on_spawn = None
    if getattr(action, "spawns", False):

        def on_spawn(pgid: int) -> None:
            store.post([w_attempt_pgid(run_id, n, pgid)])

    return ActionContext(
        job=job.name,
        run_id=run_id,
        attempt=n,
        phase=phase,
        target=target.value if target is not None else None,
        payload=live.payload,
        log=cast(FilteringBoundLogger, _LazyLog(job.log, run_id, n, phase)),
        service=live.spec.service,
        timeout=_timeout(live.spec, phase),
        idempotency_key=f"{run_id}/{target.idx if target is not None else 0}",
        on_spawn=on_spawn,
        on_http_response=job.gate.observe_http if job.gate is not None else None,
    )


class _LazyLog:
    """``ctx.log``: binds run, attempt and phase on first use, so actions that never log
    (most of them) never pay for a bind."""

    __slots__ = ("_base", "_bound", "_kw")

    def __init__(self, base: Any, run_id: str, attempt: int, phase: Phase) -> None:
        self._base = base
        self._bound: Any = None
        self._kw = (run_id, attempt, phase)

    def __getattr__(self, name: str) -> Any:
        if self._bound is None:
            run_id, attempt, phase = self._kw
            self._bound = self._base.bind(run_id=run_id, attempt=attempt, phase=phase.value)
        return getattr(self._bound, name)


def _timeout(spec: JobSpec, phase: Phase) -> float:
    action = {
        Phase.PERFORM: spec.action,
        Phase.CHECK: spec.check,
        Phase.VERIFY: spec.verify,
        Phase.UNDO: spec.undo,
    }[phase]
    timeout = getattr(action, "timeout", None)
    return float(timeout) if timeout is not None else float(spec.timeout)
