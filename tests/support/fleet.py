"""Several real daemons on one PostgreSQL database, for the fleet's system tests and bench.

fleet = Fleet(daemon_factory, dsn, n=3, ttl="2s", jobs=..., services=...)
fleet.start()                      # migrate, then start every daemon (each its own dir)
fleet.daemons[0].call_sync(...)    # any daemon's socket
fleet.executions()                 # lines the shared action module wrote: "run attempt pid"

The action module ``fleetacts`` is written next to every daemon's config; its functions
append one line per call to one shared file (O_APPEND writes of a line are atomic), so a
test can count how often each run was really executed, whichever daemon ran it.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.support.admin_client import AdminClient
from tests.support.daemon import BIN, DaemonProcess
from tests.support.postgres import find_bindir

ACTIONS = """
import asyncio, os

LOG = os.environ.get("FLEET_LOG", os.devnull)
DELAY = float(os.environ.get("FLEET_DELAY", "0"))


def _note(ctx, what):
    fd = os.open(LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{ctx.run_id} {ctx.attempt} {os.getpid()} {what}\\n".encode())
    finally:
        os.close(fd)


async def record(ctx):
    _note(ctx, "done")
    return {}


async def slow(ctx):
    _note(ctx, "start")
    await asyncio.sleep(DELAY)
    _note(ctx, "done")
    return {}
"""


def store_section(dsn: str, *, ttl: str, node_id: str) -> str:
    return (
        f'[store]\nbackend = "postgresql"\ndsn = "{dsn}"\nlease_ttl = "{ttl}"\n'
        f'node_id = "{node_id}"\n'
    )


class Fleet:
    def __init__(
        self,
        factory: Callable[..., DaemonProcess],
        dsn: str,
        *,
        n: int = 3,
        ttl: str = "2s",
        jobs: str = "",
        services: str = "",
        workers: int = 16,
        delay: float = 0.0,
    ) -> None:
        self.dsn = dsn
        self.delay = delay
        self.daemons: list[DaemonProcess] = []
        for i in range(n):
            extra = store_section(dsn, ttl=ttl, node_id=f"n{i}")
            extra += f"\n[workers]\nmax_concurrency = {workers}\n"
            d = factory(jobs=jobs, services=services, extra=extra, sub=f"d{i}")
            (d.base / "fleetacts.py").write_text(ACTIONS)
            self.daemons.append(d)
        self.log = self.daemons[0].base.parent / "executions.log"
        self.log.touch()

    def migrate(self) -> None:
        proc = subprocess.run(
            [str(BIN / "automationd"), "migrate", "--config", str(self.daemons[0].config)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr

    def env(self) -> dict[str, str]:
        return {"FLEET_LOG": str(self.log), "FLEET_DELAY": str(self.delay)}

    def start(self) -> None:
        self.migrate()
        for d in self.daemons:
            d.start(env=self.env(), wait=False)
        for d in self.daemons:
            d.wait_ready(30)

    def restart(self, i: int) -> None:
        self.daemons[i].start(env=self.env())

    def pipeline(
        self, i: int, requests: list[tuple[str, dict[str, Any]]], timeout: float = 60.0
    ) -> list[dict[str, Any]]:
        """Send ``requests`` pipelined on one connection to daemon ``i``; the answers."""

        async def go() -> list[dict[str, Any]]:
            async with (
                asyncio.timeout(timeout),
                AdminClient(self.daemons[i].socket, timeout=timeout) as c,
            ):
                return await c.pipeline(requests)

        return asyncio.run(go())

    def executions(self) -> list[tuple[str, int, int, str]]:
        out = []
        for line in self.log.read_text().splitlines():
            run_id, attempt, pid, what = line.split()
            out.append((run_id, int(attempt), int(pid), what))
        return out

    def leader(self) -> str | None:
        """Node id of the daemon that leads now, as the fleet says (None: none yet)."""
        for d in self.daemons:
            if d.proc is None or d.proc.poll() is not None:
                continue
            for w in d.call_sync("workers.list"):
                if w["leader"]:
                    return str(w["id"])
            return None
        return None

    def alive(self) -> list[DaemonProcess]:
        return [d for d in self.daemons if d.proc is not None and d.proc.poll() is None]

    def wait_for(self, what: Callable[[], Any], timeout: float, step: float = 0.1) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            got = what()
            if got:
                return got
            if time.monotonic() > deadline:
                raise TimeoutError(f"not within {timeout}s: {what}")
            time.sleep(step)

    def psql(self, sql: str) -> list[list[str]]:
        """Rows of a query on the fleet's database (tab-separated psql output)."""
        host = self.dsn.split("host=", 1)[1]
        db = self.dsn.split("/", 3)[3].split("?", 1)[0]
        proc = subprocess.run(
            [
                str((find_bindir() or Path("/usr/bin")) / "psql"),
                "-h",
                host,
                "-U",
                "postgres",
                "-d",
                db,
                "-qAt",
                "-F",
                "\t",
                "-c",
                sql,
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        return [line.split("\t") for line in proc.stdout.splitlines() if line]
