"""The web console at scale (issue 13): every page's server time with 100,000 jobs and
1,000,000 runs in the store (goal: p99 ≤ 50 ms), and engine throughput with 20 open live
pages against none, in the same run (goal: no measurable cost)."""

from __future__ import annotations

import asyncio
import json
import os
import random
import socket
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from statistics import median, quantiles

import aiohttp
import pytest
import uvloop

from automationd.store.sqlite.migrate import migrate
from automationd.web.feed import IDLE_GRACE
from tests.bench.harness import Row, print_table, scaled
from tests.bench.loadgen import WINDOW
from tests.bench.loadgen import client as _client
from tests.support.daemon import DaemonProcess, config_text
from tests.support.web import web_token

pytestmark = pytest.mark.bench

JOBS = scaled(100_000)
RUNS = scaled(1_000_000)
SAMPLES = int(os.environ.get("AUTOMATIOND_BENCH_SAMPLES", "200"))
ROUNDS = int(os.environ.get("AUTOMATIOND_BENCH_ROUNDS", "3"))
PAGES_OPEN = 20


def _web() -> tuple[str, str]:
    """A [web] table on a free port, and its URL (benches log at warning: no address line)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f'[web]\nlisten = "127.0.0.1:{port}"\n', f"http://127.0.0.1:{port}"


# the columns the bench fills (later ones take their defaults)
_RUN_COLS = (
    "id, job, state, trigger, scheduled_for, created_at, started_at, finished_at, attempts,"
    " idempotency_key, payload, targets_total, targets_succeeded, targets_failed, error_kind,"
    " error_message, result, depth, origin, reason, lease"
)


def _jobs_toml(n: int) -> str:
    return "".join(
        f'[[jobs]]\nname = "job-{i:06d}"\nschedule = "{i % 60} {i % 24} * * *"\n'
        f'timezone = "{"Europe/Berlin" if i % 3 else "UTC"}"\n'
        'action = { type = "exec", argv = ["/bin/true"] }\n'
        for i in range(n)
    )


def _fill_store(db: Path, jobs: int, runs: int) -> dict[str, str]:
    """1,000,000 runs (newest last), their events and dead letters, written straight into a
    migrated database; returns ids the pages are asked about."""
    rng = random.Random(7)
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    migrate(conn)
    conn.execute("PRAGMA synchronous=OFF")
    start_ms = int((time.time() - 2 * 86400) * 1000)
    states = ["succeeded"] * 970 + ["failed"] * 20 + ["skipped"] * 8 + ["partial"] * 2
    triggers = ["schedule"] * 90 + ["manual"] * 6 + ["event"] * 3 + ["retry"]
    conn.execute("BEGIN")
    batch: list[tuple[object, ...]] = []
    dead: list[tuple[object, ...]] = []
    events: list[tuple[object, ...]] = []
    for i in range(runs):
        ms = start_ms + i * 150
        run_id = f"{ms:012x}{i:020x}"
        state = rng.choice(states)
        job = f"job-{rng.randrange(jobs):06d}"
        t = ms / 1000
        failed = state in ("failed", "partial")
        batch.append(
            (run_id, job, state, rng.choice(triggers), t, t, t + 0.01, t + 0.2, 1, None,
             None, 1, 0 if failed else 1, 1 if failed else 0, "fatal" if failed else None,
             "exited with code 1" if failed else None, None, 0, None, None, 0)
        )  # fmt: skip
        if failed:
            dead.append((f"{ms + 2:012x}{i:020x}", run_id, job, -1, None, "fatal", "exit 1", t))
        if state != "skipped":
            payload = json.dumps({"job": job, "run_id": run_id, "state": state})
            events.append((f"{ms + 1:012x}{i:020x}", f"run.{state}", payload, t + 0.2, None, 1))
        if len(batch) >= 50_000:
            _flush(conn, batch, dead, events)
    _flush(conn, batch, dead, events)
    newest = conn.execute("SELECT id FROM runs ORDER BY id DESC LIMIT 1").fetchone()[0]
    conn.executemany(
        "INSERT INTO attempts (run_id, n, phase, target_idx, target, started_at, finished_at,"
        " outcome, error, stdout, stderr, pgid) VALUES (?,1,'perform',-1,NULL,?,?,'ok',NULL,?,NULL,NULL)",
        [(newest, 1.0, 1.2, "line of output\n" * 200)],
    )
    conn.execute("COMMIT")
    middle = conn.execute("SELECT id FROM runs ORDER BY id DESC LIMIT 1 OFFSET ?", (runs // 2,))
    out = {"newest": newest, "middle": middle.fetchone()[0]}
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return out


def _flush(
    conn: sqlite3.Connection,
    runs: list[tuple[object, ...]],
    dead: list[tuple[object, ...]],
    events: list[tuple[object, ...]],
) -> None:
    marks = ",".join("?" * len(_RUN_COLS.split(",")))
    conn.executemany(f"INSERT INTO runs ({_RUN_COLS}) VALUES ({marks})", runs)
    conn.executemany(
        "INSERT INTO dlq (id, run_id, job, target_idx, target, error_kind, error_message,"
        " failed_at) VALUES (?,?,?,?,?,?,?,?)",
        dead,
    )
    conn.executemany(
        "INSERT INTO events (id, name, payload, created_at, idempotency_key, depth)"
        " VALUES (?,?,?,?,?,?)",
        events,
    )
    runs.clear()
    dead.clear()
    events.clear()


async def _sample(base: str, token: str, path: str, n: int) -> tuple[list[float], list[float]]:
    """``n`` sequential GETs: (server ms from Server-Timing, client wall ms)."""
    server, wall = [], []
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession() as http:
        for i in range(n + 5):
            t0 = time.perf_counter()
            async with http.get(base + path, headers=headers) as resp:
                await resp.read()
                assert resp.status == 200, (path, resp.status)
                timing = resp.headers["Server-Timing"]
            if i >= 5:  # warm-up first
                wall.append((time.perf_counter() - t0) * 1000)
                server.append(float(timing.split("dur=")[1]))
    return server, wall


def _report(text: str) -> None:
    print(text)
    out = os.environ.get("AUTOMATIOND_BENCH_OUT")
    if out:
        with open(out, "a") as f:
            f.write(text + "\n")


def p99(xs: list[float]) -> float:
    return quantiles(xs, n=100)[98] if len(xs) >= 2 else xs[0]


def test_every_page_at_100k_jobs_and_1m_runs(short_tmp: Path) -> None:
    """Each page, SAMPLES times in a row, against a daemon holding 100,000 jobs and
    1,000,000 runs: p50/p99 server time (Server-Timing) and client time; p99 ≤ 50 ms."""
    base = short_tmp / "pages"
    base.mkdir()
    web, url = _web()
    text = config_text(base, daemon='log_level = "warning"', extra=web, jobs=_jobs_toml(JOBS))
    d = DaemonProcess(base, text)
    (base / "state").mkdir()
    t0 = time.perf_counter()
    ids = _fill_store(base / "state" / "automationd.db", JOBS, RUNS)
    print(f"\nstore filled with {RUNS:,} runs in {time.perf_counter() - t0:.1f}s")
    d.start(timeout=300)
    try:
        token = web_token(d)
        job = "job-000042"
        pages = [
            "/", "/jobs", f"/jobs?page={JOBS // 50}", "/jobs?q=job-0999", "/jobs?state=paused",
            f"/jobs/{job}", "/runs", f"/runs?before={ids['middle']}", f"/runs?job={job}",
            "/runs?state=failed", "/runs?state=succeeded", "/runs?trigger=retry",
            f"/runs?job={job}&state=failed", "/runs?since=1h", f"/runs/{ids['newest']}",
            "/events", "/events?name=run.failed", "/dlq", "/limits",
            "/cron?schedule=30+2+*+*+*&tz=Europe/Berlin",
        ]  # fmt: skip
        lines = [
            f"\n== web pages, {JOBS:,} jobs, {RUNS:,} runs, {SAMPLES} requests each (ms) ==",
            f"{'page':<44} {'server p50':>10} {'server p99':>10} {'client p50':>10} {'client p99':>10}",
        ]
        worst = 0.0
        for path in pages:
            server, wall = uvloop.run(_sample(url, token, path, SAMPLES))
            worst = max(worst, p99(server))
            lines.append(
                f"{path[:44]:<44} {median(server):>10.1f} {p99(server):>10.1f}"
                f" {median(wall):>10.1f} {p99(wall):>10.1f}"
            )
        lines.append(f"{'slowest page, server p99':<44} {'':>10} {worst:>10.1f}")
        _report("\n".join(lines))
        assert d.stop() == 0
    finally:
        d.close()
    assert worst <= 50.0, f"slowest page p99 {worst:.1f} ms"


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` so far (from /proc), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


READERS = textwrap.dedent("""
    import asyncio, signal, sys
    import aiohttp
    url, token, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    got = [0] * n
    async def read(i):
        async with aiohttp.ClientSession() as http:
            async with http.get(url, headers={"Authorization": "Bearer " + token},
                                timeout=aiohttp.ClientTimeout(total=None)) as resp:
                async for chunk in resp.content.iter_any():
                    got[i] += len(chunk)
    async def main():
        tasks = [asyncio.ensure_future(read(i)) for i in range(n)]
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        print("open", flush=True)
        await stop.wait()
        print(min(got), sum(got), flush=True)
    asyncio.run(main())
""")


def test_throughput_with_20_live_pages_vs_none(short_tmp: Path) -> None:
    """One daemon; rounds alternate none / 20 open /runs/stream pages (in another process,
    like browsers) while 4 socket connections trigger no-op runs; medians compared."""
    base = short_tmp / "live"
    base.mkdir()
    jobs = '[[jobs]]\nname = "noop"\non = "never"\naction = { type = "python", callable = "benchacts:noop" }\n'
    web, url = _web()
    d = DaemonProcess(base, config_text(base, daemon='log_level = "warning"', extra=web, jobs=jobs))
    (base / "benchacts.py").write_text("async def noop(ctx):\n    return None\n")
    d.start()
    n = scaled(20_000)
    try:
        token = web_token(d)

        assert d.proc is not None
        pid = d.proc.pid

        async def burst() -> tuple[float, float]:
            """(runs/s, the daemon's CPU microseconds per run)."""
            cpu0, t0 = _cpu_seconds(pid), time.perf_counter()
            async with asyncio.timeout(300):
                await asyncio.gather(*(_client(d.socket, n // 4, WINDOW) for _ in range(4)))
                while d.call_sync("status")["runs_in_flight"]:  # noqa: ASYNC110 - another process
                    await asyncio.sleep(0.005)
            runs = (n // 4) * 4
            return runs / (time.perf_counter() - t0), (_cpu_seconds(pid) - cpu0) / runs * 1e6

        none, live = [], []
        seen = []
        uvloop.run(burst())  # warm-up
        for _ in range(ROUNDS):
            none.append(uvloop.run(burst()))
            readers = subprocess.Popen(
                [sys.executable, "-c", READERS, url + "/runs/stream", token, str(PAGES_OPEN)],
                stdout=subprocess.PIPE, text=True,
            )  # fmt: skip
            assert readers.stdout is not None
            assert readers.stdout.readline().strip() == "open"
            time.sleep(0.5)  # the streams are open (the feed watches the store)
            live.append(uvloop.run(burst()))
            readers.terminate()
            out, _ = readers.communicate(timeout=30)
            time.sleep(IDLE_GRACE + 1)  # the feed stops watching: "none" is really none
            least, total = map(int, out.split())
            seen.append((least, total))
        assert d.stop() == 0
    finally:
        d.close()
    rows = [
        Row(
            "no-op runs/s, 20 live pages vs none, median",
            median(r for r, _ in live),
            median(r for r, _ in none),
            "runs/s",
            "same daemon, no page open",
        ),
        Row(
            "daemon CPU us per run, 20 pages vs none, median",
            median(c for _, c in live),
            median(c for _, c in none),
            "us/run",
            "same daemon, no page open",
            higher_is_better=False,
        ),
        Row(
            "median of the rounds' paired ratios: runs/s",
            median(lv[0] / nn[0] for lv, nn in zip(live, none, strict=True)),
            None,
            "live/none",
        ),
        Row(
            "median of the rounds' paired ratios: CPU/run",
            median(lv[1] / nn[1] for lv, nn in zip(live, none, strict=True)),
            None,
            "live/none",
        ),
        *(
            Row(f"  round {i + 1} runs/s", lv[0], nn[0], "runs/s", "no page open")
            for i, (lv, nn) in enumerate(zip(live, none, strict=True))
        ),
        *(
            Row(
                f"  round {i + 1} CPU us/run",
                lv[1],
                nn[1],
                "us/run",
                "no page open",
                higher_is_better=False,
            )
            for i, (lv, nn) in enumerate(zip(live, none, strict=True))
        ),
        Row("bytes streamed to each page (least), last round", seen[-1][0], None, "bytes"),
    ]
    print_table("engine throughput with live pages", rows)
    assert all(least > 0 for least, _ in seen)  # every page really got updates
