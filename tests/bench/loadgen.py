"""Clients that behave like real ones, against the real daemon over its real Unix socket.

- ``one_client_latency``: ONE synchronous client (a blocking socket: send a trigger, read its
  answer, repeat), each round trip timed.
- ``drive``: ``conns`` connections, each keeping ``window`` triggers in flight: ``window=1``
  is a synchronous client (one request in flight per connection), ``window=1024`` a pipelining
  one. The load generator is a bare asyncio protocol counting answer lines (not a StreamReader
  parsing each one): it shares the machine's two cores with the daemon, so it stays cheap.
- ``Cpu``: the daemon's CPU time from /proc (utime + stime, per thread: the event loop and the
  SQLite writer), so a change is judged by CPU µs per run and not only by wall clock, which
  on a shared host drifts by tens of percent within a minute.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvloop

from tests.support.daemon import DaemonProcess, config_text

TICK = os.sysconf("SC_CLK_TCK")
NOOP = "async def noop(ctx):\n    return None\n"
LINE = json.dumps({"id": 0, "cmd": "jobs.trigger", "args": {"name": "noop"}}).encode() + b"\n"


def noop_daemon(base: Path, *, extra: str = "") -> DaemonProcess:
    """A started daemon with one no-op python job ``noop`` (triggered only by request)."""
    d = DaemonProcess(
        base,
        config_text(
            base,
            daemon='log_level = "warning"',
            extra=extra,
            jobs="""
[[jobs]]
name = "noop"
on = "never"
action = { type = "python", callable = "benchacts:noop" }
""",
        ),
    )
    (base / "benchacts.py").write_text(NOOP)
    d.start()
    return d


def succeeded(base: Path) -> int:
    """Runs stored as succeeded (read after the daemon stopped)."""
    with sqlite3.connect(base / "state" / "automationd.db") as db:
        n: int = db.execute("SELECT COUNT(*) FROM runs WHERE state='succeeded'").fetchone()[0]
    return n


@dataclass
class Cpu:
    """CPU seconds of a process: all threads, its main (event loop) thread, and the rest."""

    total: float
    loop: float

    @property
    def others(self) -> float:
        return self.total - self.loop

    @classmethod
    def of(cls, pid: int) -> Cpu:
        return cls(_stat_cpu(f"/proc/{pid}/stat"), _stat_cpu(f"/proc/{pid}/task/{pid}/stat"))

    def __sub__(self, other: Cpu) -> Cpu:
        return Cpu(self.total - other.total, self.loop - other.loop)


def _stat_cpu(path: str) -> float:
    text = Path(path).read_text()
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime (fields 14, 15)


# ------------------------------------------------------------------------------ latency
def one_client_latency(sock: Path, n: int, warmup: int = 200) -> list[float]:
    """Round-trip seconds of ``n`` triggers sent one at a time on one blocking connection."""
    out: list[float] = []
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(30)
        s.connect(str(sock))
        perf = time.perf_counter
        for i in range(warmup + n):
            t0 = perf()
            s.sendall(LINE)
            buf = s.recv(65536)
            while not buf.endswith(b"\n"):
                more = s.recv(65536)
                if not more:
                    raise ConnectionError("closed mid-answer")
                buf += more
            t1 = perf()
            if b'"ok":true' not in buf:
                raise AssertionError(buf[:300])
            if i >= warmup:
                out.append(t1 - t0)
    return out


# ------------------------------------------------------------------------------ load
class _Client(asyncio.Protocol):
    """One connection keeping ``window`` triggers in flight until ``n`` are answered."""

    def __init__(self, n: int, window: int) -> None:
        self.n, self.window = n, window
        self.sent = self.got = 0
        self.tail = b""
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._send(self.window)

    def _send(self, k: int) -> None:
        k = min(k, self.n - self.sent)
        if k > 0:
            assert self.transport is not None
            self.transport.write(LINE * k)
            self.sent += k

    def data_received(self, data: bytes) -> None:
        data = self.tail + data
        cut = data.rfind(b"\n") + 1
        lines, self.tail = data[:cut], data[cut:]
        answered = lines.count(b"\n")
        if lines.count(b'"ok":true') != answered:
            self.done.set_exception(AssertionError(lines[:300]))
            return
        self.got += answered
        if self.got >= self.n:
            self.done.set_result(None)
        else:
            self._send(answered)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_exception(ConnectionError(f"closed after {self.got} answers"))


WINDOW = 1024  # a pipelining client's requests in flight: the daemon's per-connection cap


async def client(sock: Path, n: int, window: int) -> None:
    """One connection sending ``n`` triggers with ``window`` in flight, until all answered."""
    await _one(sock, n, window)


async def _one(sock: Path, n: int, window: int) -> None:
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_unix_connection(lambda: _Client(n, window), str(sock))
    try:
        await proto.done
    finally:
        transport.close()


@dataclass
class Load:
    runs: int  # triggers answered (and runs ended)
    ack_s: float  # first send → last answer
    end_s: float  # first send → no run left in flight
    cpu: Cpu  # the daemon's CPU over the same span

    @property
    def runs_per_s(self) -> float:
        return self.runs / self.end_s

    @property
    def acks_per_s(self) -> float:
        return self.runs / self.ack_s

    @property
    def cpu_us_per_run(self) -> float:
        return self.cpu.total / self.runs * 1e6

    @property
    def loop_us_per_run(self) -> float:
        return self.cpu.loop / self.runs * 1e6


def drive(d: DaemonProcess, *, conns: int, window: int, per_conn: int) -> Load:
    """``conns`` connections, each with ``window`` triggers in flight, ``per_conn`` each; then
    wait until every run has ended (``status``: nothing in flight)."""
    assert d.proc is not None
    pid = d.proc.pid

    async def go() -> None:
        async with asyncio.timeout(600):
            await asyncio.gather(*(_one(d.socket, per_conn, window) for _ in range(conns)))

    cpu0 = Cpu.of(pid)
    t0 = time.perf_counter()
    uvloop.run(go())  # the load generator on the daemon's loop type
    t_ack = time.perf_counter() - t0
    # Connected only now: 64 clients fill the daemon's 64 connections until they close.
    with StatusProbe(d.socket) as probe:
        deadline = t0 + 600
        while probe.in_flight():
            assert time.perf_counter() < deadline, "runs still in flight after 600 s"
            time.sleep(0.002)
    t_end = time.perf_counter() - t0
    cpu = Cpu.of(pid) - cpu0
    return Load(conns * per_conn, t_ack, t_end, cpu)


class StatusProbe:
    """``status`` asked again and again on one connection (a new connection per poll would
    cost the daemon an accept and a peer check each time, and show in its CPU)."""

    def __init__(self, sock: Path) -> None:
        for _ in range(500):  # the clients' connections may not be closed on its side yet
            self._s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self._s.settimeout(30)
            self._s.connect(str(sock))
            self._f = self._s.makefile("rb")
            if self._ask() is not None:
                return
            self.__exit__()
            time.sleep(0.002)
        raise ConnectionError("the daemon keeps refusing a status connection")

    def __enter__(self) -> StatusProbe:
        return self

    def __exit__(self, *exc: object) -> None:
        self._f.close()
        self._s.close()

    def _ask(self) -> dict[str, Any] | None:
        self._s.sendall(b'{"id":1,"cmd":"status"}\n')
        line = self._f.readline()
        if not line:
            return None
        answer: dict[str, Any] | None = json.loads(line).get("result")
        return answer

    def status(self) -> dict[str, Any]:
        answer = self._ask()
        assert answer is not None, "status refused"
        return answer

    def in_flight(self) -> int:
        n: int = self.status()["runs_in_flight"]
        return n


def pct(values: list[float], q: float) -> float:
    """The q-quantile (0..1) by nearest rank; 0 for no values."""
    if not values:
        return 0.0
    s = sorted(values)
    return s[min(len(s) - 1, max(0, int(q * len(s) + 0.999999) - 1))]
