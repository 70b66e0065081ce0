"""kill -9 loop under keyed trigger load (issue 10; ``slow``: about a minute).

Nothing acknowledged is lost, no idempotency key has two runs, and no action runs twice
without an ``interrupted`` attempt on record (SPEC §4): every attempt is durable before its
action starts, so a crash between an action and its recorded end leaves an open attempt that
recovery closes as interrupted.
"""

from __future__ import annotations

import asyncio
import json
import random
import sqlite3
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from tests.support.daemon import DaemonProcess

pytestmark = pytest.mark.slow

CYCLES = 50
CONNS = 4
IN_FLIGHT = 16  # pipelined requests per connection

ACTS = """
import asyncio
import os


async def work(ctx):
    fd = os.open("executions.txt", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(fd, f"{ctx.run_id} {ctx.attempt} {os.getpid()}\\n".encode())  # one atomic append
    os.close(fd)
    await asyncio.sleep(0.005)  # the window a kill can land in, between action and end
"""

JOBS = """
[[jobs]]
name = "work"
on = "never"
retries = 50
backoff = { base = "10ms", max = "10ms", jitter = 0.0 }
action = { type = "python", callable = "acts:work" }
"""


@dataclass
class Ledger:
    """What the client was told: key → run id, for every acknowledged trigger."""

    acked: dict[str, str] = field(default_factory=dict)
    pending: list[str] = field(default_factory=list)  # sent, never answered: send again
    next_key: int = 0
    conflicts: list[tuple[str, str, str]] = field(default_factory=list)

    def take(self, n: int) -> list[str]:
        keys, self.pending = self.pending[:n], self.pending[n:]
        while len(keys) < n:
            keys.append(f"k-{self.next_key:07d}")
            self.next_key += 1
        return keys

    def ack(self, key: str, run_id: str) -> None:
        seen = self.acked.setdefault(key, run_id)
        if seen != run_id:
            self.conflicts.append((key, seen, run_id))


async def _load(d: DaemonProcess, ledger: Ledger, stop: asyncio.Event) -> None:
    """One connection pipelining keyed triggers until the daemon dies or ``stop``."""
    try:
        reader, writer = await asyncio.open_unix_connection(str(d.socket))
    except OSError:
        return
    keys: list[str] = []
    try:
        while not stop.is_set():
            keys = ledger.take(IN_FLIGHT)
            lines = [
                json.dumps(
                    {"id": i, "cmd": "jobs.trigger", "args": {"name": "work", "idempotency_key": k}}
                )
                for i, k in enumerate(keys)
            ]
            writer.write(("\n".join(lines) + "\n").encode())
            answered: set[int] = set()
            while len(answered) < len(keys):
                line = await reader.readline()
                if not line:
                    raise EOFError
                resp = json.loads(line)
                answered.add(resp["id"])
                if resp.get("ok"):
                    ledger.ack(keys[resp["id"]], resp["result"]["id"])
                else:
                    ledger.pending.append(keys[resp["id"]])
            keys = []
    except (OSError, EOFError, ValueError):
        pass
    finally:
        ledger.pending.extend(k for k in keys if k not in ledger.acked)
        writer.close()


async def _cycle(d: DaemonProcess, ledger: Ledger, rng: random.Random) -> None:
    await asyncio.to_thread(d.start)
    stop = asyncio.Event()
    async with asyncio.timeout(30), asyncio.TaskGroup() as tg:
        for _ in range(CONNS):
            tg.create_task(_load(d, ledger, stop))
        await asyncio.sleep(rng.uniform(0.05, 0.4))
        d.kill9()  # mid-load: requests in flight, actions running, ends not yet durable
        stop.set()


async def test_kill9_loop_under_keyed_load_loses_nothing_and_never_reruns_silently(
    daemon_factory: Callable[..., DaemonProcess],
) -> None:
    """1. 50 cycles: start the daemon, drive keyed triggers over 4 pipelined connections
       (the client keeps a ledger of acknowledged runs and re-sends unanswered keys), kill -9
       it at a random moment.
    2. Start it once more and let every run finish; stop it; read its database.
    Result: every acknowledged run exists under its key and succeeded; no key has two runs
    and no re-sent key changed its run; each attempt ran its action at most once; and every
    run whose action ran more than once shows all but its last execution as ``interrupted``
    attempts."""
    d = daemon_factory(jobs=JOBS, extra="[workers]\nmax_concurrency = 64\n")
    (d.base / "acts.py").write_text(ACTS)
    ledger = Ledger()
    rng = random.Random(10)
    started = time.monotonic()
    for _ in range(CYCLES):
        await _cycle(d, ledger, rng)
    d.start()
    deadline = time.monotonic() + 120
    while (await d.call("status"))["runs_in_flight"] or ledger.pending:
        keys, ledger.pending = ledger.pending, []
        for key in keys:  # sent but never answered: ask again, as a client would
            run = await d.call("jobs.trigger", {"name": "work", "idempotency_key": key})
            ledger.ack(key, run["id"])
        assert time.monotonic() < deadline, "runs did not finish"
        await asyncio.sleep(0.1)
    assert d.stop() == 0
    elapsed = time.monotonic() - started

    conn = sqlite3.connect(f"file:{d.base / 'state' / 'automationd.db'}?mode=ro", uri=True)
    runs = conn.execute("SELECT id, idempotency_key, state FROM runs WHERE job='work'").fetchall()
    attempts: dict[str, dict[int, str | None]] = defaultdict(dict)
    for run_id, n, outcome in conn.execute("SELECT run_id, n, outcome FROM attempts"):
        attempts[run_id][n] = outcome
    conn.close()

    by_key = Counter(key for _, key, _ in runs)
    assert not [k for k, n in by_key.items() if n > 1], "a key with two runs"
    assert not ledger.conflicts, ledger.conflicts[:5]
    stored = {key: (run_id, state) for run_id, key, state in runs}
    lost = [k for k, rid in ledger.acked.items() if stored.get(k, ("", ""))[0] != rid]
    assert not lost, f"{len(lost)} acknowledged runs lost, e.g. {lost[:5]}"
    assert {state for _, state in stored.values()} == {"succeeded"}

    executions: dict[str, list[int]] = defaultdict(list)
    for line in (d.base / "executions.txt").read_text().splitlines():
        run_id, n, _pid = line.split()
        executions[run_id].append(int(n))
    assert set(executions) == {run_id for run_id, _, _ in runs}
    twice = {r: ns for r, ns in executions.items() if len(ns) > 1}
    for run_id, ns in executions.items():
        assert len(ns) == len(set(ns)), f"{run_id}: an attempt ran its action twice: {ns}"
        recorded = attempts[run_id]
        assert set(ns) <= set(recorded), (run_id, ns, recorded)
        assert list(recorded.values()).count("ok") == 1, (run_id, recorded)
        ok = next(n for n, o in recorded.items() if o == "ok")
        silent = [n for n in ns if n != ok and recorded[n] != "interrupted"]
        assert not silent, f"{run_id} ran again without an interrupted attempt: {recorded}"
    assert twice, "no kill landed between an action and its recorded end: the test proved nothing"
    print(
        f"\n{CYCLES} kill -9 cycles in {elapsed:.0f}s: {len(ledger.acked)} acknowledged runs,"
        f" {len(twice)} ran their action more than once, each with interrupted attempts"
    )
