"""python actions: resolving "pkg.mod:fn", awaiting it, and mapping its exceptions to kinds."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from structlog.testing import capture_logs

from automationd import FatalError, RetryableError
from automationd.actions.base import ActionContext, ActionResult, HttpClients
from automationd.actions.build import build_action
from automationd.actions.python import resolve_callable
from automationd.config.model import PythonAction
from automationd.errors import ActionError, ErrorKind
from automationd.records import Phase
from tests.support.actions import make_ctx

MODULE = "tests.component.test_actions_python"

# --- callables the tests resolve by name -------------------------------------------------


async def echo(ctx: ActionContext) -> dict[str, Any]:
    ctx.log.info("echo.called", target=ctx.target)
    return {
        "job": ctx.job,
        "run_id": ctx.run_id,
        "attempt": ctx.attempt,
        "phase": ctx.phase.value,
        "target": ctx.target,
        "payload": ctx.payload,
    }


async def flaky(ctx: ActionContext) -> dict[str, bool]:
    if ctx.attempt < 3:
        raise RetryableError(f"attempt {ctx.attempt} too early")
    return {"ok": True}


async def throttled(ctx: ActionContext) -> None:
    raise RetryableError("slow down", retry_after=3.0)


async def refuses(ctx: ActionContext) -> None:
    raise FatalError("bad input")


async def buggy(ctx: ActionContext) -> None:
    raise KeyError("sku")


async def own_timeout(ctx: ActionContext) -> None:
    async with asyncio.timeout(0.01):
        await asyncio.sleep(1)


async def exits(ctx: ActionContext) -> None:
    raise SystemExit(3)


async def returns_set(ctx: ActionContext) -> set[int]:
    return {1}


async def returns_list(ctx: ActionContext) -> list[int]:
    return [1, 2]


def not_async(ctx: ActionContext) -> None:
    return None


class Holder:
    @staticmethod
    async def method(ctx: ActionContext) -> str:
        return "held"


# --- tests ---------------------------------------------------------------------------------


@pytest.fixture
async def http() -> AsyncIterator[HttpClients]:
    async with HttpClients() as clients:
        yield clients


async def _call(http: HttpClients, name: str, ctx: ActionContext | None = None) -> ActionResult:
    action = build_action(PythonAction(callable=f"{MODULE}:{name}"), http=http)
    async with asyncio.timeout(5):
        return await action(ctx or make_ctx())


async def _fail(http: HttpClients, name: str, ctx: ActionContext | None = None) -> ActionError:
    with pytest.raises(ActionError) as info:
        await _call(http, name, ctx)
    return info.value


def test_resolve_callable() -> None:
    """A "pkg.mod:fn" spec resolves to the async function, dotted attributes included."""
    assert resolve_callable(f"{MODULE}:echo") is echo
    assert resolve_callable(f"{MODULE}:Holder.method") is Holder.method


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ("no_colon_here", "must look like"),
        (f"{MODULE}:", "must look like"),
        ("automationd_no_such_module:fn", "cannot import"),
        (f"{MODULE}:missing", "has no 'missing'"),
        (f"{MODULE}:Holder.nothing", "has no 'Holder.nothing'"),
        (f"{MODULE}:not_async", "not an 'async def'"),
        (f"{MODULE}:MODULE", "not an 'async def'"),
    ],
)
def test_resolve_callable_errors(spec: str, problem: str) -> None:
    """A bad spec, missing module or attribute, or a sync function is a clear ValueError."""
    with pytest.raises(ValueError, match=problem) as info:
        resolve_callable(spec)
    assert spec in str(info.value)


async def test_context_fields_and_logger(http: HttpClients) -> None:
    """The function sees job, run_id, attempt, phase, target, payload and a bound ctx.log."""
    ctx = make_ctx(target={"sku": 1}, payload={"p": 2}, attempt=2, phase=Phase.VERIFY)
    with capture_logs() as logs:
        result = await _call(http, "echo", ctx)
    assert result.value == {
        "job": "job-1",
        "run_id": "run-1",
        "attempt": 2,
        "phase": "verify",
        "target": {"sku": 1},
        "payload": {"p": 2},
    }
    assert {"event": "echo.called", "target": {"sku": 1}}.items() <= logs[0].items()


async def test_flaky_then_ok(http: HttpClients) -> None:
    """RetryableError passes through as retryable until the function succeeds."""
    for attempt in (1, 2):
        err = await _fail(http, "flaky", make_ctx(attempt=attempt))
        assert err.kind is ErrorKind.RETRYABLE
        assert err.message == f"attempt {attempt} too early"
    assert (await _call(http, "flaky", make_ctx(attempt=3))).value == {"ok": True}


async def test_retry_after_is_rate_limited(http: HttpClients) -> None:
    """RetryableError(retry_after=...) becomes rate_limited with that retry_after."""
    err = await _fail(http, "throttled")
    assert err.kind is ErrorKind.RATE_LIMITED
    assert err.retry_after == 3.0


async def test_fatal_passes_through(http: HttpClients) -> None:
    """FatalError keeps its kind and message."""
    err = await _fail(http, "refuses")
    assert err.kind is ErrorKind.FATAL and err.message == "bad input"


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("buggy", "KeyError: 'sku'"),
        ("own_timeout", "TimeoutError: "),
        ("exits", "SystemExit: 3"),
    ],
)
async def test_other_exceptions_are_retryable(http: HttpClients, name: str, message: str) -> None:
    """Any other exception (even the function's own timeout) is retryable, named by type."""
    err = await _fail(http, name)
    assert err.kind is ErrorKind.RETRYABLE
    assert err.message == message
    assert err.__cause__ is not None


async def test_non_json_value_is_fatal(http: HttpClients) -> None:
    """A return value that cannot be stored as JSON is a fatal failure."""
    err = await _fail(http, "returns_set")
    assert err.kind is ErrorKind.FATAL and "JSON" in err.message


async def test_non_dict_json_value_kept(http: HttpClients) -> None:
    """A non-dict JSON-able return value is kept as the value."""
    assert (await _call(http, "returns_list")).value == [1, 2]


async def test_resolved_fn_is_used_without_import(http: HttpClients) -> None:
    """When the loader already resolved ``fn``, the callable string is not imported again."""
    spec = PythonAction(callable="automationd_no_such_module:fn", fn=Holder.method)
    async with asyncio.timeout(5):
        result = await build_action(spec, http=http)(make_ctx())
    assert result.value == "held"


def test_missing_callable_fails_at_build() -> None:
    """Building an action whose callable cannot be resolved raises ValueError at once."""
    with pytest.raises(ValueError, match="has no 'missing'"):
        build_action(PythonAction(callable=f"{MODULE}:missing"), http=HttpClients())
