"""One contract, three action types: exec, http and python behave alike to the engine.

Each scenario is built per type by a harness (a real child process, a real HTTP server on
127.0.0.1, a real coroutine) and the same assertions run against all three.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import AsyncIterator
from typing import Any, Protocol

import pytest

from automationd.actions import exec as exec_action
from automationd.actions.base import Action, ActionContext, HttpClients
from automationd.actions.build import build_action
from automationd.config.model import ExecAction, HttpAction, PythonAction
from automationd.errors import ActionError, ErrorKind, FatalError, RetryableError
from automationd.records import Phase
from tests.support.actions import make_ctx
from tests.support.api_server import ApiServer, Reply

OK = {"ok": 1}


class Harness(Protocol):
    def succeed(self) -> Action: ...
    def retryable(self) -> Action: ...
    def fatal(self) -> Action: ...
    def hang(self) -> Action: ...
    def check(self, result: dict[str, Any] | None) -> Action: ...
    def check_skip(self) -> Action: ...


def _py(code: str) -> tuple[str, ...]:
    return (sys.executable, "-c", code)


class ExecHarness:
    def __init__(self, http: HttpClients) -> None:
        self.http = http

    def _build(self, code: str) -> Action:
        return build_action(ExecAction(argv=_py(code)), http=self.http)

    def succeed(self) -> Action:
        return self._build(f"print({json.dumps(json.dumps(OK))})")

    def retryable(self) -> Action:
        return self._build("raise SystemExit(75)")

    def fatal(self) -> Action:
        return self._build("raise SystemExit(3)")

    def hang(self) -> Action:
        return self._build("import time; time.sleep(30)")

    def check(self, result: dict[str, Any] | None) -> Action:
        text = json.dumps(result) if result is not None else "not json"
        return self._build(f"print({json.dumps(text)})")

    def check_skip(self) -> Action:
        return self._build("raise SystemExit(1)")


class HttpHarness:
    def __init__(self, http: HttpClients, api: ApiServer) -> None:
        self.http = http
        self.api = api
        self.n = 0

    def _build(self, *replies: Reply) -> Action:
        self.n += 1
        path = f"/p{self.n}"
        self.api.script(path, *replies)
        return build_action(HttpAction(url=self.api.url_for(path)), http=self.http)

    def succeed(self) -> Action:
        return self._build(Reply(200, json=OK))

    def retryable(self) -> Action:
        return self._build(Reply(503))

    def fatal(self) -> Action:
        return self._build(Reply(404))

    def hang(self) -> Action:
        return self._build(Reply(200, delay=30))

    def check(self, result: dict[str, Any] | None) -> Action:
        if result is None:
            return self._build(Reply(200, body="plain text"))
        return self._build(Reply(200, json=result))

    def check_skip(self) -> Action:
        return self._build(Reply(200, json={"perform": False}))


class PythonHarness:
    def __init__(self, http: HttpClients) -> None:
        self.http = http

    def _build(self, fn: Any) -> Action:
        return build_action(PythonAction(callable="tests:unused", fn=fn), http=self.http)

    def succeed(self) -> Action:
        async def fn(ctx: ActionContext) -> dict[str, int]:
            return dict(OK)

        return self._build(fn)

    def retryable(self) -> Action:
        async def fn(ctx: ActionContext) -> None:
            raise RetryableError("not yet")

        return self._build(fn)

    def fatal(self) -> Action:
        async def fn(ctx: ActionContext) -> None:
            raise FatalError("never")

        return self._build(fn)

    def hang(self) -> Action:
        async def fn(ctx: ActionContext) -> None:
            await asyncio.sleep(30)

        return self._build(fn)

    def check(self, result: dict[str, Any] | None) -> Action:
        async def fn(ctx: ActionContext) -> Any:
            return result

        return self._build(fn)

    def check_skip(self) -> Action:
        async def fn(ctx: ActionContext) -> dict[str, bool]:
            return {"perform": False}

        return self._build(fn)


@pytest.fixture(params=["exec", "http", "python"])
async def harness(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Harness]:
    """A harness for one action type, with its HTTP clients (and server) cleaned up."""
    monkeypatch.setattr(exec_action, "KILL_GRACE", 0.3)
    async with HttpClients() as http:
        if request.param == "http":
            async with ApiServer() as api:
                yield HttpHarness(http, api)
        elif request.param == "exec":
            yield ExecHarness(http)
        else:
            yield PythonHarness(http)


async def _run(action: Action, ctx: ActionContext) -> Any:
    async with asyncio.timeout(5):
        return await action(ctx)


async def test_success_value(harness: Harness) -> None:
    """A successful perform returns its JSON object as the value, with perform left true."""
    result = await _run(harness.succeed(), make_ctx())
    assert result.value == OK
    assert result.perform is True
    assert result.targets is None


@pytest.mark.parametrize(
    ("scenario", "kind"), [("retryable", ErrorKind.RETRYABLE), ("fatal", ErrorKind.FATAL)]
)
async def test_failures_raise_action_error_with_kind(
    harness: Harness, scenario: str, kind: ErrorKind
) -> None:
    """A retryable or fatal failure raises ActionError carrying that kind, nothing foreign."""
    with pytest.raises(ActionError) as info:
        await _run(getattr(harness, scenario)(), make_ctx())
    assert info.value.kind is kind
    assert info.value.message


async def test_timeout(harness: Harness) -> None:
    """An attempt that outlives ctx.timeout ends promptly with kind ``timeout``."""
    start = time.monotonic()
    with pytest.raises(ActionError) as info:
        await _run(harness.hang(), make_ctx(timeout=0.3))
    assert info.value.kind is ErrorKind.TIMEOUT
    assert time.monotonic() - start < 2.5


async def test_check_targets_and_payload(harness: Harness) -> None:
    """A check result's perform/targets/payload steer the run; other keys stay the value."""
    steer = {"perform": True, "targets": ["a", {"b": 2}], "payload": {"p": 1}, "note": "x"}
    result = await _run(harness.check(steer), make_ctx(phase=Phase.CHECK))
    assert result.perform is True
    assert result.targets == ("a", {"b": 2})
    assert result.payload == {"p": 1}
    assert result.value == {"note": "x"}


async def test_check_skip(harness: Harness) -> None:
    """A check can say "do not perform" (exec: exit 1; others: perform false)."""
    result = await _run(harness.check_skip(), make_ctx(phase=Phase.CHECK))
    assert result.perform is False


async def test_check_without_steering_performs(harness: Harness) -> None:
    """A check whose result is not an object performs with unchanged targets and payload."""
    result = await _run(harness.check(None), make_ctx(phase=Phase.CHECK))
    assert result.perform is True
    assert result.targets is None
    assert result.payload is None


async def test_check_malformed_targets_is_fatal(harness: Harness) -> None:
    """A check whose ``targets`` is not a list fails fatally: retrying cannot fix its shape."""
    with pytest.raises(ActionError) as info:
        await _run(harness.check({"targets": "a,b"}), make_ctx(phase=Phase.CHECK))
    assert info.value.kind is ErrorKind.FATAL
