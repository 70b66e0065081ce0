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
from collections.abc import Awaitable, Callable, Coroutine, Generator
from typing import Any, cast

from automationd.actions.base import ActionContext, ActionResult, phase_result
from automationd.config.model import PythonAction
from automationd.errors import ActionError, ErrorKind

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


def _check_json(value: Any) -> None:
    if value is None or type(value) in (str, int, float, bool):
        return
    try:
        json.dumps(value)
    except (TypeError, ValueError) as exc:
        raise ActionError(
            f"python: returned a value that is not JSON-able: {exc}", kind=ErrorKind.FATAL
        ) from exc


class PythonRunner:
    """A python action, built once per job."""

    __slots__ = ("_fn", "_name")

    def __init__(self, spec: PythonAction) -> None:
        self._fn: PythonFn = spec.fn if spec.fn is not None else resolve_callable(spec.callable)
        self._name = spec.callable

    async def __call__(self, ctx: ActionContext) -> ActionResult:
        out = self.begin(ctx)
        return out if isinstance(out, ActionResult) else await out

    def begin(self, ctx: ActionContext) -> ActionResult | Awaitable[ActionResult]:
        """Step the callable once: its result if it finished without waiting (no timer, no
        task needed), else an awaitable for the rest. Raises ``ActionError`` if it failed.

        The engine's inline path (engine/inline.py) calls this outside any task.
        """
        coro = cast(Coroutine[Any, Any, Any], self._fn(ctx))  # resolve_callable: async def
        try:
            first = coro.send(None)
        except StopIteration as stop:  # finished without ever waiting
            value = stop.value
        except ActionError:
            raise
        except (Exception, SystemExit) as exc:
            raise ActionError(_describe(exc), kind=ErrorKind.RETRYABLE) from exc
        else:
            return _Rest(self, ctx, coro, first)
        _check_json(value)
        return phase_result(ctx.phase, value)

    async def _complete(self, ctx: ActionContext, coro: Any, first: Any) -> ActionResult:
        value = await self._finish(ctx, coro, first)
        _check_json(value)
        return phase_result(ctx.phase, value)

    async def _finish(self, ctx: ActionContext, coro: Any, first: Any) -> Any:
        """The rest of a callable that suspended, under the attempt's timeout."""
        timer = asyncio.timeout(ctx.timeout)
        try:
            async with timer:
                return await _Resumed(coro, first)
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


class _Rest:
    """The rest of a callable that suspended, awaited later by the attempt's task.

    A plain object rather than a coroutine: if the run is dropped before its task awaits
    this (cancelled, or the daemon stops), there is no never-awaited coroutine to warn about.
    """

    __slots__ = ("_coro", "_ctx", "_first", "_runner")

    def __init__(self, runner: PythonRunner, ctx: ActionContext, coro: Any, first: Any) -> None:
        self._runner, self._ctx, self._coro, self._first = runner, ctx, coro, first

    def __await__(self) -> Generator[Any, Any, ActionResult]:
        return self._runner._complete(self._ctx, self._coro, self._first).__await__()


class _Resumed:
    """Await a coroutine that was already stepped once (by ``send(None)``).

    Why: most python actions finish without suspending; stepping them by hand first means
    those never pay for a timeout timer. One that did suspend yielded a future to us; this
    re-yields it to the task and then drives the coroutine exactly as ``await`` would
    (values and exceptions, cancellation included, go into the coroutine).
    """

    __slots__ = ("_coro", "_first")

    def __init__(self, coro: Any, first: Any) -> None:
        self._coro = coro
        self._first = first

    def __await__(self) -> Generator[Any, Any, Any]:
        coro, pending = self._coro, self._first
        while True:
            try:
                sent = yield pending
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:
                try:
                    pending = coro.throw(exc)
                except StopIteration as stop:
                    return stop.value
            else:
                try:
                    pending = coro.send(sent)
                except StopIteration as stop:
                    return stop.value


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"
