"""An async NDJSON client for the admin socket, for tests and benchmarks.

async with AdminClient(path) as c:
    status = await c.call("status")            # raises AdminError(code, message) on ok=false
    raw = await c.request_raw(b'{"cmd":"x"}\\n')  # the response dict, whatever it says
    replies = await c.pipeline([("jobs.trigger", {"name": "a"})] * 1000)  # in order
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import Any

from automationd.admin.protocol import encode_request
from automationd.errors import AdminError

_READ_LIMIT = 64 << 20  # a runs.list of 1000 runs is large


class AdminClient:
    """One connection; requests may be pipelined with :meth:`pipeline`."""

    def __init__(self, path: Path | str, *, timeout: float = 5.0) -> None:
        self.path = str(path)
        self.timeout = timeout
        self._ids = itertools.count(1)
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def __aenter__(self) -> AdminClient:
        async with asyncio.timeout(self.timeout):
            self._reader, self._writer = await asyncio.open_unix_connection(
                self.path, limit=_READ_LIMIT
            )
        return self

    async def __aexit__(
        self,
        et: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._writer is not None:
            self._writer.close()
            try:
                async with asyncio.timeout(self.timeout):
                    await self._writer.wait_closed()
            except (OSError, TimeoutError):
                pass

    @property
    def reader(self) -> asyncio.StreamReader:
        assert self._reader is not None, "use 'async with AdminClient(path)'"
        return self._reader

    @property
    def writer(self) -> asyncio.StreamWriter:
        assert self._writer is not None, "use 'async with AdminClient(path)'"
        return self._writer

    async def send(self, data: bytes) -> None:
        """Write raw bytes (any framing, even none) and drain."""
        self.writer.write(data)
        async with asyncio.timeout(self.timeout):
            await self.writer.drain()

    async def read_response(self) -> dict[str, Any]:
        """The next response line as a dict; ``EOFError`` if the server closed."""
        async with asyncio.timeout(self.timeout):
            line = await self.reader.readline()
        if not line:
            raise EOFError("admin socket closed")
        obj: dict[str, Any] = json.loads(line)
        return obj

    async def request_raw(self, line: bytes) -> dict[str, Any]:
        """Send one raw line (``\\n`` added if missing) and return the response dict."""
        await self.send(line if line.endswith(b"\n") else line + b"\n")
        return await self.read_response()

    async def call(self, cmd: str, args: dict[str, Any] | None = None) -> Any:
        """Send ``cmd`` and return its ``result``; ``AdminError(code, message)`` on ok=false."""
        rid = next(self._ids)
        resp = await self.request_raw(encode_request(rid, cmd, args))
        if resp.get("id") != rid:
            raise AssertionError(f"response id {resp.get('id')!r} != request id {rid}")
        return _result(resp)

    async def pipeline(
        self, requests: Iterable[tuple[str, dict[str, Any]]]
    ) -> list[dict[str, Any]]:
        """Send all requests at once, then read one response per request, in order."""
        lines = [encode_request(next(self._ids), cmd, args) for cmd, args in requests]
        out: list[dict[str, Any]] = []
        # Write and read concurrently: the server stops reading while its in-flight window is
        # full, so a client that only reads after draining could deadlock on big pipelines.
        async with asyncio.timeout(self.timeout), asyncio.TaskGroup() as tg:
            tg.create_task(self.send(b"".join(lines)), name="admin-client:pipeline-write")
            for _ in lines:
                line = await self.reader.readline()
                if not line:
                    raise EOFError("admin socket closed")
                out.append(json.loads(line))
        return out


def _result(resp: dict[str, Any]) -> Any:
    if resp.get("ok"):
        return resp.get("result")
    err = resp.get("error") or {}
    raise AdminError(str(err.get("code", "internal")), str(err.get("message", "")))
