"""A scripted "external API" on 127.0.0.1 for tests of http actions and rate limiting.

Usage::

    async with ApiServer() as api:                      # or the `api_server` fixture
        api.script("/items", Reply(503), Reply(200, json={"ok": True}))
        api.always("/health", Reply(204))
        url = api.url_for("/items")
        ... drive the action ...
        async with asyncio.timeout(5):
            reqs = await api.wait_for_requests(2, path="/items")
        assert reqs[1].headers["Idempotency-Key"] == ...

Replies for a path are served in order; when the queue is empty the path's ``always``
reply is used, and a path with neither answers 404 "unscripted". Every request is recorded
as a :class:`Received` with its ``time.monotonic()`` arrival time, so tests can measure the
spacing of retries. A reply with ``delay`` holds the response that long (or until the server
closes), for timeout tests.

The fixtures ``api_server_factory`` (call it for each server you need) and ``api_server``
(one server) close what they started. Expose them in a test module with
``pytest_plugins = ("tests.support.api_server",)`` or from a conftest.
"""

from __future__ import annotations

import asyncio
import contextlib
import json as jsonlib
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import pytest
from aiohttp import web


@dataclass(frozen=True, slots=True)
class Reply:
    """One scripted response. ``json`` (when not None) becomes the body as application/json."""

    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes | str = b""
    json: Any = None
    delay: float = 0.0

    @classmethod
    def of(cls, value: Reply | tuple[int, Mapping[str, str], bytes | str]) -> Reply:
        if isinstance(value, Reply):
            return value
        status, headers, body = value
        return cls(status=status, headers=dict(headers), body=body)


@dataclass(frozen=True, slots=True)
class Received:
    """One request as the server saw it."""

    at: float  # time.monotonic() on arrival
    method: str
    path: str
    query: Mapping[str, str]
    raw_path: str  # path and query exactly as sent (percent-encoding kept)
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        return jsonlib.loads(self.body)


class ApiServer:
    """An aiohttp server on 127.0.0.1 with an ephemeral port, answering from a script."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = 0
        self.requests: list[Received] = []
        self._queues: dict[str, deque[Reply]] = {}
        self._always: dict[str, Reply] = {}
        self._runner: web.AppRunner | None = None
        self._closing = asyncio.Event()
        self._arrived = asyncio.Condition()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def url_for(self, path: str) -> str:
        return self.url + path

    def script(
        self, path: str, *replies: Reply | tuple[int, Mapping[str, str], bytes | str]
    ) -> None:
        """Queue replies for ``path`` (any method), served once each, in order."""
        self._queues.setdefault(path, deque()).extend(Reply.of(r) for r in replies)

    def always(self, path: str, reply: Reply | tuple[int, Mapping[str, str], bytes | str]) -> None:
        """The reply for ``path`` whenever its queue is empty."""
        self._always[path] = Reply.of(reply)

    def received(self, path: str | None = None) -> list[Received]:
        return [r for r in self.requests if path is None or r.path == path]

    async def wait_for_requests(self, n: int, path: str | None = None) -> list[Received]:
        """Wait (callers add the deadline) until ``n`` requests for ``path`` arrived."""
        async with self._arrived:
            await self._arrived.wait_for(lambda: len(self.received(path)) >= n)
        return self.received(path)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.requests.append(
            Received(
                at=time.monotonic(),
                method=request.method,
                path=request.path,
                query=dict(request.query),
                raw_path=request.raw_path,
                headers=dict(request.headers),
                body=body,
            )
        )
        async with self._arrived:
            self._arrived.notify_all()
        queue = self._queues.get(request.path)
        reply = queue.popleft() if queue else self._always.get(request.path)
        if reply is None:
            return web.Response(status=404, text=f"unscripted: {request.path}")
        if reply.delay > 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(reply.delay):
                    await self._closing.wait()
        headers = dict(reply.headers)
        payload = reply.body.encode() if isinstance(reply.body, str) else reply.body
        if reply.json is not None:
            payload = jsonlib.dumps(reply.json).encode()
            headers.setdefault("Content-Type", "application/json")
        return web.Response(status=reply.status, headers=headers, body=payload)

    async def __aenter__(self) -> ApiServer:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        site = web.TCPSite(runner, self.host, 0)
        await site.start()
        self._runner = runner
        self.port = runner.addresses[0][1]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        self._closing.set()
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()


@pytest.fixture
async def api_server_factory() -> AsyncIterator[Callable[[], Awaitable[ApiServer]]]:
    """Start scripted API servers on demand; all are closed when the test ends."""
    servers: list[ApiServer] = []

    async def make() -> ApiServer:
        server = ApiServer()
        await server.__aenter__()
        servers.append(server)
        return server

    yield make
    for server in reversed(servers):
        await server.close()


@pytest.fixture
async def api_server(api_server_factory: Callable[[], Awaitable[ApiServer]]) -> ApiServer:
    """One scripted API server, closed when the test ends."""
    return await api_server_factory()
