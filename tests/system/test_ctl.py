"""`automationctl` against a real admin socket served in-process with a fake command table."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from automationd.admin.command import Command
from automationd.admin.server import AdminServer, serve_admin
from automationd.caller import Caller
from automationd.ctl import build_parser, main, request_of
from automationd.errors import AdminError, not_found

RUN: dict[str, Any] = {
    "id": "01JRUN0000000000000000000A",
    "job": "sync",
    "state": "succeeded",
    "trigger": "manual",
    "created_at": "2026-11-22T13:45:00.123Z",
    "attempts": 2,
    "targets": {"total": 3, "succeeded": 2, "failed": 1, "pending": 0},
    "error": None,
}
JOB: dict[str, Any] = {
    "name": "sync",
    "schedule": "0 */6 * * *",
    "on": None,
    "state": "enabled",
    "source": "config",
    "next_run": "2026-11-22T18:00:00.000Z",
    "last_run": None,
    "run_count": 4,
    "service": "ads_api",
}
RESULTS: dict[str, Any] = {
    "status": {"version": "0.1.0", "pid": 42, "uptime_s": 3725.4, "jobs": {"total": 1}},
    "jobs.list": [JOB],
    "jobs.get": {
        **JOB,
        "next_fires": [{"at": "2026-11-22T18:00:00.000Z", "note": "DST gap"}],
        "last_runs": [RUN],
    },
    "jobs.add": {**JOB, "source": "api"},
    "jobs.trigger": {**RUN, "state": "queued", "existing": True},
    "runs.list": [RUN],
    "runs.get": {
        **RUN,
        "attempts": [
            {"n": 1, "phase": "perform", "target": "sku-1", "outcome": "timeout", "error": "slow"},
        ],
        "targets": [{"target": "sku-1", "state": "failed", "attempts": 1, "error": None}],
    },
    "runs.logs": [
        {"attempt": 1, "phase": "perform", "target": "sku-1", "stream": "stdout", "text": "hi"}
    ],
    "dlq.retry": {"requeued": 3},
    "events.replay": {"events": 2, "triggered": ["r1", "r2"]},
    "limits.list": [{"service": "ads_api", "rate": "200/1h", "burst": 20, "tokens": 3.25}],
    "breakers.list": [{"service": "ads_api", "state": "open", "failures": 5}],
    "reload": {"jobs_added": 1, "jobs_updated": 0, "jobs_removed": 2},
}


class Recorder(dict[str, Any]):
    """A handler per command that records (cmd, args) and answers a canned result."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, dict[str, Any]]] = []
        for cmd in RESULTS:
            self[cmd] = Command(cmd, self._make(cmd), writes=False)
        self["jobs.remove"] = Command("jobs.remove", self._missing, writes=True)

    def _make(self, cmd: str) -> Any:
        async def handler(args: dict[str, Any], caller: Caller) -> Any:
            self.seen.append((cmd, args))
            return RESULTS[cmd]

        return handler

    async def _missing(self, args: dict[str, Any], caller: Caller) -> Any:
        raise not_found(f"no job named {args.get('name')!r}")


@contextlib.asynccontextmanager
async def daemon(short_tmp: Path) -> AsyncIterator[tuple[AdminServer, Recorder]]:
    handlers = Recorder()
    with capture_logs():  # keep the server's log lines out of ctl's captured stdout
        async with serve_admin(short_tmp / "admin.sock", handlers) as server:
            yield server, handlers


async def ctl(server: AdminServer, *argv: str) -> int:
    """Run ctl.main in a thread (it blocks on its socket) while the loop serves it."""
    return await asyncio.to_thread(main, ["--socket", str(server.path), *argv])


# --- argv → request (no socket) ----------------------------------------------------------------

REQUESTS: list[tuple[list[str], str, dict[str, Any]]] = [
    (["status"], "status", {}),
    (["jobs", "list", "--state", "paused"], "jobs.list", {"state": "paused"}),
    (["jobs", "show", "a"], "jobs.get", {"name": "a"}),
    (["jobs", "remove", "a"], "jobs.remove", {"name": "a"}),
    (["jobs", "pause", "a"], "jobs.pause", {"name": "a"}),
    (["jobs", "resume", "a"], "jobs.resume", {"name": "a"}),
    (["jobs", "add", "--json-job", '{"name":"b"}'], "jobs.add", {"job": {"name": "b"}}),
    (
        ["jobs", "trigger", "a", "--payload", '{"x":1}', "--idempotency-key", "k", "--dry-run"],
        "jobs.trigger",
        {"name": "a", "payload": {"x": 1}, "idempotency_key": "k", "dry_run": True},
    ),
    (["jobs", "trigger", "a"], "jobs.trigger", {"name": "a"}),
    (
        ["runs", "list", "--job", "a", "--state", "failed", "--limit", "5", "--offset", "10"],
        "runs.list",
        {"job": "a", "state": "failed", "limit": 5, "offset": 10},
    ),
    (["runs", "show", "R1"], "runs.get", {"id": "R1"}),
    (["runs", "logs", "R1"], "runs.logs", {"id": "R1"}),
    (["runs", "cancel", "R1"], "runs.cancel", {"id": "R1"}),
    (["runs", "retry", "R1"], "runs.retry", {"id": "R1"}),
    (["dlq", "list", "--job", "a", "--limit", "3"], "dlq.list", {"job": "a", "limit": 3}),
    (["dlq", "retry", "D1"], "dlq.retry", {"id": "D1"}),
    (["dlq", "retry", "--job", "a"], "dlq.retry", {"job": "a"}),
    (["dlq", "purge", "--all"], "dlq.purge", {"all": True}),
    (
        ["events", "list", "--name", "x.*", "--limit", "2"],
        "events.list",
        {"name": "x.*", "limit": 2},
    ),
    (
        ["events", "publish", "inv.changed", "--payload", '{"r":"eu"}', "--idempotency-key", "k"],
        "events.publish",
        {"name": "inv.changed", "payload": {"r": "eu"}, "idempotency_key": "k"},
    ),
    (
        ["events", "replay", "--since", "2026-01-01T00:00:00Z", "--name", "x", "--force"],
        "events.replay",
        {"since": "2026-01-01T00:00:00Z", "name": "x", "force": True},
    ),
    (["limits"], "limits.list", {}),
    (["breakers"], "breakers.list", {}),
    (["reload"], "reload", {}),
    (["--json", "--socket", "/x", "reload"], "reload", {}),
    (["reload", "--json", "--socket", "/x"], "reload", {}),
]


@pytest.mark.parametrize(("argv", "cmd", "args"), REQUESTS)
def test_argv_maps_to_socket_request(argv: list[str], cmd: str, args: dict[str, Any]) -> None:
    """Each subcommand sends its SPEC §3 cmd with exactly the given args."""
    assert request_of(build_parser().parse_args(argv)) == (cmd, args)


def test_global_options_work_on_either_side() -> None:
    """--json and --socket are accepted before or after the subcommand."""
    for argv in (["--json", "--socket", "/x", "status"], ["status", "--json", "--socket", "/x"]):
        ns = build_parser().parse_args(argv)
        assert (ns.json, ns.socket) == (True, "/x")


def test_since_accepts_a_duration() -> None:
    """`--since 1h` is sent as an RFC 3339 UTC time an hour ago."""
    _, args = request_of(build_parser().parse_args(["events", "list", "--since", "1h"]))
    assert args["since"].endswith("Z") and args["since"][10] == "T"


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["frobnicate"],
        ["jobs"],
        ["jobs", "show"],
        ["jobs", "trigger", "a", "--payload", "{not json"],
        ["jobs", "add"],
        ["jobs", "add", "--json-job", "[1]"],
        ["dlq", "retry"],
        ["dlq", "retry", "D1", "--all"],
        ["runs", "list", "--limit", "-3"],
        ["events", "replay"],
        ["events", "list", "--since", "yesterday"],
    ],
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """Bad command lines exit 2 with argparse's usage message, before touching any socket."""
    assert main(["--socket", "/nonexistent/x.sock", *argv]) == 2
    assert "usage:" in capsys.readouterr().err


# --- against the socket ------------------------------------------------------------------------


async def test_status_human_and_json(short_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`status` exits 0 with a readable listing; `--json` prints exactly the result."""
    async with asyncio.timeout(10), daemon(short_tmp) as (server, _):
        assert await ctl(server, "status") == 0
        out = capsys.readouterr().out
        assert "version" in out and "0.1.0" in out and "uptime   1h2m\n" in out
        assert await ctl(server, "--json", "status") == 0
        assert json.loads(capsys.readouterr().out) == RESULTS["status"]


async def test_daemon_error_exits_1(short_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An ok=false answer exits 1 and prints `error: <code>: <message>` on stderr."""
    async with asyncio.timeout(10), daemon(short_tmp) as (server, _):
        assert await ctl(server, "jobs", "remove", "ghost") == 1
        captured = capsys.readouterr()
        assert captured.err.strip() == "error: not_found: no job named 'ghost'"
        assert captured.out == ""
        assert await ctl(server, "runs", "cancel", "R1") == 1  # not in the fake table
        assert "error: bad_request: unknown command 'runs.cancel'" in capsys.readouterr().err


async def test_unreachable_socket_exits_3(
    short_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No socket, or nobody listening, exits 3 with a message naming the path."""
    missing = short_tmp / "missing.sock"
    async with asyncio.timeout(10):
        assert await asyncio.to_thread(main, ["--socket", str(missing), "status"]) == 3
        assert f"cannot reach the daemon at {missing}" in capsys.readouterr().err
        path = str(short_tmp / "stale.sock")
        stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        stale.bind(path)  # bound, never listening
        stale.close()
        assert await asyncio.to_thread(main, ["--socket", path, "status"]) == 3
        assert "stale.sock: Connection refused" in capsys.readouterr().err


async def test_tables(short_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Human views show the SPEC columns, next fires, attempts, targets and log headers."""
    async with asyncio.timeout(10), daemon(short_tmp) as (server, _):
        assert await ctl(server, "jobs", "list") == 0
        header, row = capsys.readouterr().out.splitlines()
        assert header.split() == [
            "NAME", "STATE", "SCHEDULE/ON", "SERVICE", "RUNS", "NEXT", "RUN", "LAST", "RUN"
        ]  # fmt: skip
        assert row.split()[:2] == ["sync", "enabled"] and "2026-11-22 18:00:00Z" in row

        assert await ctl(server, "jobs", "show", "sync") == 0
        out = capsys.readouterr().out
        assert "Next fires:" in out and "DST gap" in out
        assert "Last runs:" in out and RUN["id"] in out and "2/3 ok, 1 failed" in out

        assert await ctl(server, "runs", "show", RUN["id"]) == 0
        out = capsys.readouterr().out
        assert "Attempts:" in out and "timeout" in out and "Targets:" in out and "sku-1" in out

        assert await ctl(server, "runs", "logs", RUN["id"]) == 0
        assert capsys.readouterr().out == "== attempt 1, perform, target sku-1, stdout ==\nhi\n"

        assert await ctl(server, "jobs", "trigger", "sync") == 0
        out = capsys.readouterr().out
        assert RUN["id"] in out and "existing" in out

        for argv, text in [
            (["limits"], "3.2"),
            (["breakers"], "open"),
            (["dlq", "retry", "--all"], "requeued 3"),
            (["events", "replay", "--since", "1d"], "replayed 2 event(s); triggered runs: r1, r2"),
            (["reload"], "reloaded: 1 added, 0 updated, 2 removed"),
        ]:
            assert await ctl(server, *argv) == 0
            assert text in capsys.readouterr().out


async def test_jobs_add_from_toml(short_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`jobs add --file` sends the TOML file's keys as {job: {...}}."""
    job = short_tmp / "job.toml"
    job.write_text(
        'name = "b"\nschedule = "@hourly"\naction = { type = "exec", argv = ["true"] }\n'
    )
    async with asyncio.timeout(10), daemon(short_tmp) as (server, rec):
        assert await ctl(server, "jobs", "add", "--file", str(job)) == 0
        assert "added job sync" in capsys.readouterr().out
    assert rec.seen == [
        (
            "jobs.add",
            {
                "job": {
                    "name": "b",
                    "schedule": "@hourly",
                    "action": {"type": "exec", "argv": ["true"]},
                }
            },
        )
    ]


async def test_console_script_and_socket_discovery(short_tmp: Path, bin_dir: Path) -> None:
    """The installed script finds the socket via $AUTOMATIOND_SOCKET; --socket wins over it."""
    async with asyncio.timeout(20), daemon(short_tmp) as (server, _):
        env = {**os.environ, "AUTOMATIOND_SOCKET": str(server.path)}
        proc = await asyncio.create_subprocess_exec(
            str(bin_dir / "automationctl"), "--json", "status",
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        out, err = await proc.communicate()
        assert proc.returncode == 0, err.decode()
        assert json.loads(out) == RESULTS["status"]
        proc = await asyncio.create_subprocess_exec(
            str(bin_dir / "automationctl"), "--socket", str(short_tmp / "nope.sock"), "status",
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        out, err = await proc.communicate()
        assert proc.returncode == 3 and b"nope.sock" in err


def test_admin_error_is_what_the_helper_raises() -> None:
    """The shared test client raises automationd.errors.AdminError (code + message)."""
    from tests.support.admin_client import _result

    with pytest.raises(AdminError) as err:
        _result({"id": 1, "ok": False, "error": {"code": "conflict", "message": "exists"}})
    assert (err.value.code, err.value.message) == ("conflict", "exists")
    assert _result({"id": 1, "ok": True, "result": [1]}) == [1]
