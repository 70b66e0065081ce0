"""The admin socket: a Unix stream server speaking NDJSON, serving a table of command handlers.

Theory of operation:

* The socket file and the peer check live in ``admin/access.py``: the file is born 0660, a
  stale socket of ours is replaced, anything else at the path stops start-up.
* The operator always gets in (SPEC §7.5): when all ``max_connections`` slots are taken, the
  connection idle the longest (nothing in flight) is told ``unavailable`` and closed, and the
  newcomer takes its slot (as PostgreSQL keeps slots for superusers, for the same reason).
  With every slot busy, the newcomer gets one ``unavailable`` line. A peer that SO_PEERCRED
  refuses gets one ``forbidden`` line. Refusals are answered from the accept callback and
  closed, without spawning a task, so a flood costs no more than accepting it. Half-open
  connections also expire on their own after ``line_timeout`` (admin/connection.py).
* Each connection is a ``Connection`` (admin/connection.py): one task, its reads, its
  requests and its responses in order.
* Stopping a connection pauses the transport and feeds EOF to its reader: the read loop ends,
  the writer flushes what is in flight, and the connection closes. ``close()`` does this for
  all connections, waits up to a grace period, then cancels the stragglers.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from automationd.admin.access import (
    AdminSocketError,
    PeerPolicy,
    bind_socket,
    clear_path,
    resolve_group,
    unlink_if_ours,
    user_name,
)
from automationd.admin.command import CommandTable
from automationd.admin.connection import Connection
from automationd.admin.protocol import MAX_LINE, encode_error
from automationd.caller import Caller, Via
from automationd.obs.logs import get_logger

__all__ = ["AdminServer", "AdminSocketError", "serve_admin"]

log = get_logger()


@dataclass(frozen=True, slots=True)
class _Settings:
    idle_timeout: float
    line_timeout: float
    max_connections: int
    max_inflight: int
    peers: PeerPolicy


class AdminServer:
    """A running admin socket; obtained from :func:`serve_admin`."""

    def __init__(
        self,
        path: Path,
        commands: CommandTable,
        settings: _Settings,
        tg: asyncio.TaskGroup,
    ) -> None:
        self.path = path
        self.commands = commands
        self.settings = settings
        self._tg = tg
        self._conns: set[Connection] = set()
        self._count = 0
        self._closing = False
        self._saturated = False
        self._server: asyncio.Server | None = None
        self._all: set[Connection] = set()  # every connection task still alive (for close)
        self.evicted = 0

    @property
    def connections(self) -> int:
        """Connections being served now."""
        return len(self._conns)

    def forget(self, conn: Connection) -> None:
        self._conns.discard(conn)
        self._all.discard(conn)
        if len(self._conns) < self.settings.max_connections // 2:
            self._saturated = False

    def _make_room(self) -> bool:
        """All slots taken: evict the connection idle the longest; False if all are busy."""
        idle = [c for c in self._conns if not c.busy and not c.stopping]
        if not idle:
            return False
        oldest = min(idle, key=lambda c: (c.last, c.n))  # ties: the loop clock is coarse
        oldest.evict("closed to make room for a newer connection (all admin slots were taken)")
        self._conns.discard(oldest)  # its slot is free now; its task finishes on its own
        self.evicted += 1
        return True

    def accept(self, reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        """Accept callback (plain function): refuse or hand the connection to a task."""
        if self._closing:
            self._refuse(w, "unavailable", "daemon is shutting down")
            return
        try:
            peer = self.settings.peers.check(w.get_extra_info("socket"))
        except OSError:
            peer = None
        if peer is None or not peer.allowed:  # checked first: a stranger evicts nobody
            uid = peer.uid if peer else "unknown"
            log.warning("admin.forbidden", peer_pid=peer and peer.pid, peer_uid=uid)
            self._refuse(w, "forbidden", f"uid {uid} may not use the admin socket")
            return
        if len(self._conns) >= self.settings.max_connections:
            room = self._make_room()
            # Once per saturation episode: a flood must not turn into a log flood.
            if not self._saturated:
                self._saturated = True
                log.warning(
                    "admin.slots_full",
                    max_connections=self.settings.max_connections,
                    action="evicted the longest-idle connection" if room else "refused",
                )
            if not room:
                self._refuse(w, "unavailable", "too many admin connections, all busy")
                return
        self._count += 1
        caller = Caller(
            via=Via.SOCKET, uid=peer.uid, pid=peer.pid, user=user_name(peer.uid), admin=peer.admin
        )
        conn = Connection(self, self._count, caller, reader, w)
        self._conns.add(conn)
        self._all.add(conn)
        conn.task = self._tg.create_task(conn.run(), name=f"admin-conn:{self._count}")

    @staticmethod
    def _refuse(w: asyncio.StreamWriter, code: str, why: str) -> None:
        w.write(encode_error(None, code, why))
        w.close()

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
        conns = list(self._all)
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
    commands: CommandTable,
    *,
    group: str = "",
    user_group: str = "",
    idle_timeout: float = 300.0,
    line_timeout: float = 10.0,
    max_connections: int = 64,
    max_inflight_per_conn: int = 1024,
) -> AsyncIterator[AdminServer]:
    """Serve ``commands`` on a Unix socket at ``path`` until the block exits.

    Each command's handler is ``async def h(args, caller) -> JSON-able`` (admin/command.py);
    raising ``AdminError`` answers with its code, any other exception answers ``internal``
    (and is logged). The mapping is looked up per request, so the caller may fill it after
    start.
    """
    path = Path(path)
    settings = _Settings(
        idle_timeout=idle_timeout,
        line_timeout=line_timeout,
        max_connections=max_connections,
        max_inflight=max_inflight_per_conn,
        peers=PeerPolicy(
            own_uid=os.geteuid(),
            admin_gid=resolve_group(group),
            user_gid=resolve_group(user_group, "user_group"),
        ),
    )
    clear_path(path, settings.peers.own_uid)
    mode, gid = settings.peers.socket_mode
    sock, ident = bind_socket(path, gid, mode)
    # The group is entered and left by hand, not with ``async with`` around the ``yield``: an
    # exception from the caller's block must reach the caller as itself, not wrapped in an
    # ExceptionGroup. Connection tasks never fail (they log), so exiting clean loses nothing.
    tg = asyncio.TaskGroup()
    await tg.__aenter__()
    try:
        admin = AdminServer(path, commands, settings, tg)
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
