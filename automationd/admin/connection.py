"""One admin connection: its reads, its requests, and its responses in request order.

Theory of operation:

* A connection is one task (``admin-conn:N``) owning a TaskGroup. Its body reads chunks and
  splits them into lines itself (one ``await`` per chunk, not per line). A request whose
  handler must wait runs as its own child task, so a slow command never blocks the next read;
  hot handlers answer from a callback, with no task at all. Responses leave in request order:
  each line appends finished bytes or a ``_Slot`` to ``pending``, and a writer child waits for
  the head slot to be filled, then batches every finished response behind it into one write.
  Dispatching pauses while ``pending`` holds ``max_inflight_per_conn`` entries, so a client
  that does not read its responses is throttled (by at most one read chunk), not buffered.
* Idle means "nothing in flight and no complete line for ``idle_timeout``"; a timer (not a
  task) stops such a connection, so a client that never sends a newline is idle too. A client
  that stops reading its responses for ``idle_timeout`` is aborted: it would hold a slot.
* A line has a deadline (SPEC §7.5): a new connection must complete its first request line
  within ``line_timeout`` (10 s), and a line once begun must be completed within as long. A
  second timer enforces it: armed at connect and whenever a partial line is left in the
  buffer, cleared when a line completes. A half-open or slowloris client hears
  ``bad_request`` and is closed; one that waits quietly *between* requests is only idle.
* ``evict()`` closes an idle connection to make room for a newer one (admin/server.py).
"""

from __future__ import annotations

import asyncio
from collections import deque
from functools import partial
from typing import Any, Protocol

from automationd.admin.answers import await_answer, error_line, reply_to, settle_answer
from automationd.admin.command import CommandTable
from automationd.admin.protocol import (
    MAX_LINE,
    Request,
    RequestError,
    encode_error,
    parse_request,
)
from automationd.caller import Caller
from automationd.obs.logs import get_logger

log = get_logger()

_EOF = object()  # marks the end of a connection's response stream
_CHUNK = 1 << 16  # bytes per read
_TOO_LONG = encode_error(None, "bad_request", "request line exceeds 1 MiB")


class _Slot:
    """The place of a response that is not ready yet: filled once, by ``fill(line)``, or by
    calling it as a replying handler's ``reply(result, error)``."""

    __slots__ = ("conn", "data", "req")

    def __init__(self, conn: Connection, req: Request) -> None:
        self.conn = conn
        self.req = req
        self.data: bytes | None = None

    def fill(self, data: bytes) -> None:
        if self.data is None:  # exactly one line per request
            self.data = data
            conn = self.conn
            if len(conn.pending) == 1 and conn.write_now(data):
                return
            conn.wake.set()

    def __call__(self, value: Any, exc: BaseException | None) -> None:
        reply_to(self.req, self.fill, value, exc)


class Limits(Protocol):
    @property
    def idle_timeout(self) -> float: ...
    @property
    def line_timeout(self) -> float: ...
    @property
    def max_inflight(self) -> int: ...


class Host(Protocol):
    """What a connection needs of the server that accepted it (admin/server.py), named here
    so this module does not import the server that imports it."""

    @property
    def settings(self) -> Limits: ...
    @property
    def commands(self) -> CommandTable: ...
    def forget(self, conn: Connection) -> None: ...


class Connection:
    """One client: a read loop (the task body), a writer child and one child per request."""

    def __init__(
        self,
        server: Host,
        n: int,
        caller: Caller,
        reader: asyncio.StreamReader,
        w: asyncio.StreamWriter,
    ) -> None:
        self.server, self.n, self.caller, self.reader, self.w = server, n, caller, reader, w
        self.loop = asyncio.get_running_loop()
        self.pending: deque[Any] = deque()  # bytes | _Slot | _EOF, in request order
        self.wake = asyncio.Event()  # pending gained an entry, or a slot was filled
        self.room = asyncio.Event()  # pending lost entries
        self.stopping = False
        self.last = self.loop.time()
        self.idle: asyncio.TimerHandle | None = None
        self.line_timer: asyncio.TimerHandle | None = None
        self.tg: asyncio.TaskGroup | None = None
        self.task: asyncio.Task[None] | None = None

    async def run(self) -> None:
        self.idle = self.loop.call_at(self.last + self.server.settings.idle_timeout, self._on_idle)
        self._arm_line()
        try:
            async with asyncio.TaskGroup() as tg:
                self.tg = tg
                tg.create_task(self._write_loop(), name=f"admin-conn:{self.n}:writer")
                await self._read_loop()
        except* Exception:
            log.exception("admin.connection_failed", conn=self.n)
        finally:
            self.idle.cancel()
            self._disarm_line()
            self.w.close()
            self.server.forget(self)

    def stop(self) -> None:
        """Read nothing more; answer what is in flight, then close."""
        if self.stopping:
            return
        self.stopping = True
        # Pause first: data arriving after feed_eof() would trip StreamReader's assertion.
        # Duck-typed, since uvloop's transports are not asyncio.ReadTransport instances.
        transport = self.w.transport
        pause = getattr(transport, "pause_reading", None)
        if pause is not None and not transport.is_closing():
            pause()
        self.reader.feed_eof()
        self.room.set()

    @property
    def busy(self) -> bool:
        """Requests in flight or answers not yet written."""
        return bool(self.pending)

    def evict(self, why: str) -> None:
        """Close an idle connection to free its slot for a newer one; it hears why."""
        if self.stopping:
            return
        log.debug("admin.evicted", conn=self.n)
        self._push(encode_error(None, "unavailable", why))
        self.stop()

    def _arm_line(self) -> None:
        if self.line_timer is None and not self.stopping:
            self.line_timer = self.loop.call_later(
                self.server.settings.line_timeout, self._on_line_deadline
            )

    def _disarm_line(self) -> None:
        if self.line_timer is not None:
            self.line_timer.cancel()
            self.line_timer = None

    def _on_line_deadline(self) -> None:
        self.line_timer = None
        if self.stopping:
            return
        if self.pending:  # we stopped reading (throttled), not the client: look again later
            self._arm_line()
            return
        timeout = self.server.settings.line_timeout
        log.debug("admin.line_timeout", conn=self.n, timeout_s=timeout)
        self._push(
            encode_error(None, "bad_request", f"no complete request line within {timeout:g}s")
        )
        self.stop()

    def _on_idle(self) -> None:
        if self.stopping:
            return
        timeout = self.server.settings.idle_timeout
        now = self.loop.time()
        if self.pending:  # busy: look again a full timeout from now
            deadline = now + timeout
        elif now - self.last >= timeout * 0.999:  # timer handles may fire a hair early
            log.debug("admin.idle_close", conn=self.n)
            self.stop()
            return
        else:  # a line arrived since the timer was set
            deadline = self.last + timeout
        self.idle = self.loop.call_at(deadline, self._on_idle)

    def write_now(self, data: bytes) -> bool:
        """A synchronous client's answer (the only one in flight) is written straight from
        its reply, without waking the writer child: one task step less per request. Only
        when nothing waits in the transport's buffer; otherwise the writer child, which
        drains, takes it."""
        transport = self.w.transport
        if self.stopping or transport.is_closing() or transport.get_write_buffer_size():
            return False
        self.pending.popleft()
        self.last = self.loop.time()
        self.w.write(data)
        self.room.set()
        return True

    def _push(self, item: Any) -> None:
        self.pending.append(item)
        self.wake.set()

    async def _read_loop(self) -> None:
        """Read chunks and split them into lines here: one ``await`` per chunk, not per line
        (a pipelining client sends hundreds of requests per chunk)."""
        reader, pending, limit = self.reader, self.pending, self.server.settings.max_inflight
        tail = b""
        skipping = False  # inside an over-long line: drop bytes up to its newline
        while not self.stopping:
            try:
                chunk = await reader.read(_CHUNK)
            except OSError:  # reset by peer
                break
            if not chunk:  # EOF: a last line without its newline still counts
                if tail.strip() and not skipping and not self.stopping:
                    self._dispatch(tail)
                break
            lines = (tail + chunk if tail else chunk).split(b"\n")
            tail = lines.pop()
            if lines:
                self.last = self.loop.time()
                self._disarm_line()
            if tail or skipping:  # a line is under way: it has line_timeout to complete
                self._arm_line()
            for line in lines:
                if skipping:  # the end of an over-long line
                    skipping = False
                    continue
                while len(pending) >= limit and not self.stopping:
                    self.room.clear()
                    await self.room.wait()
                if self.stopping:
                    break
                self._dispatch(line)
            if len(tail) > MAX_LINE:
                if not skipping:
                    self._push(_TOO_LONG)
                skipping = True
                tail = b""
        self._push(_EOF)

    def _dispatch(self, line: bytes) -> None:
        try:
            req = parse_request(line)
        except RequestError as exc:
            self._push(encode_error(exc.request_id, exc.code, exc.message))
            return
        command = self.server.commands.get(req.cmd)
        if command is None:
            self._push(encode_error(req.id, "bad_request", f"unknown command {req.cmd!r}"))
            return
        slot = _Slot(self, req)
        self._push(slot)
        try:
            if command.replies:
                answer = command.handler(req.args, self.caller, slot)
            else:
                answer = command.handler(req.args, self.caller)
        except Exception as exc:  # a plain-function handler refused synchronously
            slot.fill(error_line(req, exc))
            return
        if answer is None:
            return  # a replying handler took it: it calls ``reply`` (the slot) once
        if asyncio.isfuture(answer):
            # A handler that did its work synchronously hands back a future: no task needed.
            answer.add_done_callback(partial(settle_answer, req, slot.fill))
            return
        assert self.tg is not None
        self.tg.create_task(
            await_answer(answer, req, slot.fill), name=f"admin-conn:{self.n}:{req.cmd}"
        )

    async def _write_loop(self) -> None:
        pending, w = self.pending, self.w
        while True:
            if not pending:
                self.wake.clear()
                await self.wake.wait()
                continue
            head = pending[0]
            if head is _EOF:
                return
            if type(head) is _Slot and head.data is None:
                self.wake.clear()
                await self.wake.wait()
                continue
            chunks: list[bytes] = []
            while pending:
                item = pending[0]
                if type(item) is bytes:
                    chunks.append(item)
                elif item is _EOF or item.data is None:
                    break
                else:
                    chunks.append(item.data)
                pending.popleft()
            if not pending:
                self.last = self.loop.time()
            self.room.set()
            if w.transport.is_closing():
                self.stop()
                return
            w.write(chunks[0] if len(chunks) == 1 else b"".join(chunks))
            if not w.transport.get_write_buffer_size():
                continue  # the kernel took it all: nothing to wait for
            try:
                async with asyncio.timeout(self.server.settings.idle_timeout):
                    await w.drain()
            except TimeoutError:  # a client that stopped reading must not keep its slot
                log.info("admin.write_stalled", conn=self.n)
                w.transport.abort()
                self.stop()
                return
            except OSError:  # the peer went away
                self.stop()
                return
