"""Fuzzing the real daemon's admin socket (hypothesis, bounded): every SPEC command, hostile
arguments. No answer may be `internal`, none may hang, and the store stays readable after."""

from __future__ import annotations

import json
import os
import socket
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.daemon import DaemonProcess
from tests.support.fuzz import COMMANDS, request_line, requests, resolve

EXAMPLES = int(os.environ.get("AUTOMATIOND_FUZZ_EXAMPLES", "2000"))
ANSWER_WITHIN = 10.0  # seconds: a bigger delay is a hang
ALLOWED = {"ok", "bad_request", "not_found", "conflict"}
REQUESTS = requests()

ACTS = """
from automationd import FatalError

async def noop(ctx):
    return {"payload": ctx.payload}

async def fail(ctx):
    raise FatalError("always")
"""
JOBS = """
[[jobs]]
name = "alpha"
on = "fz.*"
action = { type = "python", callable = "acts:noop" }

[[jobs]]
name = "beta"
schedule = "@yearly"
targets = [1, "two", { three = 3 }]
action = { type = "python", callable = "acts:noop" }

[[jobs]]
name = "gamma"
on = "fail.*"
retries = 0
action = { type = "python", callable = "acts:fail" }
"""


class Client:
    """One blocking connection; a request that gets no answer within the deadline fails."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.n = 0
        self.sock = self._connect()
        self.buf = b""

    def _connect(self) -> socket.socket:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(ANSWER_WITHIN)
        s.connect(self.path)
        return s

    def ask(self, cmd: Any, args: Any) -> dict[str, Any]:
        self.n += 1
        line = request_line(self.n, cmd, args)
        t0 = time.monotonic()
        self.sock.sendall(line)
        while b"\n" not in self.buf:
            chunk = self.sock.recv(1 << 20)
            assert chunk, f"connection closed after {cmd!r}"
            self.buf += chunk
            assert time.monotonic() - t0 < ANSWER_WITHIN, f"no answer to {cmd!r}"
        head, _, self.buf = self.buf.partition(b"\n")
        answer: dict[str, Any] = json.loads(head)
        return answer


def _code(answer: dict[str, Any]) -> str:
    return "ok" if answer.get("ok") else str(answer.get("error", {}).get("code"))


def _collect_ids(result: Any, seen: list[str]) -> None:
    items = result if isinstance(result, list) else [result]
    for item in items:
        if isinstance(item, dict) and isinstance(item.get("id"), str) and len(seen) < 200:
            seen.append(item["id"])


def _listings_answer(d: DaemonProcess) -> None:
    """Every listing still answers ok, and the store is sound."""
    for cmd, args in (
        ("status", {}),
        ("jobs.list", {}),
        ("runs.list", {"limit": 1000}),
        ("events.list", {"limit": 1000}),
        ("dlq.list", {"limit": 1000}),
        ("limits.list", {}),
        ("breakers.list", {}),
    ):
        d.call_sync(cmd, args)
    for run in d.call_sync("runs.list", {"limit": 50}):
        d.call_sync("runs.get", {"id": run["id"]})
        d.call_sync("runs.logs", {"id": run["id"]})
    assert d.call_sync("store.check", timeout=60) == {"ok": True, "problems": []}


def test_fuzzed_requests_never_answer_internal_nor_hang(
    daemon_factory: Callable[..., DaemonProcess],
) -> None:
    """1. A daemon with three jobs (one fans out, one always fails into the DLQ).
    2. Hypothesis sends EXAMPLES requests (2,000; AUTOMATIOND_FUZZ_EXAMPLES for more): every
       SPEC command with arguments drawn from hostile pools (see tests/support/fuzz.py).
    3. Every listing is read, then the daemon is restarted and they are read again.
    Result: every answer is ok, bad_request, not_found or conflict, within 10 s; listings
    answer after the fuzz and after the restart; store.check finds the store sound."""
    d = daemon_factory(jobs=JOBS, daemon='shutdown_timeout = "2s"')
    (d.base / "acts.py").write_text(ACTS)
    d.start()
    client = Client(str(d.socket))
    seen: list[str] = []
    codes: Counter[str] = Counter()
    per_cmd: dict[str, Counter[str]] = {c: Counter() for c in COMMANDS}

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(data=st.data())
    def one(data: st.DataObject) -> None:
        cmd, args = data.draw(REQUESTS)
        args = resolve(args, seen, str(d.base))
        answer = client.ask(cmd, args)
        code = _code(answer)
        codes[code] += 1
        if cmd in per_cmd:
            per_cmd[cmd][code] += 1
        assert code in ALLOWED, (cmd, str(args)[:300], answer)
        if code == "ok":
            _collect_ids(answer.get("result"), seen)

    try:
        one()
    finally:
        client.sock.close()
    assert sum(codes.values()) >= EXAMPLES
    assert codes["ok"] and codes["bad_request"] and codes["not_found"], codes
    _listings_answer(d)
    assert d.stop() == 0
    d.start()
    _listings_answer(d)
    assert d.stop() == 0
    summary = {c: dict(v) for c, v in per_cmd.items()}
    print(f"\nfuzz: {sum(codes.values())} requests, codes {dict(codes)}\nper command: {summary}")
