"""A stand-in for systemd's notification socket, for tests that check sd_notify traffic.

Usage (in a test module; the fixture below can also be exposed repo-wide by listing
``tests.support.notify`` in the root conftest's ``pytest_plugins``)::

    async with NotifyReceiver(str(short_tmp / "notify")) as rx:   # or NotifyReceiver("@name")
        env = {"NOTIFY_SOCKET": rx.address, ...}
        ... start the daemon with env ...
        async with asyncio.timeout(5):
            await rx.wait_for_message("READY=1")

Each datagram is kept as a :class:`NotifyMessage` with its ``KEY=value`` fields and its
monotonic arrival time, so watchdog tests can measure intervals between pings.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import pytest


@dataclass(frozen=True, slots=True)
class NotifyMessage:
    text: str
    arrived: float  # time.monotonic() when received

    @property
    def lines(self) -> tuple[str, ...]:
        return tuple(line for line in self.text.split("\n") if line)

    @property
    def fields(self) -> dict[str, str]:
        pairs = (line.partition("=") for line in self.lines)
        return {key: value for key, _, value in pairs}

    def matches(self, wanted: str) -> bool:
        """True if one line equals ``wanted``, or starts with it when it ends in ``=``."""
        if wanted.endswith("="):
            return any(line.startswith(wanted) for line in self.lines)
        return wanted in self.lines


class NotifyReceiver:
    """Binds a SOCK_DGRAM unix socket (a path, or ``@name`` for the abstract namespace)."""

    def __init__(self, address: str) -> None:
        self.address = address  # the NOTIFY_SOCKET value to hand out
        self.messages: list[NotifyMessage] = []
        self._sock: socket.socket | None = None
        self._waiters: list[asyncio.Future[None]] = []

    @classmethod
    def abstract(cls) -> NotifyReceiver:
        """A receiver on a fresh abstract address (nothing to clean up on disk)."""
        return cls(f"@automationd-test-{uuid.uuid4().hex[:12]}")

    @property
    def bind_address(self) -> str:
        return "\0" + self.address[1:] if self.address.startswith("@") else self.address

    async def __aenter__(self) -> NotifyReceiver:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        sock.setblocking(False)
        sock.bind(self.bind_address)
        self._sock = sock
        asyncio.get_running_loop().add_reader(sock.fileno(), self._on_readable)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._sock is not None:
            asyncio.get_running_loop().remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None
        if not self.address.startswith("@"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.address)

    def _on_readable(self) -> None:
        assert self._sock is not None
        while True:
            try:
                data = self._sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                break
            self.messages.append(NotifyMessage(data.decode(errors="replace"), time.monotonic()))
        waiters, self._waiters = self._waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    def find(self, wanted: str, start: int = 0) -> NotifyMessage | None:
        return next((m for m in self.messages[start:] if m.matches(wanted)), None)

    def count(self, wanted: str) -> int:
        return sum(1 for m in self.messages if m.matches(wanted))

    async def wait_for(
        self,
        predicate: Callable[[NotifyMessage], bool],
        timeout: float = 5.0,  # noqa: ASYNC109 -- a built-in deadline, so no caller forgets one
        start: int = 0,
    ) -> NotifyMessage:
        """The first message from index ``start`` on that satisfies ``predicate``."""
        assert self._sock is not None, "use NotifyReceiver as an async context manager"
        async with asyncio.timeout(timeout):
            while True:
                found = next((m for m in self.messages[start:] if predicate(m)), None)
                if found is not None:
                    return found
                fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                self._waiters.append(fut)
                await fut

    async def wait_for_message(
        self,
        wanted: str,
        timeout: float = 5.0,  # noqa: ASYNC109 -- a built-in deadline, so no caller forgets one
        start: int = 0,
    ) -> NotifyMessage:
        """Wait for a datagram with a line ``wanted`` (``"READY=1"``) or prefix (``"STATUS="``)."""
        return await self.wait_for(lambda m: m.matches(wanted), timeout, start)


@pytest.fixture
async def notify_receiver(short_tmp: Path) -> AsyncIterator[NotifyReceiver]:
    """A path-socket NotifyReceiver in a short temp dir, closed after the test."""
    async with NotifyReceiver(os.fspath(short_tmp / "notify.sock")) as rx:
        yield rx
