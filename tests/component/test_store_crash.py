"""Durability across kill -9: every write the store acknowledged is on disk after the crash."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from automationd.store.sqlite.store import open_sqlite

CHILD = Path(__file__).resolve().parent.parent / "support" / "store_crash_child.py"


async def test_acked_writes_survive_kill_9(tmp_path: Path) -> None:
    """Acked ids all survive a SIGKILL mid-stream, and the lock dies with the process.

    1. A child process opens the store and runs 64 concurrent awaited-write loops, printing
       each id after its await returns.
    2. After a few hundred acked ids the test SIGKILLs it, then reads every id it printed.
    3. The store is reopened in this process (the flock went away with the child).
    Result: every acked id is present.
    """
    async with asyncio.timeout(20):
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(CHILD),
            str(tmp_path),
            "64",
            stdout=asyncio.subprocess.PIPE,
        )
        assert proc.stdout is not None
        assert await proc.stdout.readline() == b"ready\n"
        acked: list[str] = []
        while len(acked) < 400:
            line = await proc.stdout.readline()
            assert line, "child exited early"
            acked.append(line.decode().strip())
        proc.kill()
        rest = await proc.stdout.read()  # ids acked before the kill landed count too
        await proc.wait()
        acked += [x for x in rest.decode().splitlines() if x]
        # A line cut by the kill is not a complete ack; ids are fixed width.
        acked = [x for x in acked if len(x) == len("ev-00000000")]

        async with open_sqlite(tmp_path) as store:
            rows = await store.events(since=None, until=None, limit=None, newest_first=False)
        stored = {e.id for e in rows}
        missing = [x for x in acked if x not in stored]
        assert not missing, f"{len(missing)} acked ids lost, e.g. {missing[:5]}"
        assert len(acked) >= 400
