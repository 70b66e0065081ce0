"""exec actions against real child processes: exit codes, process groups, env, output caps."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import sys
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from automationd.actions import exec as exec_action
from automationd.actions.base import OUTPUT_CAP, ActionResult, HttpClients
from automationd.actions.build import build_action
from automationd.actions.exec import kill_orphans
from automationd.config.model import ExecAction
from automationd.errors import ActionError, ErrorKind
from automationd.records import Phase
from tests.support.actions import alive, make_ctx, wait_dead


@pytest.fixture(autouse=True)
def short_grace(monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGTERM → SIGKILL escalation in 0.3 s instead of 5 s."""
    monkeypatch.setattr(exec_action, "KILL_GRACE", 0.3)


@pytest.fixture
async def http() -> AsyncIterator[HttpClients]:
    async with HttpClients() as clients:
        yield clients


def _py(code: str) -> tuple[str, ...]:
    return (sys.executable, "-c", code)


async def _run(
    http: HttpClients,
    argv: tuple[str, ...],
    *,
    job_env: Mapping[str, str] | None = None,
    **spec: Any,
) -> ActionResult:
    ctx_args = {
        k: spec.pop(k) for k in ("phase", "timeout", "payload", "target", "on_spawn") if k in spec
    }
    action = build_action(ExecAction(argv=argv, **spec), http=http, job_env=job_env)
    async with asyncio.timeout(5):
        return await action(make_ctx(**ctx_args))


def _read_pid(path: Path) -> int | None:
    text = path.read_text().strip() if path.exists() else ""
    return int(text) if text else None


async def _wait_for_pid(path: Path) -> int:
    """The pid a child wrote to ``path``; a file written by another process has no event."""
    async with asyncio.timeout(5):
        while (pid := _read_pid(path)) is None:  # noqa: ASYNC110 - no event to wait on
            await asyncio.sleep(0.02)
    return pid


@pytest.mark.parametrize(
    ("code", "retryable", "kind"),
    [
        (75, frozenset(), ErrorKind.RETRYABLE),
        (2, frozenset(), ErrorKind.FATAL),
        (1, frozenset(), ErrorKind.FATAL),
        (2, frozenset({2}), ErrorKind.RETRYABLE),
        (9, frozenset({2}), ErrorKind.FATAL),
    ],
)
async def test_exit_codes(
    http: HttpClients, code: int, retryable: frozenset[int], kind: ErrorKind
) -> None:
    """75 and listed codes are retryable, other non-zero codes fatal."""
    with pytest.raises(ActionError) as info:
        await _run(http, _py(f"raise SystemExit({code})"), retryable_exit_codes=retryable)
    assert info.value.kind is kind
    assert f"exited with code {code}" in info.value.message


async def test_exit_zero_is_success_with_output(http: HttpClients) -> None:
    """Exit 0 succeeds; both streams are captured; non-JSON stdout leaves the value None."""
    result = await _run(http, ("sh", "-c", "echo out; echo err >&2"))
    assert result.value is None
    assert dict(result.output) == {"stdout": "out\n", "stderr": "err\n"}


async def test_failure_keeps_output_and_names_last_stderr_line(http: HttpClients) -> None:
    """A failed run carries its captured output and the last stderr line in the message."""
    with pytest.raises(ActionError) as info:
        await _run(http, ("sh", "-c", "echo progress; echo 'disk full' >&2; exit 4"))
    assert info.value.message == "exited with code 4: disk full"
    assert dict(info.value.output) == {"stdout": "progress\n", "stderr": "disk full\n"}


async def test_check_exit_one_skips_but_keeps_value(http: HttpClients) -> None:
    """In check, exit 1 means skip even when stdout also holds a JSON object."""
    result = await _run(
        http, ("sh", "-c", 'echo \'{"why": "nothing new"}\'; exit 1'), phase=Phase.CHECK
    )
    assert result.perform is False
    assert result.value == {"why": "nothing new"}


async def test_check_other_code_fails(http: HttpClients) -> None:
    """In check, exit codes other than 0 and 1 are still failures."""
    with pytest.raises(ActionError) as info:
        await _run(http, ("sh", "-c", "exit 75"), phase=Phase.CHECK)
    assert info.value.kind is ErrorKind.RETRYABLE


async def test_timeout_kills_grandchildren(http: HttpClients, tmp_path: Path) -> None:
    """1. A shell starts a background sleep and waits. 2. The attempt times out.
    Result: kind timeout, and the grandchild sleep is gone too (group SIGTERM)."""
    pidfile = tmp_path / "pid"
    with pytest.raises(ActionError) as info:
        await _run(http, ("sh", "-c", f"sleep 100 & echo $! > {pidfile}; wait"), timeout=0.3)
    assert info.value.kind is ErrorKind.TIMEOUT
    assert await wait_dead(int(pidfile.read_text()))


async def test_timeout_escalates_to_sigkill(http: HttpClients, tmp_path: Path) -> None:
    """1. Child and grandchild ignore SIGTERM. 2. The attempt times out.
    Result: after the grace period SIGKILL ends both, within a bounded time."""
    pidfile = tmp_path / "pid"
    script = f"trap '' TERM; sleep 100 & echo $! > {pidfile}; wait; wait"
    start = time.monotonic()
    with pytest.raises(ActionError) as info:
        await _run(http, ("sh", "-c", script), timeout=0.3)
    assert info.value.kind is ErrorKind.TIMEOUT
    assert time.monotonic() - start < 2.0
    assert await wait_dead(int(pidfile.read_text()))


async def test_leftovers_die_when_child_exits(http: HttpClients, tmp_path: Path) -> None:
    """A background process the child leaves behind (holding stdout) is ended promptly."""
    pidfile = tmp_path / "pid"
    start = time.monotonic()
    result = await _run(
        http, ("sh", "-c", f"sleep 100 & echo $! > {pidfile}; echo done"), timeout=4
    )
    assert time.monotonic() - start < 2.0
    assert dict(result.output)["stdout"] == "done\n"
    assert await wait_dead(int(pidfile.read_text()))


async def test_cancel_kills_group(http: HttpClients, tmp_path: Path) -> None:
    """Cancelling an attempt (cancel_previous, shutdown) ends its whole process group."""
    pidfile = tmp_path / "pid"
    action = build_action(
        ExecAction(argv=("sh", "-c", f"sleep 100 & echo $! > {pidfile}; wait")), http=http
    )
    async with asyncio.timeout(5):
        async with asyncio.TaskGroup() as tg:
            task = tg.create_task(action(make_ctx(timeout=30)))
            pid = await _wait_for_pid(pidfile)
            task.cancel()
    assert task.cancelled()
    assert await wait_dead(pid)


async def test_own_process_group_reported(http: HttpClients) -> None:
    """The child leads its own process group, whose id is passed to on_spawn at once."""
    spawned: list[int] = []
    code = "import json, os; print(json.dumps({'pid': os.getpid(), 'pgrp': os.getpgrp()}))"
    result = await _run(http, _py(code), on_spawn=spawned.append)
    assert result.value["pid"] == result.value["pgrp"] == spawned[0]
    assert spawned[0] != os.getpgrp()


async def test_environment(http: HttpClients, tmp_path: Path) -> None:
    """The child sees the scrubbed daemon env, the job's env and the AUTOMATIOND_* variables."""
    daemon_env = {
        "PATH": os.environ["PATH"],
        "KEEP": "1",
        "NOTIFY_SOCKET": "/run/systemd/notify",
        "WATCHDOG_USEC": "1000",
        "WATCHDOG_PID": "1",
        "CREDENTIALS_DIRECTORY": "/run/credentials/x",
        "AUTOMATIOND_PAYLOAD_FILE": "/stale",
    }
    code = "import json, os; print(json.dumps(dict(os.environ)))"
    action = build_action(
        ExecAction(argv=_py(code), env={"EXTRA": "2"}, cwd=tmp_path), http=http, job_env=daemon_env
    )
    ctx = make_ctx(target={"sku": "a"}, payload={"p": [1]}, attempt=3, phase=Phase.VERIFY)
    async with asyncio.timeout(5):
        env = (await action(ctx)).value
    assert env["KEEP"] == "1" and env["EXTRA"] == "2"
    for gone in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "CREDENTIALS_DIRECTORY"):
        assert gone not in env
    assert "AUTOMATIOND_PAYLOAD_FILE" not in env
    assert env["AUTOMATIOND_JOB"] == "job-1"
    assert env["AUTOMATIOND_RUN_ID"] == "run-1"
    assert env["AUTOMATIOND_ATTEMPT"] == "3"
    assert env["AUTOMATIOND_PHASE"] == "verify"
    assert json.loads(env["AUTOMATIOND_TARGET"]) == {"sku": "a"}
    assert json.loads(env["AUTOMATIOND_PAYLOAD"]) == {"p": [1]}


async def test_cwd(http: HttpClients, tmp_path: Path) -> None:
    """The child runs in the spec's cwd."""
    result = await _run(
        http, _py("import json, os; print(json.dumps({'cwd': os.getcwd()}))"), cwd=tmp_path
    )
    assert result.value == {"cwd": str(tmp_path)}


async def test_big_payload_goes_through_private_file(http: HttpClients) -> None:
    """A payload over 64 KiB is passed as a 0600 file that is removed after the attempt."""
    payload = {"blob": "x" * (100 * 1024)}
    code = (
        "import json, os, stat\n"
        "p = os.environ['AUTOMATIOND_PAYLOAD_FILE']\n"
        "d = json.load(open(p))\n"
        "print(json.dumps({'path': p, 'mode': stat.S_IMODE(os.stat(p).st_mode),"
        " 'len': len(d['blob']), 'inline': 'AUTOMATIOND_PAYLOAD' in os.environ}))"
    )
    result = await _run(http, _py(code), payload=payload)
    assert result.value["mode"] == 0o600
    assert result.value["len"] == 100 * 1024
    assert result.value["inline"] is False
    assert _read_pid(Path(result.value["path"])) is None  # removed


async def test_output_keeps_last_64k_per_stream(http: HttpClients) -> None:
    """Only the last 64 KiB of each stream is kept, marked as cut, ending with the real tail."""
    code = (
        "import sys\n"
        "sys.stdout.write('a' * 300_000 + 'END-OUT')\n"
        "sys.stderr.write('b' * 200_000 + 'END-ERR')\n"
    )
    result = await _run(http, _py(code))
    out = dict(result.output)
    for name, end in (("stdout", "END-OUT"), ("stderr", "END-ERR")):
        assert len(out[name].encode()) <= OUTPUT_CAP
        assert len(out[name].encode()) > OUTPUT_CAP - 100
        assert out[name].endswith(end)
        assert out[name].startswith("[automationd: ")


@pytest.mark.parametrize("problem", ["missing", "not_executable", "bad_cwd"])
async def test_spawn_failure_is_fatal(http: HttpClients, tmp_path: Path, problem: str) -> None:
    """A program that cannot be started fails fatally with a message naming it."""
    script = tmp_path / "script.sh"
    script.write_text("#!/bin/sh\nexit 0\n")
    script.chmod(stat.S_IRUSR | stat.S_IWUSR)
    argv, cwd = {
        "missing": ((str(tmp_path / "nope"),), None),
        "not_executable": ((str(script),), None),
        "bad_cwd": (("true",), tmp_path / "no-such-dir"),
    }[problem]
    with pytest.raises(ActionError) as info:
        await _run(http, argv, cwd=cwd)
    assert info.value.kind is ErrorKind.FATAL
    assert info.value.message.startswith("exec: cannot start")


async def test_kill_orphans_matches_run_id(tmp_path: Path) -> None:
    """1. Two groups carry AUTOMATIOND_RUN_ID r1 (one whose leader already exited) and one r2.
    2. kill_orphans is told about all three as run r1's.
    Result: the two r1 groups are killed; the r2 group (a recycled id) is left alone."""
    env = {**os.environ, "AUTOMATIOND_RUN_ID": "r1"}
    pidfile = tmp_path / "pid"
    async with asyncio.timeout(5):
        leader = await asyncio.create_subprocess_exec(
            "sleep", "100", env=env, start_new_session=True
        )
        gone_leader = await asyncio.create_subprocess_exec(
            "sh", "-c", f"sleep 100 & echo $! > {pidfile}", env=env, start_new_session=True
        )
        await gone_leader.wait()
        orphan = await _wait_for_pid(pidfile)
        other = await asyncio.create_subprocess_exec(
            "sleep", "100", env={**env, "AUTOMATIOND_RUN_ID": "r2"}, start_new_session=True
        )
        try:
            entries = [
                (leader.pid, "r1"),
                (gone_leader.pid, "r1"),
                (other.pid, "r1"),
                (99999999, "r1"),
            ]
            assert kill_orphans(entries) == 2
            assert await leader.wait() == -9
            assert alive(other.pid)
            assert await wait_dead(orphan)
        finally:
            other.kill()
            await other.wait()
