"""The admin socket server over real Unix sockets: framing errors, pipelining, limits, close."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import random
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from automationd.admin.command import Command
from automationd.admin.protocol import MAX_LINE, encode_request
from automationd.admin.server import AdminServer, serve_admin
from automationd.caller import Caller
from automationd.errors import AdminError
from tests.support.admin_client import AdminClient


class Handlers(dict[str, Command]):
    """A fake command table that records how many handlers run at once."""

    def __init__(self) -> None:
        super().__init__()
        self.running = 0
        self.peak = 0
        self.finished: list[Any] = []
        for name in ("status", "echo", "sleep", "missing", "boom", "unjsonable"):
            self[name] = Command(name, getattr(self, name), writes=False)

    async def status(self, args: dict[str, Any], caller: Caller) -> Any:
        return {"version": "test", "pid": os.getpid()}

    async def echo(self, args: dict[str, Any], caller: Caller) -> Any:
        return args

    async def sleep(self, args: dict[str, Any], caller: Caller) -> Any:
        self.running += 1
        self.peak = max(self.peak, self.running)
        try:
            await asyncio.sleep(float(args.get("s", 0.05)))
        finally:
            self.running -= 1
        self.finished.append(args.get("tag"))
        return {"tag": args.get("tag")}

    async def missing(self, args: dict[str, Any], caller: Caller) -> Any:
        raise AdminError("not_found", "no job named 'x'")

    async def boom(self, args: dict[str, Any], caller: Caller) -> Any:
        raise RuntimeError("boom")

    async def unjsonable(self, args: dict[str, Any], caller: Caller) -> Any:
        return {"x": object()}


@contextlib.asynccontextmanager
async def running(
    short_tmp: Path, handlers: Handlers | None = None, **kw: Any
) -> AsyncIterator[AdminServer]:
    async with serve_admin(short_tmp / "admin.sock", handlers or Handlers(), **kw) as server:
        yield server


# --- framing errors keep the connection usable -----------------------------------------------

BAD_LINES = {
    "garbage": b"hello there",
    "invalid_utf8": b'{"cmd":"status","x":"\xff\xfe"}',
    "lone_surrogate": b'{"id":9,"cmd":"echo","args":{"s":"\\ud800"}}',
    "deep_nesting": b'{"id":9,"cmd":"echo","args":{"a":' + b"[" * 100 + b"]" * 100 + b"}}",
    "non_object": b"[1,2,3]",
    "non_object_args": b'{"id":9,"cmd":"echo","args":[1]}',
    "missing_cmd": b'{"id":9,"args":{}}',
    "nan": b'{"id":9,"cmd":"echo","args":{"x":NaN}}',
    "unknown_cmd": b'{"id":9,"cmd":"nope"}',
    "empty": b"",
}


@pytest.mark.parametrize("name", list(BAD_LINES))
async def test_bad_line_gets_bad_request_and_connection_survives(
    short_tmp: Path, name: str
) -> None:
    """Each malformed line gets one bad_request; the same connection then answers status."""
    async with asyncio.timeout(5), running(short_tmp) as server, AdminClient(server.path) as c:
        resp = await c.request_raw(BAD_LINES[name])
        assert resp["ok"] is False
        assert resp["error"]["code"] == "bad_request"
        if name == "unknown_cmd":
            assert resp["error"]["message"] == "unknown command 'nope'"
        if b'"id":9' in BAD_LINES[name] and name not in ("nan", "deep_nesting"):
            assert resp["id"] == 9
        assert (await c.call("status"))["version"] == "test"


async def test_oversized_line_is_rejected_and_skipped(short_tmp: Path) -> None:
    """A 3 MiB line gets bad_request; its rest is discarded and the connection still works."""
    async with asyncio.timeout(5), running(short_tmp) as server, AdminClient(server.path) as c:
        big = b'{"cmd":"echo","args":{"x":"' + b"a" * (3 << 20) + b'"}}\n'
        await c.send(big + encode_request(2, "status"))
        first = await c.read_response()
        assert first["error"] == {"code": "bad_request", "message": "request line exceeds 1 MiB"}
        second = await c.read_response()
        assert second["id"] == 2 and second["ok"] is True


async def test_lines_split_anywhere_across_reads_are_served_in_order(short_tmp: Path) -> None:
    """The read loop splits lines itself: requests cut at every byte (mid UTF-8 character
    too) or packed many to a write are each answered once, in order, intact."""
    async with asyncio.timeout(10), running(short_tmp) as server, AdminClient(server.path) as c:
        lines = b"".join(encode_request(i, "echo", {"s": f"zé🙂{i}"}) for i in range(40))
        for i in range(0, 200):  # the first few requests one byte per write
            await c.send(lines[i : i + 1])
            await asyncio.sleep(0)
        await c.send(lines[200:])  # the rest in one write
        got = [await c.read_response() for _ in range(40)]
        assert [r["id"] for r in got] == list(range(40))
        assert [r["result"]["s"] for r in got] == [f"zé🙂{i}" for i in range(40)]


async def test_oversized_line_ending_inside_one_read_is_rejected(short_tmp: Path) -> None:
    """A line over 1 MiB whose newline arrives in the same read as the next request gets
    bad_request, and the next request is still served."""
    async with asyncio.timeout(5), running(short_tmp) as server, AdminClient(server.path) as c:
        big = b'{"cmd":"echo","args":{"x":"' + b"a" * (MAX_LINE + 10) + b'"}}\n'
        await c.send(big[: MAX_LINE - 100])
        await asyncio.sleep(0.05)  # the server holds most of the line, unfinished
        await c.send(big[MAX_LINE - 100 :] + encode_request(3, "status"))
        first = await c.read_response()
        assert first["error"] == {"code": "bad_request", "message": "request line exceeds 1 MiB"}
        second = await c.read_response()
        assert second["id"] == 3 and second["ok"] is True


async def test_line_of_exactly_max_length_is_accepted(short_tmp: Path) -> None:
    """A request of exactly 1 MiB (before the newline) is served."""
    async with asyncio.timeout(5), running(short_tmp) as server, AdminClient(server.path) as c:
        head, tail = b'{"id":1,"cmd":"echo","args":{"x":"', b'"}}'
        line = head + b"a" * (MAX_LINE - len(head) - len(tail)) + tail
        assert len(line) == MAX_LINE
        resp = await c.request_raw(line)
        assert resp["ok"] is True and len(resp["result"]["x"]) > 1_000_000


async def test_handler_errors_map_to_codes(short_tmp: Path) -> None:
    """AdminError keeps its code; other exceptions become logged `internal`; the conn lives on."""
    async with asyncio.timeout(5), running(short_tmp) as server, AdminClient(server.path) as c:
        with pytest.raises(AdminError) as nf:
            await c.call("missing")
        assert (nf.value.code, nf.value.message) == ("not_found", "no job named 'x'")
        with capture_logs() as logs:
            for cmd in ("boom", "unjsonable"):
                with pytest.raises(AdminError) as internal:
                    await c.call(cmd)
                assert internal.value.code == "internal"
        events = [e for e in logs if e["event"] == "admin.internal_error"]
        assert [e["cmd"] for e in events] == ["boom", "unjsonable"]
        assert all(e["log_level"] == "error" and e.get("exc_info") for e in events)
        assert (await c.call("status"))["version"] == "test"


async def test_ids_are_echoed(short_tmp: Path) -> None:
    """String, integer and null ids come back unchanged; a missing id answers null."""
    async with asyncio.timeout(5), running(short_tmp) as server, AdminClient(server.path) as c:
        for rid in ("abc", 7, None):
            line = json.dumps({"id": rid, "cmd": "echo", "args": {"v": 1}}).encode()
            assert (await c.request_raw(line))["id"] == rid
        assert (await c.request_raw(b'{"cmd":"status"}'))["id"] is None


async def test_final_line_without_newline_is_served_at_eof(short_tmp: Path) -> None:
    """A last request not ended by a newline is still answered when the client half-closes."""
    async with asyncio.timeout(5), running(short_tmp) as server:
        reader, writer = await asyncio.open_unix_connection(str(server.path))
        writer.write(b'{"id":1,"cmd":"status"}')
        writer.write_eof()
        resp = json.loads(await reader.readline())
        assert resp["id"] == 1 and resp["ok"] is True
        assert await reader.read() == b""
        writer.close()


# --- pipelining, backpressure, limits ----------------------------------------------------------


async def test_pipelined_requests_are_answered_in_order(short_tmp: Path) -> None:
    """1,000 pipelined requests finishing out of order are answered in request order."""
    handlers = Handlers()
    rng = random.Random(7)
    reqs = [("sleep", {"s": rng.random() * 0.01, "tag": i}) for i in range(1000)]
    async with (
        asyncio.timeout(10),
        running(short_tmp, handlers, max_inflight_per_conn=1000) as s,
        AdminClient(s.path, timeout=10) as c,
    ):
        replies = await c.pipeline(reqs)
    assert [r["result"]["tag"] for r in replies] == list(range(1000))
    assert handlers.finished != list(range(1000))  # they really did finish out of order
    assert handlers.peak > 1


async def test_inflight_window_bounds_concurrent_handlers(short_tmp: Path) -> None:
    """With max_inflight_per_conn=4, no more than 4 requests of a connection run at once."""
    handlers = Handlers()
    async with (
        asyncio.timeout(5),
        running(short_tmp, handlers, max_inflight_per_conn=4) as s,
        AdminClient(s.path) as c,
    ):
        replies = await c.pipeline([("sleep", {"s": 0.005, "tag": i}) for i in range(100)])
    assert len(replies) == 100 and all(r["ok"] for r in replies)
    assert handlers.peak == 4


async def test_idle_connection_is_closed(short_tmp: Path) -> None:
    """An idle connection is closed after idle_timeout, but not while a request is in flight."""
    async with asyncio.timeout(5), running(short_tmp, idle_timeout=0.2) as server:
        async with AdminClient(server.path) as c:
            assert (await c.call("sleep", {"s": 0.4, "tag": 1})) == {"tag": 1}
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            assert await c.reader.read() == b""
            assert 0.1 < loop.time() - t0 < 1.0
        assert server.connections == 0


async def test_client_that_never_reads_is_dropped(short_tmp: Path) -> None:
    """A client pipelining big requests without reading the answers is aborted after the idle
    timeout instead of holding its connection slot forever."""
    async with asyncio.timeout(5), running(short_tmp, idle_timeout=0.3) as server:
        _, writer = await asyncio.open_unix_connection(str(server.path))
        big = encode_request(1, "echo", {"x": "a" * 20_000})
        writer.write(big * 400)  # ~8 MB of answers; never drained, never read
        seen = []
        for _ in range(60):  # bounded wait: the connection appears, then is dropped
            seen.append(server.connections)
            if 1 in seen and seen[-1] == 0:
                break
            await asyncio.sleep(0.05)
        assert 1 in seen and seen[-1] == 0
        writer.transport.abort()


async def _first_code(r: asyncio.StreamReader, wait: float = 0.3) -> str:
    """The error code of the first line the server sends, or "held" if none comes."""
    try:
        async with asyncio.timeout(wait):
            line = await r.readline()
    except TimeoutError:
        return "held"
    except ConnectionResetError:  # closed before our partial line was read: refused too
        return "unavailable"
    return str(json.loads(line)["error"]["code"]) if line else "closed"


async def test_half_open_flood_does_not_lock_the_operator_out(short_tmp: Path) -> None:
    """200 never-finished lines on 16 slots: the longest-idle give way, the operator gets in.

    1. max_connections=16 (idle and line timeouts far away); open 200 connections, each sends
       half a request.
    2. Each one past the 16th evicts the longest-idle: 184 hear `unavailable`, 16 are held.
    3. A new connection is served at once.
    Result: `status` answers in well under a second, and the server logged the saturation once.
    """
    async with (
        asyncio.timeout(8),
        running(short_tmp, max_connections=16, idle_timeout=60, line_timeout=60) as s,
    ):
        conns = []
        try:
            with capture_logs() as logs:
                for _ in range(200):
                    r, w = await asyncio.open_unix_connection(str(s.path))
                    w.write(b'{"id":1,"cmd":"sta')
                    conns.append((r, w))
                codes = await asyncio.gather(*(_first_code(r) for r, _ in conns))
                assert codes.count("unavailable") == 184 and codes.count("held") == 16
                assert codes[-16:] == ["held"] * 16  # the newest stay, the oldest gave way
                loop = asyncio.get_running_loop()
                t0 = loop.time()
                async with AdminClient(s.path) as c:
                    assert (await c.call("status"))["version"] == "test"
                assert loop.time() - t0 < 0.5
            assert [e["event"] for e in logs].count("admin.slots_full") == 1
            assert s.evicted == 185 and s.connections == 16
        finally:
            for _, w in conns:
                w.close()


async def test_busy_slots_are_not_evicted(short_tmp: Path) -> None:
    """With every slot running a request, a newcomer is refused `unavailable`; nothing in
    flight is cut off, and once they finish a newcomer gets in again."""
    handlers = Handlers()
    async with (
        asyncio.timeout(5),
        running(short_tmp, handlers, max_connections=4, line_timeout=60) as s,
        contextlib.AsyncExitStack() as stack,
    ):
        clients = [await stack.enter_async_context(AdminClient(s.path)) for _ in range(4)]
        for i, c in enumerate(clients):
            await c.send(encode_request(i, "sleep", {"s": 0.3, "tag": i}))
        while handlers.running < 4:  # noqa: ASYNC110 - the fake handlers offer no event
            await asyncio.sleep(0.01)
        r, w = await asyncio.open_unix_connection(str(s.path))
        assert await _first_code(r) == "unavailable"
        w.close()
        for i, c in enumerate(clients):
            assert (await c.read_response())["result"] == {"tag": i}
        async with AdminClient(s.path) as c:
            assert (await c.call("status"))["version"] == "test"


async def test_connection_without_a_complete_line_is_closed(short_tmp: Path) -> None:
    """A half-open connection, and one dribbling a line byte by byte, hear `bad_request` and
    are closed after line_timeout; a connection quiet between two requests is not."""
    async with asyncio.timeout(5), running(short_tmp, line_timeout=0.3) as s:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        silent_r, silent_w = await asyncio.open_unix_connection(str(s.path))
        line = await silent_r.readline()
        err = json.loads(line)["error"]
        assert err == {
            "code": "bad_request",
            "message": "no complete request line within 0.3s",
        }
        assert 0.25 < loop.time() - t0 < 1.5
        assert await silent_r.read() == b""
        silent_w.close()

        async with AdminClient(s.path) as quiet:
            assert (await quiet.call("echo", {"n": 1})) == {"n": 1}
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as slow:
                slow.setblocking(False)
                await loop.sock_connect(slow, str(s.path))
                t0 = loop.time()
                for byte in b'{"id":1,"cmd":"status"}':
                    try:
                        await loop.sock_sendall(slow, bytes([byte]))
                    except OSError:  # closed on us: that is the point
                        break
                    await asyncio.sleep(0.05)
                got = b""
                while not got.endswith(b"\n"):
                    chunk = await loop.sock_recv(slow, 4096)
                    assert chunk, "closed without saying why"
                    got += chunk
                assert json.loads(got)["error"]["code"] == "bad_request"
                assert loop.time() - t0 < 1.0
            await asyncio.sleep(0.4)  # past the line deadline, well inside the idle timeout
            assert (await quiet.call("echo", {"n": 2})) == {"n": 2}


async def test_close_answers_in_flight_requests(short_tmp: Path) -> None:
    """Closing the server lets a request in flight finish and answer before the socket goes."""
    async with asyncio.timeout(5):
        async with running(short_tmp) as server:
            c = await AdminClient(server.path).__aenter__()
            await c.send(encode_request(1, "sleep", {"s": 0.2, "tag": "late"}))
            await asyncio.sleep(0.05)
        assert (await c.read_response())["result"] == {"tag": "late"}
        assert await c.reader.read() == b""
        await c.__aexit__(None, None, None)


async def test_connection_racing_shutdown_leaks_nothing(short_tmp: Path) -> None:
    """A client connecting just as the server closes is refused or reset; no socket leaks."""
    for _ in range(5):
        async with asyncio.timeout(5), running(short_tmp) as server:
            _, writer = await asyncio.open_unix_connection(str(server.path))
        writer.close()
        gc.collect()  # a leaked transport would warn here (and warnings are errors)


async def test_client_vanishing_mid_request_is_harmless(short_tmp: Path) -> None:
    """A client that disconnects with requests in flight leaves the server healthy."""
    handlers = Handlers()
    async with asyncio.timeout(5), running(short_tmp, handlers) as server:
        with capture_logs() as logs:
            async with AdminClient(server.path) as c:
                await c.send(encode_request(1, "sleep", {"s": 0.1, "tag": "gone"}) * 10)
                await asyncio.sleep(0.02)
            await asyncio.sleep(0.2)
        assert handlers.finished == ["gone"] * 10
        assert not [e for e in logs if e["log_level"] in ("error", "critical")]
        assert server.connections == 0
