"""Helpers for action tests: a context factory and a process-liveness probe."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import structlog

from automationd.actions.base import ActionContext
from automationd.records import Phase


def make_ctx(
    *,
    phase: Phase = Phase.PERFORM,
    target: Any = None,
    payload: Any = None,
    timeout: float = 5.0,
    job: str = "job-1",
    run_id: str = "run-1",
    attempt: int = 1,
    service: str | None = None,
    idempotency_key: str = "run-1/0",
    on_spawn: Callable[[int], None] | None = None,
    on_http_response: Callable[[int, Mapping[str, str]], None] | None = None,
) -> ActionContext:
    """An ActionContext with test defaults; override what the test is about."""
    return ActionContext(
        job=job,
        run_id=run_id,
        attempt=attempt,
        phase=phase,
        target=target,
        payload=payload,
        log=structlog.get_logger("test").bind(job=job, run_id=run_id),
        service=service,
        timeout=timeout,
        idempotency_key=idempotency_key,
        on_spawn=on_spawn,
        on_http_response=on_http_response,
    )


def alive(pid: int) -> bool:
    """True while ``pid`` is a live process (a zombie awaiting its reaper counts as dead)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


async def wait_dead(pid: int, within: float = 2.0) -> bool:
    """True once ``pid`` is dead; False if it still lives after ``within`` seconds.

    A killed process needs a moment to exit and be reaped by init, and a process that is
    not our child offers no event to wait on, hence the short poll.
    """
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(within):
            while alive(pid):  # noqa: ASYNC110 - not our child: no event to wait on
                await asyncio.sleep(0.01)
    return not alive(pid)
