"""The admin socket: a Unix stream server speaking NDJSON, serving a table of command handlers.

Theory of operation:

* The socket file and the peer check live in ``admin/access.py``: the file is born 0660, a
  stale socket of ours is replaced, anything else at the path stops start-up.
* A newcomer past ``max_connections`` gets one ``unavailable`` line; a peer that SO_PEERCRED
  refuses gets one ``forbidden`` line. Both are answered from the accept callback and closed,
  without spawning a task, so a flood costs no more than accepting it.
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
* Stopping a connection pauses the transport and feeds EOF to its reader: the read loop ends,
  the writer flushes what is in flight, and the connection closes. ``close()`` does this for
  all connections, waits up to a grace period, then cancels the stragglers.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from automationd.admin.access import (
    AdminSocketError,
    PeerPolicy,
    bind_socket,
    clear_path,
    resolve_group,
    unlink_if_ours,
)
from automationd.admin.answers import await_answer, error_line, reply_to, settle_answer
from automationd.admin.protocol import (
    MAX_LINE,
    Request,
    RequestError,
    encode_error,
    parse_request,
)
from automationd.obs.logs import get_logger

__all__ = ["AdminServer", "AdminSocketError", "Handler", "serve_admin"]

Handler = Callable[..., Awaitable[Any] | None]  # (args) or, if ``replying``, (args, reply)

log = get_logger()

_EOF = object()  # marks the end of a connection's response stream
_CHUNK = 1 << 16  # bytes per read
_TOO_LONG = encode_error(None, "bad_request", "request line exceeds 1 MiB")


class _Slot:
    """The place of a response that is not ready yet: filled once, by ``fill(line)``, or by
    calling it as a replying handler's ``reply(result, error)``."""

    __slots__ = ("conn", "data", "req")

    def __init__(self, conn: _Connection, req: Request) -> None:
        self.conn = conn
        self.req = req
        self.data: bytes | None = None

    def fill(self, data: bytes) -> None:
        if self.data is None:  # exactly one line per request
            self.data = data
            self.conn.wake.set()

    def __call__(self, value: Any, exc: BaseException | None) -> None:
        reply_to(self.req, self.fill, value, exc)


@dataclass(frozen=True, slots=True)
class _Settings:
    idle_timeout: float
    max_connections: int
    max_inflight: int
    peers: PeerPolicy


class _Connection:
    """One client: a read loop (the task body), a writer child and one child per request."""

    def __init__(
        self, server: AdminServer, n: int, reader: asyncio.StreamReader, w: asyncio.StreamWriter
    ) -> None:
        self.server, self.n, self.reader, self.w = server, n, reader, w
        self.loop = asyncio.get_running_loop()
        self.pending: deque[Any] = deque()  # bytes | _Slot | _EOF, in request order
        self.wake = asyncio.Event()  # pending gained an entry, or a slot was filled
        self.room = asyncio.Event()  # pending lost entries
        self.stopping = False
        self.last = self.loop.time()
        self.idle: asyncio.TimerHandle | None = None
        self.tg: asyncio.TaskGroup | None = None
        self.task: asyncio.Task[None] | None = None

    async def run(self) -> None:
        self.idle = self.loop.call_at(self.last + self.server.settings.idle_timeout, self._on_idle)
        try:
            async with asyncio.TaskGroup() as tg:
                self.tg = tg
                tg.create_task(self._write_loop(), name=f"admin-conn:{self.n}:writer")
                await self._read_loop()
        except* Exception:
            log.exception("admin.connection_failed", conn=self.n)
        finally:
            self.idle.cancel()
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
        handler = self.server.handlers.get(req.cmd)
        if handler is None:
            self._push(encode_error(req.id, "bad_request", f"unknown command {req.cmd!r}"))
            return
        slot = _Slot(self, req)
        self._push(slot)
        try:
            if getattr(handler, "replies", False):
                answer = handler(req.args, slot)
            else:
                answer = handler(req.args)
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
        self.tg.create_task(await_answer(answer, req, slot.fill),
                            name=f"admin-conn:{self.n}:{req.cmd}")

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


class AdminServer:
    """A running admin socket; obtained from :func:`serve_admin`."""

    def __init__(
        self,
        path: Path,
        handlers: Mapping[str, Handler],
        settings: _Settings,
        tg: asyncio.TaskGroup,
    ) -> None:
        self.path = path
        self.handlers = handlers
        self.settings = settings
        self._tg = tg
        self._conns: set[_Connection] = set()
        self._count = 0
        self._closing = False
        self._saturated = False
        self._server: asyncio.Server | None = None

    @property
    def connections(self) -> int:
        """Connections being served now."""
        return len(self._conns)

    def forget(self, conn: _Connection) -> None:
        self._conns.discard(conn)
        if len(self._conns) < self.settings.max_connections // 2:
            self._saturated = False

    def accept(self, reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        """Accept callback (plain function): refuse or hand the connection to a task."""
        if self._closing or len(self._conns) >= self.settings.max_connections:
            why = "daemon is shutting down" if self._closing else "too many admin connections"
            # Warn once per saturation episode: a flood must not turn into a log flood.
            (log.debug if self._saturated else log.warning)("admin.connection_refused", reason=why)
            self._saturated = True
            w.write(encode_error(None, "unavailable", why))
            w.close()
            return
        try:
            peer = self.settings.peers.check(w.get_extra_info("socket"))
        except OSError:
            peer = None
        if peer is None or not peer.allowed:
            uid = peer.uid if peer else "unknown"
            log.warning("admin.forbidden", peer_pid=peer and peer.pid, peer_uid=uid)
            w.write(encode_error(None, "forbidden", f"uid {uid} may not use the admin socket"))
            w.close()
            return
        self._count += 1
        conn = _Connection(self, self._count, reader, w)
        self._conns.add(conn)
        conn.task = self._tg.create_task(conn.run(), name=f"admin-conn:{self._count}")

    async def listen(self, sock: socket.socket) -> None:
        """Start accepting on the bound ``sock``."""
        backlog = max(128, self.settings.max_connections)
        self._server = await asyncio.start_unix_server(
            self.accept, sock=sock, limit=MAX_LINE + 1, backlog=backlog
        )

    async def close(self, grace: float = 5.0) -> None:
        """Stop accepting, let in-flight requests answer for up to ``grace`` s, then close."""
        if self._closing:
            return
        self._closing = True
        if self._server is not None:
            # Stop accepting, let accepts already under way reach us (and get `unavailable`),
            # and only then close the server: see _settle for the CPython 3.11 leak this avoids.
            loop = asyncio.get_running_loop()
            for s in self._server.sockets:
                with contextlib.suppress(Exception):  # uvloop: not a reader; nothing to remove
                    loop.remove_reader(s.fileno())
            await _settle()
            self._server.close()
        conns = list(self._conns)
        for conn in conns:
            conn.stop()
        tasks = [c.task for c in conns if c.task is not None]
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=grace)
            for task in late:
                task.cancel()
            if late:
                log.warning("admin.connections_cancelled", count=len(late))
        if self._server is not None:
            await self._server.wait_closed()  # 3.12+: waits for connections, all gone by now
        await _settle()  # let the refused ones finish closing


async def _settle() -> None:
    """Give the loop a few turns, not time.

    asyncio (3.11) accepts in a task of its own that builds the transport and then calls us; if
    the server was closed in between, building the transport fails an assertion that is
    swallowed, and the accepted socket leaks (a ResourceWarning, which tests treat as an error).
    Accept → transport → our callback → close takes about four turns; five are plenty.
    """
    for _ in range(5):
        await asyncio.sleep(0)


@contextlib.asynccontextmanager
async def serve_admin(
    path: Path,
    handlers: Mapping[str, Handler],
    *,
    group: str = "",
    idle_timeout: float = 300.0,
    max_connections: int = 64,
    max_inflight_per_conn: int = 1024,
) -> AsyncIterator[AdminServer]:
    """Serve ``handlers`` on a Unix socket at ``path`` until the block exits.

    ``handlers`` maps a cmd to ``async def h(args) -> JSON-able``; raising ``AdminError``
    answers with its code, any other exception answers ``internal`` (and is logged). The
    mapping is looked up per request, so the caller may fill it after start.
    """
    path = Path(path)
    settings = _Settings(
        idle_timeout=idle_timeout,
        max_connections=max_connections,
        max_inflight=max_inflight_per_conn,
        peers=PeerPolicy(own_uid=os.geteuid(), admin_gid=resolve_group(group)),
    )
    clear_path(path, settings.peers.own_uid)
    sock, ident = bind_socket(path, settings.peers.admin_gid)
    # The group is entered and left by hand, not with ``async with`` around the ``yield``: an
    # exception from the caller's block must reach the caller as itself, not wrapped in an
    # ExceptionGroup. Connection tasks never fail (they log), so exiting clean loses nothing.
    tg = asyncio.TaskGroup()
    await tg.__aenter__()
    try:
        admin = AdminServer(path, handlers, settings, tg)
        try:
            await admin.listen(sock)
            log.info("admin.listening", path=str(path), group=group or None)
            yield admin
        finally:
            await admin.close()
            await tg.__aexit__(None, None, None)
    finally:
        sock.close()
        unlink_if_ours(path, ident)
        log.info("admin.closed", path=str(path))
