"""End-to-end durable throughput: no-op python runs triggered over the socket (4 connections),
beside SqliteHuey (default settings, 4 thread workers) doing the same no-op work, same run."""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from tests.bench.harness import Row, print_table, scaled
from tests.support.daemon import DaemonProcess, config_text

pytestmark = pytest.mark.bench


async def _client(sock: Path, n: int, window: int) -> None:
    reader, writer = await asyncio.open_unix_connection(str(sock), limit=1 << 22)
    line = json.dumps({"id": 0, "cmd": "jobs.trigger", "args": {"name": "noop"}}).encode() + b"\n"
    sent = got = 0
    credit = asyncio.Semaphore(window)

    async def send() -> None:
        nonlocal sent
        while sent < n:
            await credit.acquire()
            writer.write(line)
            sent += 1
            if sent % 64 == 0:
                await writer.drain()
        await writer.drain()

    async with asyncio.TaskGroup() as tg:
        tg.create_task(send())
        while got < n:
            resp = await reader.readline()
            assert b'"ok":true' in resp, resp[:300]
            got += 1
            credit.release()
    writer.close()


def run_ours(base: Path, n: int) -> tuple[float, float]:
    d = DaemonProcess(base, config_text(
        base, daemon='log_level = "warning"', jobs="""
[[jobs]]
name = "noop"
on = "never"
action = { type = "python", callable = "benchacts:noop" }
"""))
    (base / "benchacts.py").write_text("async def noop(ctx):\n    return None\n")
    d.start()
    try:
        async def drive() -> tuple[float, float]:
            t0 = time.perf_counter()
            async with asyncio.timeout(300):
                await asyncio.gather(*(_client(d.socket, n // 4, 512) for _ in range(4)))
            t_ack = time.perf_counter() - t0
            while True:
                st = d.call_sync("status")
                if st["runs_in_flight"] == 0:
                    break
                await asyncio.sleep(0.005)
            return t_ack, time.perf_counter() - t0

        t_ack, t_all = asyncio.run(drive())
        assert d.stop() == 0
    finally:
        d.close()
    with sqlite3.connect(base / "state" / "automationd.db") as db:
        ok = db.execute("SELECT COUNT(*) FROM runs WHERE state='succeeded'").fetchone()[0]
    assert ok == (n // 4) * 4, ok
    return ok / t_all, ok / t_ack


HUEY_PRODUCER = textwrap.dedent("""
    import sys, threading
    sys.path.insert(0, sys.argv[1])
    from hueytasks import noop
    n = int(sys.argv[2])
    def go():
        for _ in range(n // 4):
            noop()
    ts = [threading.Thread(target=go) for _ in range(4)]
    [t.start() for t in ts]; [t.join() for t in ts]
""")


def run_huey(base: Path, n: int) -> float:
    (base / "hueytasks.py").write_text(textwrap.dedent(f"""
        from huey import SqliteHuey
        huey = SqliteHuey(filename={str(base / 'huey.db')!r})
        @huey.task()
        def noop():
            return None
    """))
    sys.path.insert(0, str(base))
    try:
        import hueytasks  # type: ignore[import-not-found]
        from huey.signals import SIGNAL_COMPLETE

        done = 0
        lock = threading.Lock()
        finished = threading.Event()
        total = (n // 4) * 4

        @hueytasks.huey.signal(SIGNAL_COMPLETE)
        def _count(sig: str, task: object) -> None:
            nonlocal done
            with lock:
                done += 1
                if done >= total:
                    finished.set()

        saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
        consumer = hueytasks.huey.create_consumer(workers=4, worker_type="thread")
        consumer.start()
        try:
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-c", HUEY_PRODUCER, str(base), str(n)], check=True,
                           timeout=600)
            assert finished.wait(600)
            elapsed = time.perf_counter() - t0
        finally:
            consumer.stop(graceful=False)
            for s, h in saved.items():
                signal.signal(s, h)
        return total / elapsed
    finally:
        sys.path.remove(str(base))
        sys.modules.pop("hueytasks", None)


def test_durable_throughput_vs_huey(short_tmp: Path) -> None:
    """Measures end-to-end no-op throughput beside Huey in the same run (the goal: 10x)."""
    (short_tmp / "ours").mkdir()
    (short_tmp / "huey").mkdir()
    ours, acks = run_ours(short_tmp / "ours", scaled(40_000))
    huey = run_huey(short_tmp / "huey", scaled(6_000))
    rows = [
        Row("no-op runs/s end to end (4 conns)", ours, huey, "runs/s", "SqliteHuey 4 threads"),
        Row("triggers acknowledged/s (durable)", acks, None, "runs/s"),
    ]
    print_table("durable throughput", rows)
    assert ours > 0 and huey > 0


def test_fanout_5000_targets(short_tmp: Path) -> None:
    """One run fanning out to 5,000 targets must finish at ≥ 5,000 targets/s."""
    n = scaled(5000)
    base = short_tmp / "fan"
    base.mkdir()
    d = DaemonProcess(base, config_text(base, daemon='log_level = "warning"', jobs=f"""
[[jobs]]
name = "fan"
on = "never"
targets = {list(range(n))}
action = {{ type = "python", callable = "benchacts:noop" }}
"""))
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
    print_table("fan-out", [Row(f"targets/s, one run of {n} targets", n / elapsed, None,
                                "targets/s")])
    assert n / elapsed > 0
