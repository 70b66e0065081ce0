"""A real PostgreSQL server for the tests, started by the suite itself (no mocks).

``PgServer.start(base)`` runs ``initdb`` into ``base/data`` and ``pg_ctl start`` with the
server listening only on a Unix socket in ``base`` (``listen_addresses=''``): nothing on the
network, nothing shared with a system cluster. As root the server runs as the ``postgres``
user (``runuser``), which must be able to reach ``base``. Debian keeps the server binaries
off ``PATH`` (``/usr/lib/postgresql/N/bin``); ``find_bindir`` looks there first.

``server.create_db()`` makes a fresh, empty database and returns its DSN, so every test gets
its own database on the one session-wide server.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

_counter = itertools.count(1)


def find_bindir() -> Path | None:
    """The newest PostgreSQL server binaries: Debian's layout, then whatever is on PATH."""
    root = Path("/usr/lib/postgresql")
    if root.is_dir():
        versions = sorted(
            (p for p in root.iterdir() if (p / "bin" / "initdb").exists()),
            key=lambda p: int(p.name) if p.name.isdigit() else 0,
        )
        if versions:
            return versions[-1] / "bin"
    found = shutil.which("initdb")
    return Path(found).parent if found else None


class PgServer:
    def __init__(self, base: Path, bindir: Path) -> None:
        self.base = base
        self.bindir = bindir
        self.data = base / "data"
        self.log = base / "server.log"
        self.user = "postgres"
        self._as: list[str] = []
        if os.geteuid() == 0:
            self._as = ["runuser", "-u", "postgres", "--"]

    @classmethod
    def start(cls, bindir: Path, *, fsync: bool = False, base: Path | None = None) -> PgServer:
        base = base or Path(tempfile.mkdtemp(prefix="pg-", dir="/tmp"))
        server = cls(base, bindir)
        server._init(fsync=fsync)
        return server

    def _run(self, *argv: str, timeout: float = 120.0) -> None:
        proc = subprocess.run(
            [*self._as, *argv], capture_output=True, text=True, timeout=timeout, check=False
        )
        if proc.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed ({proc.returncode}): {proc.stderr[-2000:]}")

    def _init(self, *, fsync: bool) -> None:
        if self._as:
            pw = pwd.getpwnam("postgres")
            os.chown(self.base, pw.pw_uid, pw.pw_gid)
            os.chmod(self.base, 0o755)
        self.base.chmod(0o755)
        self._run(
            str(self.bindir / "initdb"),
            "-D",
            str(self.data),
            "-U",
            self.user,
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--no-locale",
            "--no-sync",
        )
        opts = [
            "-c listen_addresses=''",
            f"-c unix_socket_directories='{self.base}'",
            "-c max_connections=200",
            "-c shared_buffers=64MB",
            f"-c fsync={'on' if fsync else 'off'}",
            f"-c synchronous_commit={'on' if fsync else 'off'}",
            f"-c full_page_writes={'on' if fsync else 'off'}",
        ]
        self._run(
            str(self.bindir / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.log),
            "-w",
            "-t",
            "60",
            "-o",
            " ".join(opts),
            "start",
        )

    def dsn(self, db: str = "postgres") -> str:
        return f"postgresql://{self.user}@/{db}?host={self.base}"

    def psql(self, sql: str, db: str = "postgres") -> str:
        proc = subprocess.run(
            [
                str(self.bindir / "psql"),
                "-h",
                str(self.base),
                "-U",
                self.user,
                "-d",
                db,
                "-v",
                "ON_ERROR_STOP=1",
                "-qAtc",
                sql,
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"psql failed: {proc.stderr[-2000:]}")
        return proc.stdout

    def create_db(self, prefix: str = "t") -> str:
        """A fresh empty database; returns its DSN."""
        name = f"{prefix}_{os.getpid()}_{next(_counter)}"
        self.psql(f'CREATE DATABASE "{name}"')
        return self.dsn(name)

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop")
        shutil.rmtree(self.base, ignore_errors=True)
