"""End-to-end durable throughput: no-op python runs triggered over the socket (4 connections),
beside SqliteHuey (default settings, 4 thread workers) doing the same no-op work, same run."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from statistics import median

import pytest
import uvloop

from tests.bench.harness import Row, print_table, scaled
from tests.support.daemon import DaemonProcess, config_text

pytestmark = pytest.mark.bench

ROUNDS = int(os.environ.get("AUTOMATIOND_BENCH_ROUNDS", "3"))
WINDOW = 1024  # requests each connection keeps in flight: the daemon's per-connection cap


class _Client(asyncio.Protocol):
    """One pipelining connection: keeps ``window`` triggers in flight until ``n`` are answered.

    A bare protocol counting answer lines, not a StreamReader parsing each one: the load
    generator shares the machine's two cores with the daemon, so it must stay cheap.
    """

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
            self.transport.write(_LINE * k)
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


_LINE = json.dumps({"id": 0, "cmd": "jobs.trigger", "args": {"name": "noop"}}).encode() + b"\n"


async def _client(sock: Path, n: int, window: int) -> None:
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_unix_connection(lambda: _Client(n, window), str(sock))
    try:
        await proto.done
    finally:
        transport.close()


def run_ours(base: Path, n: int) -> tuple[float, float]:
    d = DaemonProcess(
        base,
        config_text(
            base,
            daemon='log_level = "warning"',
            jobs="""
[[jobs]]
name = "noop"
on = "never"
action = { type = "python", callable = "benchacts:noop" }
""",
        ),
    )
    (base / "benchacts.py").write_text("async def noop(ctx):\n    return None\n")
    d.start()
    try:

        async def drive() -> tuple[float, float]:
            t0 = time.perf_counter()
            async with asyncio.timeout(300):
                await asyncio.gather(*(_client(d.socket, n // 4, WINDOW) for _ in range(4)))
            t_ack = time.perf_counter() - t0
            while True:
                st = d.call_sync("status")
                if st["runs_in_flight"] == 0:
                    break
                await asyncio.sleep(0.005)
            return t_ack, time.perf_counter() - t0

        t_ack, t_all = uvloop.run(drive())  # the load generator on the daemon's loop type
        assert d.stop() == 0
    finally:
        d.close()
    with sqlite3.connect(base / "state" / "automationd.db") as db:
        ok = db.execute("SELECT COUNT(*) FROM runs WHERE state='succeeded'").fetchone()[0]
    assert ok == (n // 4) * 4, ok
    return ok / t_all, ok / t_ack


HUEY_PRODUCER = textwrap.dedent("""
    import sys, threading, time
    sys.path.insert(0, sys.argv[1])
    from hueytasks import noop
    n = int(sys.argv[2])
    print(repr(time.time()), flush=True)  # Huey's clock starts at its first enqueue
    def go():
        for _ in range(n // 4):
            noop()
    ts = [threading.Thread(target=go) for _ in range(4)]
    [t.start() for t in ts]; [t.join() for t in ts]
""")


def run_huey(base: Path, n: int) -> float:
    (base / "hueytasks.py").write_text(
        textwrap.dedent(f"""
        from huey import SqliteHuey
        huey = SqliteHuey(filename={str(base / "huey.db")!r})
        @huey.task()
        def noop():
            return None
    """)
    )
    sys.path.insert(0, str(base))
    try:
        import hueytasks  # type: ignore[import-not-found]
        from huey.signals import SIGNAL_COMPLETE

        done = 0
        lock = threading.Lock()
        finished = threading.Event()
        finished_at = 0.0
        total = (n // 4) * 4

        @hueytasks.huey.signal(SIGNAL_COMPLETE)
        def _count(sig: str, task: object) -> None:
            nonlocal done, finished_at
            with lock:
                done += 1
                if done >= total and not finished.is_set():
                    finished_at = time.time()
                    finished.set()

        saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
        consumer = hueytasks.huey.create_consumer(workers=4, worker_type="thread")
        consumer.start()
        try:
            out = subprocess.run(
                [sys.executable, "-c", HUEY_PRODUCER, str(base), str(n)],
                check=True,
                timeout=600,
                capture_output=True,
                text=True,
            )
            assert finished.wait(600)
            elapsed = finished_at - float(out.stdout.split()[0])
        finally:
            consumer.stop(graceful=False)
            for s, h in saved.items():
                signal.signal(s, h)
        return total / elapsed
    finally:
        sys.path.remove(str(base))
        sys.modules.pop("hueytasks", None)


def test_durable_throughput_vs_huey(short_tmp: Path) -> None:
    """Measures end-to-end no-op throughput beside Huey in the same run (the goal: 10x).

    Rounds alternate (ours, Huey, ours, Huey, ...) so both sides see the same machine, which
    on shared hosts drifts by tens of percent within a minute; the table gives the medians.
    """
    ours, acks, huey = [], [], []
    for i in range(ROUNDS):
        (short_tmp / f"ours{i}").mkdir()
        (short_tmp / f"huey{i}").mkdir()
        o, a = run_ours(short_tmp / f"ours{i}", scaled(40_000))
        ours.append(o)
        acks.append(a)
        huey.append(run_huey(short_tmp / f"huey{i}", scaled(6_000)))
    rows = [
        Row(
            f"no-op runs/s end to end (4 conns), median of {ROUNDS}",
            median(ours),
            median(huey),
            "runs/s",
            "SqliteHuey 4 threads",
        ),
        *(
            Row(f"  round {i + 1}", o, h, "runs/s", "SqliteHuey 4 threads")
            for i, (o, h) in enumerate(zip(ours, huey, strict=True))
        ),
        Row("triggers acknowledged/s (durable), median", median(acks), None, "runs/s"),
    ]
    print_table("durable throughput", rows)
    assert all(o > 0 for o in ours) and all(h > 0 for h in huey)


def test_fanout_5000_targets(short_tmp: Path) -> None:
    """One run fanning out to 5,000 targets must finish at ≥ 5,000 targets/s."""
    n = scaled(5000)
    base = short_tmp / "fan"
    base.mkdir()
    d = DaemonProcess(
        base,
        config_text(
            base,
            daemon='log_level = "warning"',
            jobs=f"""
[[jobs]]
name = "fan"
on = "never"
targets = {list(range(n))}
action = {{ type = "python", callable = "benchacts:noop" }}
""",
        ),
    )
    (base / "benchacts.py").write_text("async def noop(ctx):\n    return None\n")
    d.start()
    try:
        t0 = time.perf_counter()
        run = d.call_sync("jobs.trigger", {"name": "fan"})
        while True:
            got = d.call_sync("runs.list", {"job": "fan", "limit": 1})[0]
            if got["state"] not in ("queued", "running", "retrying"):
                break
            time.sleep(0.005)
        elapsed = time.perf_counter() - t0
        assert got["id"] == run["id"] and got["state"] == "succeeded", got
        assert got["targets"]["succeeded"] == n
        assert d.stop() == 0
    finally:
        d.close()
    print_table(
        "fan-out", [Row(f"targets/s, one run of {n} targets", n / elapsed, None, "targets/s")]
    )
    assert n / elapsed > 0
