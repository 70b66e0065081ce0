"""The real daemon's admin socket: permissions, hostile input, floods, automationctl exit codes.

The framing and limits are tested in depth against the bare server (tests/component); here the
same promises are checked end to end against `automationd run` (SPEC §1, §3).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.admin_client import AdminClient
from tests.support.daemon import BIN, DaemonProcess

JOB = '[[jobs]]\nname = "a"\non = "x.*"\naction = { type = "exec", argv = ["true"] }\n'

# What a client in another uid sees: the response line, or the errno of a failed connect.
_CLIENT = textwrap.dedent(
    """
    import errno, socket, sys
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    try:
        s.connect(sys.argv[1])
    except OSError as exc:
        sys.exit("connect:" + errno.errorcode[exc.errno])
    try:
        s.sendall(b'{"id":1,"cmd":"status"}\\n')
    except BrokenPipeError:  # refused before we wrote: the answer is still queued for us
        pass
    sys.stdout.write(s.makefile("rb").readline().decode())
    """
)


def _python_for(user: str) -> str | None:
    """An interpreter ``user`` may execute (the venv's may live under /root)."""
    for cand in (os.path.realpath(sys.executable), "/usr/bin/python3", "/usr/local/bin/python3"):
        if os.access(cand, os.X_OK) and subprocess.run(
            ["runuser", "-u", user, "--", cand, "-c", "pass"], capture_output=True, timeout=10
        ).returncode == 0:  # fmt: skip
            return cand
    return None


async def _as_nobody(socket_path: Path, *runuser_opts: str) -> subprocess.CompletedProcess[str]:
    python = _python_for("nobody")
    if python is None:
        pytest.skip("no interpreter that nobody may run")
    argv = ["runuser", "-u", "nobody", *runuser_opts, "--", python, "-c", _CLIENT, str(socket_path)]
    return await asyncio.to_thread(subprocess.run, argv, capture_output=True, text=True, timeout=10)


root_only = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("runuser"), reason="needs root and runuser"
)


@pytest.mark.needs_root
@root_only
async def test_socket_is_0660_and_other_uids_are_refused(
    daemon_factory: Callable[..., DaemonProcess], short_tmp: Path
) -> None:
    """1. The socket is 0660 and owned by the daemon's uid: `nobody` cannot even connect.
    2. Loosened to 0666 by hand, `nobody` connects but SO_PEERCRED answers `forbidden`.
    Result: root keeps being served throughout.
    """
    d = daemon_factory(jobs=JOB)
    d.start()
    st = os.stat(d.socket)
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o660
    assert st.st_uid == os.geteuid()
    os.chmod(short_tmp, 0o711)  # let nobody traverse to the socket

    proc = await _as_nobody(d.socket)
    assert proc.returncode != 0 and "connect:EACCES" in proc.stderr, proc

    os.chmod(d.socket, 0o666)
    proc = await _as_nobody(d.socket)
    assert proc.returncode == 0, proc.stderr
    resp = json.loads(proc.stdout)
    assert resp["ok"] is False and resp["error"]["code"] == "forbidden"
    assert "uid 65534" in resp["error"]["message"]
    assert any(e.get("event") == "admin.forbidden" for e in d.log_events())
    assert (await d.call("status"))["jobs"]["total"] == 1


@pytest.mark.needs_root
@root_only
async def test_admin_group_members_are_served(
    daemon_factory: Callable[..., DaemonProcess], short_tmp: Path
) -> None:
    """With admin_group = "nogroup" the socket belongs to that group, and `nobody` (a member by
    its primary gid) gets a normal status answer."""
    d = daemon_factory(jobs=JOB, daemon='admin_group = "nogroup"')
    d.start()
    assert os.stat(d.socket).st_gid == 65534
    os.chmod(short_tmp, 0o711)
    proc = await _as_nobody(d.socket, "-g", "nogroup")
    assert proc.returncode == 0, proc.stderr
    resp = json.loads(proc.stdout)
    assert resp["ok"] is True and resp["result"]["jobs"]["total"] == 1


GARBAGE = [
    b"not json",
    b"{",
    b"[]",
    b"{}",
    b'"status"',
    b"\xff\xfe{}",  # invalid UTF-8
    b'{"id":1,"cmd":"status","args":{"x":"\\ud800"}}',  # lone surrogate
    b"[" * 50_000 + b"]" * 50_000,  # deep nesting
    b'{"id":1,"cmd":"status","args":[]}',  # args not an object
    b'{"id":1,"cmd":7}',
    b'{"id":1,"cmd":"no.such.command"}',
    b'{"id":1,"cmd":"jobs.get","args":{"name":5}}',
]


async def test_garbage_and_a_3_mib_line_get_bad_request_and_the_connection_survives(
    daemon_factory: Callable[..., DaemonProcess],
) -> None:
    """Each garbage line and a 3 MiB line is answered `bad_request` on the same connection,
    which then still answers `status`, as does a new connection."""
    d = daemon_factory(jobs=JOB)
    d.start()
    async with asyncio.timeout(15), AdminClient(d.socket, timeout=10) as c:
        for line in GARBAGE:
            resp = await c.request_raw(line)
            assert resp["ok"] is False and resp["error"]["code"] == "bad_request", (line, resp)
        assert (await c.call("status"))["jobs"]["total"] == 1
        resp = await c.request_raw(b'{"id":9,"cmd":"status","pad":"' + b"a" * (3 << 20) + b'"}')
        assert resp["error"]["code"] == "bad_request" and "1 MiB" in resp["error"]["message"]
        assert (await c.call("status"))["jobs"]["total"] == 1
        assert (await c.call("jobs.get", {"name": "a"}))["name"] == "a"
    async with asyncio.timeout(5), AdminClient(d.socket) as fresh:
        assert (await fresh.call("status"))["jobs"]["total"] == 1


async def test_200_half_open_connections_do_not_lock_the_operator_out(
    daemon_factory: Callable[..., DaemonProcess],
) -> None:
    """1. 200 connections each send half a request and wait (SPEC §7.5: 64 slots).
    2. Past the 64th, each newcomer takes the slot of the longest-idle one, which hears
       `unavailable` and is closed: the newest 64 are held.
    3. `automationctl status` is run while all 64 slots are still taken.
    Result: it succeeds, answered in under a second (measured from its connect, and its
    whole run stays within a second of the same command without the flood).
    """
    d = daemon_factory(jobs=JOB)
    d.start()
    sock = ["--socket", str(d.socket)]
    calm = await _ctl(*sock, "--json", "status")
    assert calm.returncode == 0, calm.stderr
    loop = asyncio.get_running_loop()
    flood: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    async with asyncio.timeout(30):
        try:
            while len(flood) < 200:
                r_w = await _connect_or_none(d.socket)
                if r_w is None:  # EAGAIN: the listen backlog is full; let it accept
                    await asyncio.sleep(0.01)
                    continue
                r, w = r_w
                w.write(b'{"id":1,"cmd":"sta')
                flood.append((r, w))
            codes = await asyncio.gather(*(_first_code(r) for r, _ in flood))
            assert codes.count("held") == 64 and codes.count("unavailable") == 136, codes
            assert codes[-64:] == ["held"] * 64

            t0 = loop.time()
            async with AdminClient(d.socket) as operator:
                assert (await operator.call("status"))["jobs"]["total"] == 1
            assert loop.time() - t0 < 1.0
            t0 = loop.time()
            busy = await _ctl(*sock, "--json", "status")
            took = loop.time() - t0
            assert busy.returncode == 0, busy.stderr
            assert json.loads(busy.stdout)["jobs"]["total"] == 1
            t0 = loop.time()
            calm = await _ctl(*sock, "--json", "status")
            assert took < 1.0 + (loop.time() - t0), took  # the flood adds under a second
        finally:
            for _, w in flood:
                w.close()
    assert d.stop() == 0


async def _connect_or_none(
    path: Path,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
    """Connect, or None when the listen backlog is full. The connect is ours and non-blocking:
    asyncio's own connect treats a Unix socket's EAGAIN as "in progress" and hands back a
    socket that was never queued (it then reads as reset), which made the flood's order lie."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        sock.connect(str(path))
    except BlockingIOError:
        sock.close()
        return None
    return await asyncio.open_unix_connection(sock=sock)


async def _first_code(r: asyncio.StreamReader) -> str:
    """The error code of the first line the daemon sends, or "held" if none comes."""
    try:
        async with asyncio.timeout(0.5):
            line = await r.readline()
    except TimeoutError:
        return "held"
    except OSError:  # reset while being refused (the answer was lost with it)
        return "unavailable"
    return str(json.loads(line)["error"]["code"]) if line else "closed"


async def _ctl(*argv: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run, [str(BIN / "automationctl"), *argv],
        capture_output=True, text=True, timeout=15,
    )  # fmt: skip


async def test_automationctl_exit_codes_against_the_daemon(
    daemon_factory: Callable[..., DaemonProcess], short_tmp: Path
) -> None:
    """Against the real daemon: 0 ok, 1 the daemon answered an error, 2 usage, 3 no socket."""
    d = daemon_factory(jobs=JOB)
    d.start()
    sock = ["--socket", str(d.socket)]

    ok = await _ctl(*sock, "--json", "status")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["jobs"]["total"] == 1

    err = await _ctl(*sock, "jobs", "show", "nope")
    assert err.returncode == 1
    assert err.stderr.strip() == "error: not_found: no job named 'nope'"

    for argv in (["frobnicate"], ["jobs", "show"], ["runs", "list", "--limit", "-1"]):
        usage = await _ctl(*sock, *argv)
        assert usage.returncode == 2 and "usage:" in usage.stderr, argv

    missing = await _ctl("--socket", str(short_tmp / "missing.sock"), "status")
    assert missing.returncode == 3 and "missing.sock" in missing.stderr

    assert d.stop() == 0
    gone = await _ctl(*sock, "status")  # the daemon removed its socket on the way out
    assert gone.returncode == 3 and str(d.socket) in gone.stderr
