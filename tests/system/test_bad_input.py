"""The inputs that once poisoned the store or answered `internal`, one by one (SPEC §7.5).

Each is refused `bad_request` naming the argument, before anything is stored; the connection
goes on answering; afterwards, and after a restart, every listing answers and the store is
sound. An HTTP response body holding 1e999 is kept as text instead of poisoning the run.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest

from tests.support.admin_client import AdminClient
from tests.support.api_server import ApiServer, Reply
from tests.support.daemon import DaemonProcess
from tests.support.fuzz import Raw, request_line

MiB = 1 << 20
JOBS = """
[[jobs]]
name = "a"
on = "x.*"
action = { type = "exec", argv = ["true"] }
"""
BIG = "n" * (MiB - 300)  # fits in one request line, far past every limit

# (cmd, args, message the answer starts with)
CASES: list[tuple[str, dict[str, Any], str]] = [
    *[
        (cmd, {**base, "payload": {"price": Raw(lit)}}, f"args.payload.price: number {lit}")
        for lit in ("1e999", "1.797e309", "-1e999", "NaN", "Infinity", "-Infinity")
        for cmd, base in (("jobs.trigger", {"name": "a"}), ("events.publish", {"name": "x.y"}))
    ],
    ("jobs.trigger", {"name": "a", "payload": [1, Raw("1e999")]}, "args.payload[1]: number"),
    ("jobs.trigger", {"name": "a", "idempotency_key": BIG}, "args.idempotency_key: longer than"),
    ("jobs.trigger", {"name": "a", "idempotency_key": ""}, "args.idempotency_key: must not be"),
    ("jobs.trigger", {"name": "a", "idempotency_key": "k\x00"}, "args.idempotency_key: control"),
    ("jobs.trigger", {"name": "a", "idempotency_key": "k" * 257}, "args.idempotency_key: longer"),
    ("jobs.trigger", {"name": BIG}, "args.name: longer than 128 characters"),
    ("jobs.trigger", {"name": ""}, "args.name: must not be empty"),
    ("jobs.trigger", {"name": "a\x00"}, "args.name: control character U+0000"),
    ("jobs.get", {"name": "a\x1b[31m"}, "args.name: control character U+001B"),
    ("events.publish", {"name": BIG}, "args.name: longer than 128 characters"),
    ("events.publish", {"name": ""}, "args.name: must not be empty"),
    ("events.publish", {"name": "x.\x00"}, "args.name: control character U+0000"),
    ("events.publish", {"name": "x.y", "idempotency_key": BIG}, "args.idempotency_key: longer"),
    ("events.publish", {"name": "x.y", "idempotency_key": "a\nb"}, "args.idempotency_key: con"),
    *[
        (cmd, {**base, key: value}, f"args.{key}: expected an RFC 3339 time")
        for cmd, base in (
            ("runs.list", {}),
            ("events.list", {}),
            ("events.replay", {"since": "1h"}),
        )
        for key in ("since", "until")
        for value in (-1, 2**64, 1e308, -1e308, 0)
    ],
    ("runs.list", {"since": Raw("1e999")}, "args.since: number 1e999 is not finite"),
    ("events.list", {"name": "*" * (MiB - 300)}, "args.name: longer than 256 characters"),
    ("events.replay", {"since": "1h", "name": "[" * (MiB - 300)}, "args.name: longer than 256"),
    ("runs.list", {"job": BIG}, "args.job: longer than 128 characters"),
    ("runs.list", {"limit": 2**64}, "args.limit: expected an integer from 1 to 1000"),
    ("runs.list", {"offset": -1}, "args.offset: expected an integer from 0"),
    ("runs.get", {"id": BIG}, "args.id: longer than 64 characters"),
    ("dlq.purge", {"id": "\x00"}, "args.id: control character U+0000"),
    (
        "jobs.add",
        {"job": {"name": "b", "on": "x", "retries": Raw("NaN"), "action": {}}},
        "args.job.",
    ),
]


async def _ask(c: AdminClient, rid: int, cmd: str, args: dict[str, Any]) -> dict[str, Any]:
    await c.send(request_line(rid, cmd, args))
    answer: dict[str, Any] = await c.read_response()
    return answer


def _sound(d: DaemonProcess) -> None:
    for cmd in ("status", "jobs.list", "runs.list", "events.list", "dlq.list"):
        d.call_sync(cmd)
    for run in d.call_sync("runs.list"):
        d.call_sync("runs.get", {"id": run["id"]})
    assert d.call_sync("store.check") == {"ok": True, "problems": []}


async def test_each_poisonous_input_is_a_bad_request_naming_the_argument(
    daemon_factory: Callable[..., DaemonProcess],
) -> None:
    """1. On one connection, send every case (non-finite payloads, ~1 MiB names, keys and
       globs, NUL and control characters, empty strings, numeric since/until), each followed
       by a `status`.
    Result: each is `bad_request` whose message names the argument, echoing the request id;
    the `status` after each is answered; nothing was stored (no run, no event); every
    listing answers, before and after a restart, and store.check finds nothing."""
    d = daemon_factory(jobs=JOBS)
    d.start()
    async with AdminClient(d.socket, timeout=15) as c:
        for i, (cmd, args, message) in enumerate(CASES):
            answer = await _ask(c, 2 * i, cmd, args)
            assert answer["id"] == 2 * i, (cmd, answer)
            assert answer["ok"] is False, (cmd, answer)
            assert answer["error"]["code"] == "bad_request", (cmd, answer)
            assert answer["error"]["message"].startswith(message), (cmd, answer)
            assert len(answer["error"]["message"]) < 300
            follow = await _ask(c, 2 * i + 1, "status", {})
            assert follow["ok"] and follow["id"] == 2 * i + 1
    assert d.call_sync("runs.list") == [] and d.call_sync("events.list") == []
    _sound(d)
    assert d.stop() == 0
    d.start()
    _sound(d)
    assert d.stop() == 0


@pytest.mark.parametrize("literal", ["1e999", "1.797e309", "NaN"])
async def test_http_result_with_non_finite_number_is_kept_as_text(
    daemon_factory: Callable[..., DaemonProcess], literal: str
) -> None:
    """1. An http job whose API answers 200 `application/json` with `{"v": LITERAL}`.
    Result: the run succeeds; its result is the body as text, with a note in its output;
    runs.list, runs.get and runs.logs answer, also after a restart."""
    async with ApiServer() as api:
        body = f'{{"v": {literal}}}'
        api.always("/r", Reply(200, headers={"Content-Type": "application/json"}, body=body))
        d = daemon_factory(
            jobs=(
                '[[jobs]]\nname = "h"\non = "x.*"\nretries = 0\n'
                f'action = {{ type = "http", method = "GET", url = "{api.url_for("/r")}" }}\n'
            )
        )
        d.start()
        run = await d.call("jobs.trigger", {"name": "h"})
        async with asyncio.timeout(15):  # the API answers from this loop: wait without blocking
            while run["state"] not in ("succeeded", "failed"):
                await asyncio.sleep(0.05)
                run = await d.call("runs.get", {"id": run["id"]})
    assert run["state"] == "succeeded" and run["result"] == body
    logs = d.call_sync("runs.logs", {"id": run["id"]})
    assert any("kept as text" in entry["text"] for entry in logs if entry["stream"] == "stderr")
    assert d.call_sync("runs.list")[0]["result"] == body
    _sound(d)
    assert d.stop() == 0
    d.start()
    assert json.dumps(d.call_sync("runs.get", {"id": run["id"]}))
    _sound(d)
    assert d.stop() == 0
