"""Several daemons on PostgreSQL beside Procrastinate, on the same server in the same run.

What is measured (``make bench``; ``AUTOMATIOND_BENCH_SCALE`` scales the counts):
- durable no-op runs/s with 1, 2 and 3 daemons: pipelined triggers on every daemon's socket
  (each answered once its run is durable), until every run is stored ``succeeded``; and
  the CPU each daemon spent per run (this host has 2 cores: 3 daemons share them);
- Procrastinate (PostgreSQL-backed, a worker process with the same concurrency): the same
  number of no-op jobs deferred in batches while its worker runs, until all succeeded;
- claim latency (queued → started) p50/p99: automationd's runs born unowned (a service
  gate in front, so none starts inline) and claimed after NOTIFY, at a light 100 runs/s;
  Procrastinate's jobs from ``deferred`` to ``started`` in its own event table.

The server runs with fsync on (durable commits, like a production one), one database each.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.bench.harness import Row, print_table, scaled
from tests.support.admin_client import AdminClient
from tests.support.daemon import BIN, DaemonProcess, config_text
from tests.support.fleet import ACTIONS, store_section
from tests.support.postgres import PgServer, find_bindir

pytestmark = pytest.mark.bench

NOOP_JOB = """
[[jobs]]
name = "noop"
on = "never"
action = { type = "python", callable = "fleetacts:record" }

[[jobs]]
name = "gated"
on = "never"
service = "open"
action = { type = "python", callable = "fleetacts:record" }
"""
SERVICES = "[services.open]\nconcurrency = 1000\n"
CONCURRENCY = 16

PROCRASTINATE_APP = """
import os
from procrastinate import App, PsycopgConnector

app = App(connector=PsycopgConnector(conninfo=os.environ["PC_DSN"]))


@app.task(name="noop")
async def noop():
    return None
"""


@pytest.fixture(scope="module")
def durable_pg() -> Iterator[PgServer]:
    bindir = find_bindir()
    if bindir is None:
        pytest.skip("no PostgreSQL server binaries (initdb)")
    server = PgServer.start(bindir, fsync=True)
    try:
        yield server
    finally:
        server.stop()


def _cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _count(server: PgServer, db: str, sql: str) -> int:
    return int(server.psql(sql, db=db).strip() or 0)


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def _fleet(server: PgServer, n: int, base: Path) -> tuple[list[DaemonProcess], str]:
    dsn = server.create_db("bench")
    db = dsn.split("/", 3)[3].split("?", 1)[0]
    daemons = []
    for i in range(n):
        sub = base / f"n{i}"
        sub.mkdir()
        extra = store_section(dsn, ttl="15s", node_id=f"n{i}")
        extra += f"\n[workers]\nmax_concurrency = {CONCURRENCY}\n"
        text = config_text(
            sub,
            jobs=NOOP_JOB,
            services=SERVICES,
            daemon='log_level = "warning"\nmetrics_listen = ""',
            extra=extra,
        )
        d = DaemonProcess(sub, text)
        (sub / "fleetacts.py").write_text(ACTIONS)
        daemons.append(d)
    proc = subprocess.run(
        [str(BIN / "automationd"), "migrate", "--config", str(daemons[0].config)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    for d in daemons:
        d.start(wait=False)
    for d in daemons:
        d.wait_ready(30)
    return daemons, db


async def _trigger(d: DaemonProcess, job: str, n: int, chunk: int = 500) -> None:
    async with AdminClient(d.socket, timeout=120) as c:
        for start in range(0, n, chunk):
            replies = await c.pipeline([("jobs.trigger", {"name": job})] * min(chunk, n - start))
            assert all(r["ok"] for r in replies), replies[0]


def _wait_done(server: PgServer, db: str, table: str, status: str, col: str, n: int) -> float:
    deadline = time.monotonic() + 600
    while _count(server, db, f"SELECT count(*) FROM {table} WHERE {col} = '{status}'") < n:
        assert time.monotonic() < deadline, "bench did not finish"
        time.sleep(0.05)
    return time.monotonic()


def _automationd_round(server: PgServer, n_daemons: int, total: int) -> dict[str, Any]:
    base = Path(tempfile.mkdtemp(prefix="fb-", dir="/tmp"))
    daemons, db = _fleet(server, n_daemons, base)
    try:
        per = total // n_daemons
        cpu0 = [_cpu(d.proc.pid) for d in daemons]  # type: ignore[union-attr]
        t0 = time.monotonic()

        async def go() -> None:
            async with asyncio.timeout(600):
                await asyncio.gather(*(_trigger(d, "noop", per) for d in daemons))

        asyncio.run(go())
        t1 = _wait_done(server, db, "runs", "succeeded", "state", per * n_daemons)
        cpu = [_cpu(d.proc.pid) - c for d, c in zip(daemons, cpu0, strict=True)]  # type: ignore[union-attr]
        rate = per * n_daemons / (t1 - t0)
        waits = [
            float(x)
            for x in server.psql(
                "SELECT started_at - created_at FROM runs WHERE job = 'noop'", db=db
            ).split()
        ]

        # light load: runs born unowned, claimed after NOTIFY
        async def light() -> None:
            async with asyncio.timeout(120):
                for i in range(scaled(300)):
                    await _trigger(daemons[i % n_daemons], "gated", 1)
                    await asyncio.sleep(0.01)

        asyncio.run(light())
        _wait_done(server, db, "runs", "succeeded", "state", per * n_daemons + scaled(300))
        claims = [
            float(x)
            for x in server.psql(
                "SELECT started_at - created_at FROM runs WHERE job = 'gated'", db=db
            ).split()
        ]
        return {
            "rate": rate,
            "cpu_us_per_run": [c / per * 1e6 for c in cpu],
            "wait_p50": _pct(waits, 0.5),
            "wait_p99": _pct(waits, 0.99),
            "claim_p50": _pct(claims, 0.5),
            "claim_p99": _pct(claims, 0.99),
        }
    finally:
        for d in daemons:
            d.close()


def _procrastinate_round(server: PgServer, total: int) -> dict[str, Any]:
    dsn = server.create_db("pc")
    db = dsn.split("/", 3)[3].split("?", 1)[0]
    conninfo = f"host={server.base} dbname={db} user=postgres"
    base = Path(tempfile.mkdtemp(prefix="pc-", dir="/tmp"))
    (base / "pcbench.py").write_text(PROCRASTINATE_APP)
    env = {**os.environ, "PC_DSN": conninfo, "PYTHONPATH": str(base)}
    subprocess.run(
        [
            sys.executable,
            "-c",
            "import pcbench\nwith pcbench.app.open():\n    pcbench.app.schema_manager.apply_schema()",
        ],
        env=env,
        check=True,
        timeout=60,
        cwd=base,
        capture_output=True,
    )
    worker = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import pcbench\nwith pcbench.app.open():\n"
            f"    pcbench.app.run_worker(concurrency={CONCURRENCY}, install_signal_handlers=False)",
        ],
        env=env,
        cwd=base,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(1.5)  # the worker is up and listening
        sys.path.insert(0, str(base))
        os.environ["PC_DSN"] = conninfo
        import pcbench  # type: ignore[import-not-found]

        cpu0 = _cpu(worker.pid)
        t0 = time.monotonic()

        async def defer() -> None:
            async with pcbench.app.open_async(), asyncio.timeout(600):
                for start in range(0, total, 500):
                    await pcbench.noop.batch_defer_async(*([{}] * min(500, total - start)))

        asyncio.run(defer())
        t1 = _wait_done(server, db, "procrastinate_jobs", "succeeded", "status", total)
        cpu = _cpu(worker.pid) - cpu0
        waits = [
            float(x)
            for x in server.psql(
                "SELECT extract(epoch FROM s.at - d.at) FROM procrastinate_events d"
                " JOIN procrastinate_events s ON s.job_id = d.job_id AND s.type = 'started'"
                " WHERE d.type = 'deferred'",
                db=db,
            ).split()
        ]
        return {
            "rate": total / (t1 - t0),
            "cpu_us_per_run": cpu / total * 1e6,
            "wait_p50": _pct(waits, 0.5),
            "wait_p99": _pct(waits, 0.99),
        }
    finally:
        worker.terminate()
        worker.wait(30)
        sys.modules.pop("pcbench", None)


def test_fleet_throughput_beside_procrastinate(durable_pg: PgServer) -> None:
    """Durable no-op runs/s with 1, 2 and 3 daemons and per-daemon CPU per run, Procrastinate
    on the same server; claim latency p50/p99 of both. Goal: one daemon >= 3x Procrastinate,
    and no drop in total throughput from 1 to 3 daemons."""
    total = scaled(6000)
    peer = _procrastinate_round(durable_pg, scaled(3000))
    rounds = {n: _automationd_round(durable_pg, n, total) for n in (1, 2, 3)}
    rows = [
        Row(
            f"durable no-op runs/s, {n} daemon{'s' * (n > 1)}",
            r["rate"],
            peer["rate"],
            "runs/s",
            "procrastinate, 1 worker",
        )
        for n, r in rounds.items()
    ]
    for n, r in rounds.items():
        rows.append(
            Row(
                f"CPU per run per daemon, {n} daemon{'s' * (n > 1)}",
                statistics.mean(r["cpu_us_per_run"]),
                peer["cpu_us_per_run"],
                "µs CPU per run, lower is better",
                "procrastinate worker",
                higher_is_better=False,
            )
        )
    r1, r3 = rounds[1], rounds[3]
    rows += [
        Row("queued → started p50, under load (1 daemon)", r1["wait_p50"] * 1e3,
            peer["wait_p50"] * 1e3, "ms", "procrastinate", higher_is_better=False),
        Row("queued → started p99, under load (1 daemon)", r1["wait_p99"] * 1e3,
            peer["wait_p99"] * 1e3, "ms", "procrastinate", higher_is_better=False),
        Row("claim latency p50, 3 daemons, 100 runs/s", r3["claim_p50"] * 1e3, None, "ms"),
        Row("claim latency p99, 3 daemons, 100 runs/s", r3["claim_p99"] * 1e3, None, "ms"),
    ]  # fmt: skip
    print_table("several daemons on PostgreSQL vs Procrastinate", rows)
    assert all(r["rate"] > 0 for r in rounds.values())
