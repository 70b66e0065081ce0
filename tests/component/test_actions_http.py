"""http actions against a scripted server on 127.0.0.1: statuses, limits, safety, substitution."""

from __future__ import annotations

import asyncio
import datetime as dt
import email.utils
import gzip
import socket
from collections.abc import AsyncIterator, Mapping
from typing import Any

import pytest

from automationd.actions.base import ActionContext, ActionResult, HttpClients
from automationd.actions.build import build_action
from automationd.actions.http import BODY_CAP
from automationd.config.model import HttpAction
from automationd.errors import ActionError, ErrorKind
from automationd.records import Phase
from tests.support.actions import make_ctx
from tests.support.api_server import ApiServer, Reply

NOW = 1_750_000_000.0


class FixedClock:
    """Wall time frozen at NOW (only ``time()`` is read by http actions)."""

    def now(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(NOW, dt.UTC)

    def time(self) -> float:
        return NOW

    def monotonic(self) -> float:
        return 0.0

    async def sleep_until(self, deadline: float) -> None:
        raise NotImplementedError


@pytest.fixture
async def api() -> AsyncIterator[ApiServer]:
    async with ApiServer() as server:
        yield server


@pytest.fixture
async def http() -> AsyncIterator[HttpClients]:
    async with HttpClients() as clients:
        yield clients


async def _call(http: HttpClients, ctx: ActionContext | None = None, **spec: Any) -> ActionResult:
    action = build_action(HttpAction(**spec), http=http, clock=FixedClock())
    async with asyncio.timeout(5):
        return await action(ctx or make_ctx())


async def _fail(http: HttpClients, ctx: ActionContext | None = None, **spec: Any) -> ActionError:
    with pytest.raises(ActionError) as info:
        await _call(http, ctx, **spec)
    return info.value


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (500, ErrorKind.RETRYABLE),
        (502, ErrorKind.RETRYABLE),
        (503, ErrorKind.RETRYABLE),
        (408, ErrorKind.RETRYABLE),
        (404, ErrorKind.FATAL),
        (400, ErrorKind.FATAL),
        (401, ErrorKind.FATAL),
    ],
)
async def test_status_kinds(
    http: HttpClients, api: ApiServer, status: int, kind: ErrorKind
) -> None:
    """5xx and 408 are retryable, other 4xx fatal; the body is quoted and kept as output."""
    api.script("/x", Reply(status, body="the reason"))
    err = await _fail(http, url=api.url_for("/x"))
    assert err.kind is kind
    assert f"answered {status}" in err.message and err.message.endswith("the reason")
    assert dict(err.output)["stdout"] == "the reason"


async def test_expect_adds_success_statuses(http: HttpClients, api: ApiServer) -> None:
    """A status listed in ``expect`` counts as success."""
    api.script("/x", Reply(404, json={"gone": True}))
    result = await _call(http, url=api.url_for("/x"), expect=(404,))
    assert result.value == {"gone": True}


async def test_429_retry_after_seconds(http: HttpClients, api: ApiServer) -> None:
    """429 with ``Retry-After: 2`` is rate_limited with retry_after 2."""
    api.script("/x", Reply(429, headers={"Retry-After": "2"}))
    err = await _fail(http, url=api.url_for("/x"))
    assert err.kind is ErrorKind.RATE_LIMITED
    assert err.retry_after == pytest.approx(2.0)


async def test_429_retry_after_http_date(http: HttpClients, api: ApiServer) -> None:
    """429 with an HTTP-date Retry-After waits until that date (read against the clock)."""
    when = email.utils.formatdate(NOW + 90, usegmt=True)
    api.script("/x", Reply(429, headers={"Retry-After": when}))
    err = await _fail(http, url=api.url_for("/x"))
    assert err.kind is ErrorKind.RATE_LIMITED
    assert err.retry_after == pytest.approx(90.0)


async def test_429_without_retry_after(http: HttpClients, api: ApiServer) -> None:
    """429 without (or with an unreadable) Retry-After leaves retry_after None."""
    api.script("/x", Reply(429), Reply(429, headers={"Retry-After": "later"}))
    for _ in range(2):
        err = await _fail(http, url=api.url_for("/x"))
        assert err.kind is ErrorKind.RATE_LIMITED
        assert err.retry_after is None


async def test_redirect_not_followed(http: HttpClients, api: ApiServer) -> None:
    """A 3xx is fatal with a clear message, and the new location is not requested."""
    api.script("/old", Reply(302, headers={"Location": "/new"}))
    api.always("/new", Reply(200))
    err = await _fail(http, url=api.url_for("/old"))
    assert err.kind is ErrorKind.FATAL
    assert "redirect to '/new'" in err.message and "follow_redirects" in err.message
    assert api.received("/new") == []


async def test_redirect_followed_when_asked(http: HttpClients, api: ApiServer) -> None:
    """With follow_redirects the final answer counts, and every response is reported."""
    api.script("/old", Reply(301, headers={"Location": "/new"}))
    api.script("/new", Reply(200, json={"at": "new"}))
    seen: list[int] = []
    ctx = make_ctx(on_http_response=lambda status, headers: seen.append(status))
    result = await _call(http, ctx, url=api.url_for("/old"), follow_redirects=True)
    assert result.value == {"at": "new"}
    assert seen == [301, 200]


async def test_body_cap_counts_decompressed_bytes(http: HttpClients, api: ApiServer) -> None:
    """A small gzip body that inflates past 1 MiB is cut at 1 MiB of decoded text."""
    compressed = gzip.compress(b"a" * (3 * BODY_CAP))
    assert len(compressed) < 100_000
    api.script(
        "/big",
        Reply(
            200, headers={"Content-Encoding": "gzip", "Content-Type": "text/plain"}, body=compressed
        ),
    )
    result = await _call(http, url=api.url_for("/big"))
    assert result.value == "a" * BODY_CAP
    out = dict(result.output)
    assert "cut at" in out["stderr"]
    assert len(out["stdout"]) <= 64 * 1024


async def test_json_and_text_bodies(http: HttpClients, api: ApiServer) -> None:
    """A JSON content type gives the parsed body; other types give text; empty gives None."""
    api.script(
        "/x",
        Reply(200, json=[1, 2]),
        Reply(200, headers={"Content-Type": "application/problem+json"}, body='{"a": 1}'),
        Reply(200, headers={"Content-Type": "text/plain"}, body="hello"),
        Reply(204),
        Reply(200, headers={"Content-Type": "application/json"}, body="{not json"),
    )
    values = [(await _call(http, url=api.url_for("/x"))).value for _ in range(5)]
    assert values == [[1, 2], {"a": 1}, "hello", None, "{not json"]


async def test_crlf_in_substituted_header_is_refused(http: HttpClients, api: ApiServer) -> None:
    """A header value that would carry CR/LF after substitution is fatal and nothing is sent."""
    api.always("/x", Reply(200))
    ctx = make_ctx(target="a\r\nX-Evil: 1")
    err = await _fail(http, ctx, url=api.url_for("/x"), headers={"X-Sku": "${target}"})
    assert err.kind is ErrorKind.FATAL
    assert "line break" in err.message
    assert api.requests == []


async def test_idempotency_key_sent(http: HttpClients, api: ApiServer) -> None:
    """Every request carries the attempt's Idempotency-Key, unless the job sets its own."""
    api.always("/x", Reply(200))
    await _call(http, make_ctx(idempotency_key="run-9/2"), method="POST", url=api.url_for("/x"))
    await _call(
        http,
        make_ctx(idempotency_key="run-9/2", target={"sku": "s1"}),
        method="POST",
        url=api.url_for("/x"),
        headers={"Idempotency-Key": "${run_id}-${target.sku}"},
    )
    keys = [r.headers["Idempotency-Key"] for r in api.received("/x")]
    assert keys == ["run-9/2", "run-1-s1"]


async def test_substitution(http: HttpClients, api: ApiServer) -> None:
    """url (percent-encoded), header values and json string values are substituted."""
    api.always("/items/A/1 b?x", Reply(200))  # the server matches the decoded path
    ctx = make_ctx(target={"sku": "A/1 b?x"}, payload={"region": "eu", "n": 2}, job="sync")
    await _call(
        http,
        ctx,
        method="PUT",
        url=api.url + "/items/${target.sku}?job=${job}",
        headers={"X-Region": "${payload.region}"},
        json={"sku": "${target.sku}", "meta": ["${run_id}", 5, {"n": "${payload.n}"}]},
    )
    (req,) = api.requests
    assert req.method == "PUT"
    assert req.raw_path == "/items/A%2F1%20b%3Fx?job=sync"
    assert req.headers["X-Region"] == "eu"
    assert req.json() == {"sku": "A/1 b?x", "meta": ["run-1", 5, {"n": "2"}]}


async def test_missing_template_field_is_fatal(http: HttpClients, api: ApiServer) -> None:
    """A reference to a field the target lacks fails fatally before any request."""
    err = await _fail(http, make_ctx(target={"id": 1}), url=api.url + "/items/${target.sku}")
    assert err.kind is ErrorKind.FATAL
    assert "${target.sku}" in err.message
    assert api.requests == []


async def test_connect_error_is_retryable(http: HttpClients) -> None:
    """A refused connection is a retryable failure, converted from aiohttp's exception."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    err = await _fail(http, url=f"http://127.0.0.1:{port}/x")
    assert err.kind is ErrorKind.RETRYABLE
    assert err.__cause__ is not None


async def test_on_http_response_sees_status_and_headers(http: HttpClients, api: ApiServer) -> None:
    """Every response's status and headers reach ctx.on_http_response, failures included."""
    api.script("/x", Reply(503, headers={"X-RateLimit-Remaining": "7"}))
    seen: list[tuple[int, Mapping[str, str]]] = []
    ctx = make_ctx(on_http_response=lambda status, headers: seen.append((status, headers)))
    await _fail(http, ctx, url=api.url_for("/x"))
    assert seen[0][0] == 503 and seen[0][1]["X-RateLimit-Remaining"] == "7"


async def test_check_phase_reads_json(http: HttpClients, api: ApiServer) -> None:
    """In the check phase a JSON body steers the run like any other action's result."""
    api.script("/c", Reply(200, json={"perform": True, "targets": [1, 2], "since": "t"}))
    result = await _call(http, make_ctx(phase=Phase.CHECK), url=api.url_for("/c"))
    assert result.targets == (1, 2) and result.value == {"since": "t"}


async def test_one_session_per_service() -> None:
    """HttpClients keeps one session per service name and closes them all on exit."""
    async with asyncio.timeout(5):
        async with HttpClients() as clients:
            a, b, none = clients.session("a"), clients.session("b"), clients.session(None)
            assert clients.session("a") is a
            assert len({id(a), id(b), id(none)}) == 3
        assert a.closed and b.closed and none.closed
        with pytest.raises(RuntimeError):
            clients.session("a")
