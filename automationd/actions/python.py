"""python actions: ``async def fn(ctx)`` imported once from ``"package.module:function"``.

The function gets the ``ActionContext`` (``ctx.log`` is a bound structlog logger). What it
returns is the value (it must be JSON-able: the value is stored). ``RetryableError`` and
``FatalError`` pass through with their kinds; our own timeout is ``timeout``; any other
exception is a retryable failure described as ``"TypeName: message"``, because a bug in
one action must never reach, or stop, the engine.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
from collections.abc import Awaitable, Callable
from typing import Any

from automationd.actions.base import ActionContext, ActionResult, phase_result
from automationd.actions.deadline import Deadlines
from automationd.config.model import PythonAction
from automationd.errors import ActionError, ErrorKind
from automationd.strictjson import finite_path

PythonFn = Callable[[ActionContext], Awaitable[Any]]


def resolve_callable(spec: str) -> PythonFn:
    """Import ``"pkg.mod:fn"`` (``fn`` may be dotted, e.g. ``Class.method``).

    Raises ValueError with a message fit for a config error when the spec is malformed, the
    module cannot be imported, the attribute is missing, or it is not an ``async def``.
    """
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"callable {spec!r} must look like 'package.module:function'")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"callable {spec!r}: cannot import {module_name!r}: {exc}") from exc
    except Exception as exc:  # the module itself is broken: say how
        raise ValueError(
            f"callable {spec!r}: importing {module_name!r} failed: {type(exc).__name__}: {exc}"
        ) from exc
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError as exc:
            raise ValueError(f"callable {spec!r}: {module_name!r} has no {attr!r}") from exc
    if not inspect.iscoroutinefunction(obj):
        raise ValueError(f"callable {spec!r} is not an 'async def' function")
    fn: PythonFn = obj
    return fn


_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode


def _check_json(value: Any) -> None:
    """The value is stored as JSON: refuse what JSON cannot hold (NaN and infinities, lone
    surrogates, objects), naming the place, rather than failing the store later."""
    if value is None or type(value) in (int, bool):
        return
    try:
        _encode(value).encode("utf-8")
    except (TypeError, ValueError) as exc:  # UnicodeEncodeError is a ValueError
        where = finite_path(value, "value")
        problem = f"{where} is not a finite number" if where else str(exc)
        raise ActionError(
            f"python: returned a value that is not JSON-able: {problem}", kind=ErrorKind.FATAL
        ) from exc


class PythonRunner:
    """A python action, built once per job; awaited in its run's task, or for a fan-out the
    target's task under the run's TaskGroup, so the callable's ``asyncio.current_task()``,
    timeouts, TaskGroups and cancel scopes are that task's. Its deadline is an
    ``asyncio.Timeout`` expired by the job's ``Deadlines`` (one loop timer for all its
    attempts; actions/deadline.py says why)."""

    __slots__ = ("_deadlines", "_fn", "_name")

    def __init__(self, spec: PythonAction) -> None:
        self._fn: PythonFn = spec.fn if spec.fn is not None else resolve_callable(spec.callable)
        self._name = spec.callable
        self._deadlines: Deadlines | None = None

    async def __call__(self, ctx: ActionContext) -> ActionResult:
        deadlines = self._deadlines
        if deadlines is None or not deadlines.running():
            deadlines = self._deadlines = Deadlines()
        timer = asyncio.timeout(None)  # no timer of its own: ``deadlines`` expires it
        try:
            async with timer:
                watch = deadlines.watch(ctx.timeout, timer)
                try:
                    value = await self._fn(ctx)
                finally:
                    watch.done()
        except ActionError:
            raise
        except TimeoutError as exc:
            if timer.expired():
                raise ActionError(
                    f"python: {self._name} timed out after {ctx.timeout:g}s",
                    kind=ErrorKind.TIMEOUT,
                ) from exc
            raise ActionError(_describe(exc), kind=ErrorKind.RETRYABLE) from exc
        except (Exception, SystemExit) as exc:
            raise ActionError(_describe(exc), kind=ErrorKind.RETRYABLE) from exc
        _check_json(value)
        return phase_result(ctx.phase, value)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"
