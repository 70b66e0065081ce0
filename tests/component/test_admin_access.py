"""The admin socket's file and peers (admin/access.py) through a real server: safe creation,
stale-socket replacement, refusal of anything unsafe at the path, and SO_PEERCRED checks."""

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
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import pytest

from automationd.admin.command import Command
from automationd.admin.server import AdminServer, AdminSocketError, serve_admin
from automationd.caller import Caller
from tests.support.admin_client import AdminClient


async def _status(args: dict[str, Any], caller: Caller) -> Any:
    return {"version": "test"}


HANDLERS = {"status": Command("status", _status, writes=False)}


def running(short_tmp: Path, **kw: Any) -> AbstractAsyncContextManager[AdminServer]:
    return serve_admin(short_tmp / "admin.sock", HANDLERS, **kw)


def _stale_socket(path: Path) -> None:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(path))
    s.close()  # bound, never listening: connect() is refused


# --- start-up safety -------------------------------------------------------------------------


async def test_socket_is_0660_and_removed_on_exit(short_tmp: Path) -> None:
    """The socket is created 0660 and removed when the server stops."""
    async with asyncio.timeout(5), running(short_tmp) as server:
        st = os.lstat(server.path)
        assert stat.S_ISSOCK(st.st_mode)
        assert stat.S_IMODE(st.st_mode) == 0o660
    assert not (short_tmp / "admin.sock").exists()


async def test_parent_dir_created_0750_and_group_applied(short_tmp: Path) -> None:
    """A missing parent dir is created 0750; socket and dir get admin_group's gid."""
    group = "daemon" if os.geteuid() == 0 else ""
    path = short_tmp / "run" / "a.sock"
    async with asyncio.timeout(5), serve_admin(path, HANDLERS, group=group):
        assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o750
        if group:
            assert os.lstat(path).st_gid == 1
            assert os.stat(path.parent).st_gid == 1


async def test_unknown_group_fails_start(short_tmp: Path) -> None:
    """An admin_group that does not exist stops start-up with a message naming it."""
    with pytest.raises(AdminSocketError, match="no-such-group-xyz"):
        async with asyncio.timeout(5), running(short_tmp, group="no-such-group-xyz"):
            pass
    assert not (short_tmp / "admin.sock").exists()


async def test_stale_socket_is_replaced(short_tmp: Path) -> None:
    """A socket of ours that nobody listens on is removed and replaced."""
    _stale_socket(short_tmp / "admin.sock")
    async with asyncio.timeout(5), running(short_tmp) as server, AdminClient(server.path) as c:
        assert (await c.call("status"))["version"] == "test"


async def test_live_socket_is_refused(short_tmp: Path) -> None:
    """A second server on the same path fails: another daemon is listening."""
    async with asyncio.timeout(5), running(short_tmp) as server:
        with pytest.raises(AdminSocketError, match="another daemon is listening"):
            async with serve_admin(server.path, HANDLERS):
                pass
        async with AdminClient(server.path) as c:  # the first one is untouched
            assert (await c.call("status"))["version"] == "test"


@pytest.mark.parametrize("kind", ["symlink", "file", "dir", "foreign_socket"])
async def test_unsafe_existing_path_is_refused_and_kept(short_tmp: Path, kind: str) -> None:
    """A symlink, regular file, directory or another uid's socket at the path is never removed."""
    path = short_tmp / "admin.sock"
    if kind == "symlink":
        (short_tmp / "target").write_text("x")
        path.symlink_to(short_tmp / "target")
    elif kind == "file":
        path.write_text("precious")
    elif kind == "dir":
        path.mkdir()
    else:
        if os.geteuid() != 0:
            pytest.skip("chown to another uid needs root")
        _stale_socket(path)
        os.chown(path, 65534, 65534)
    with pytest.raises(AdminSocketError, match="admin socket path"):
        async with asyncio.timeout(5), serve_admin(path, HANDLERS):
            pass
    assert path.is_symlink() or path.exists()
    if kind == "file":
        assert path.read_text() == "precious"


async def test_socket_replaced_by_someone_else_is_not_unlinked(short_tmp: Path) -> None:
    """On exit the path is unlinked only if it is still the socket we bound."""
    async with asyncio.timeout(5), running(short_tmp) as server:
        os.unlink(server.path)
        server.path.write_text("new owner")
    assert (short_tmp / "admin.sock").read_text() == "new owner"


# --- peer credentials ------------------------------------------------------------------------

_CLIENT = textwrap.dedent(
    """
    import socket, sys
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    s.connect(sys.argv[1])
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
        if (
            os.access(cand, os.X_OK)
            and subprocess.run(
                ["runuser", "-u", user, "--", cand, "-c", "pass"], capture_output=True, timeout=10
            ).returncode
            == 0
        ):
            return cand
    return None


PEERS = [
    # (admin_group, extra runuser args, expected code or None for allowed)
    ("", [], "forbidden"),
    ("daemon", [], "forbidden"),
    ("nogroup", [], None),  # nobody's primary gid
    ("daemon", ["-G", "daemon"], None),  # a supplementary group (SO_PEERGROUPS)
]


@pytest.mark.needs_root
@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("runuser"), reason="needs root")
@pytest.mark.parametrize(("group", "extra", "code"), PEERS)
async def test_peer_credentials_decide_access(
    short_tmp: Path, group: str, extra: list[str], code: str | None
) -> None:
    """`nobody` (socket made 0666 so only SO_PEERCRED decides) is refused unless it is in
    admin_group by primary or supplementary gid; root is always welcome."""
    python = _python_for("nobody")
    if python is None:
        pytest.skip("no interpreter that nobody may run")
    async with asyncio.timeout(10), running(short_tmp, group=group) as server:
        os.chmod(short_tmp, 0o755)
        os.chmod(server.path, 0o666)
        proc = await asyncio.create_subprocess_exec(
            "runuser", "-u", "nobody", *extra, "--", python, "-c", _CLIENT, str(server.path),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        out, err = await proc.communicate()
        assert proc.returncode == 0, err.decode()
        resp = json.loads(out)
        if code is None:
            assert resp == {"id": 1, "ok": True, "result": {"version": "test"}}
        else:
            assert resp["ok"] is False and resp["error"]["code"] == code
            assert resp["id"] is None and "65534" in resp["error"]["message"]
        async with AdminClient(server.path) as c:  # root is still welcome
            assert (await c.call("status"))["version"] == "test"
