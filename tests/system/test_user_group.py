"""``[daemon] user_group`` with two real unprivileged users (issue 14): each sees and changes
only its own API jobs and their runs, config jobs are read-only to them, admins see
everything, every refusal is ``forbidden`` naming the owner, and the audit trail names each
caller by uid. The users talk to the real daemon's socket from processes started with
``runuser``, so SO_PEERCRED reports their real uids."""

from __future__ import annotations

import asyncio
import grp
import json
import os
import pwd
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.daemon import DaemonProcess

Factory = Callable[..., DaemonProcess]
GROUP, ALICE, BOB = "ad14users", "ad14alice", "ad14bob"

pytestmark = [
    pytest.mark.needs_root,
    pytest.mark.skipif(
        os.geteuid() != 0 or not all(shutil.which(t) for t in ("runuser", "useradd", "groupadd")),
        reason="needs root, runuser, useradd and groupadd",
    ),
]

# Sends each request of a JSON list on one connection; prints the list of response objects.
_CLIENT = textwrap.dedent(
    """
    import json, socket, sys
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(sys.argv[1])
    f = s.makefile("rwb")
    out = []
    for i, (cmd, args) in enumerate(json.loads(sys.argv[2])):
        try:
            f.write(json.dumps({"id": i, "cmd": cmd, "args": args}).encode() + b"\\n")
            f.flush()
        except BrokenPipeError:  # refused before we wrote: its answer is still ours to read
            pass
        out.append(json.loads(f.readline()))
    print(json.dumps(out))
    """
)


@pytest.fixture(scope="module")
def users() -> Iterator[dict[str, int]]:
    """Group ad14users with members ad14alice and ad14bob (made here, removed after)."""
    made: list[list[str]] = []
    try:
        grp.getgrnam(GROUP)
    except KeyError:
        subprocess.run(["groupadd", GROUP], check=True, capture_output=True)
        made.append(["groupdel", GROUP])
    for user in (ALICE, BOB):
        try:
            pwd.getpwnam(user)
        except KeyError:
            subprocess.run(
                ["useradd", "-M", "-N", "-g", GROUP, "-s", "/usr/sbin/nologin", user],
                check=True,
                capture_output=True,
            )
            made.insert(0, ["userdel", user])
    yield {u: pwd.getpwnam(u).pw_uid for u in (ALICE, BOB)}
    for argv in made:
        subprocess.run(argv, capture_output=True)


def _python_for(user: str) -> str:
    for cand in (os.path.realpath(sys.executable), "/usr/bin/python3", "/usr/local/bin/python3"):
        ok = os.access(cand, os.X_OK) and subprocess.run(
            ["runuser", "-u", user, "--", cand, "-c", "pass"], capture_output=True, timeout=10
        ).returncode == 0  # fmt: skip
        if ok:
            return cand
    pytest.skip(f"no interpreter {user} may run")


async def as_user(user: str, sock: Path, *reqs: tuple[str, dict[str, Any]]) -> list[Any]:
    """Each request's response object, sent by a process running as ``user``."""
    argv = ["runuser", "-u", user, "--", _python_for(user), "-c", _CLIENT, str(sock)]
    argv.append(json.dumps(list(reqs)))
    done = await asyncio.to_thread(subprocess.run, argv, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    out: list[Any] = json.loads(done.stdout)
    return out


def ok(resp: dict[str, Any]) -> Any:
    assert resp["ok"], resp
    return resp["result"]


def refused(resp: dict[str, Any], *needles: str) -> None:
    assert not resp["ok"] and resp["error"]["code"] == "forbidden", resp
    for needle in needles:
        assert needle in resp["error"]["message"], resp


CONFIG_JOB = (
    '[[jobs]]\nname = "shared"\non = "x"\n'
    'action = { type = "exec", argv = ["true"], env = { API_TOKEN = "s3cret" } }\n'
)


def job(name: str) -> dict[str, Any]:
    return {"name": name, "on": "x.y", "action": {"type": "exec", "argv": ["/bin/true"]}}


async def test_two_users_see_and_change_only_their_own_jobs(
    daemon_factory: Factory, short_tmp: Path, users: dict[str, int]
) -> None:
    """1. alice and bob (members of user_group) each add a job; alice triggers hers.
    2. Each lists jobs and runs, and tries the other's job, run and dead letters, the config
       job, and admin-only commands.
    3. root lists everything and reads the audit trail; alice reads hers.
    Result: each sees the config job and its own; everything else is `forbidden`, naming
    the owner or the config file; root sees all; the trail has the right uid per entry."""
    d = daemon_factory(jobs=CONFIG_JOB, daemon=f'user_group = "{GROUP}"')
    d.start()
    os.chmod(short_tmp, 0o711)
    assert os.stat(d.socket).st_gid == grp.getgrnam(GROUP).gr_gid
    sock = d.socket
    a_add, a_trig = await as_user(
        ALICE, sock, ("jobs.add", {"job": job("a-job")}), ("jobs.trigger", {"name": "a-job"})
    )
    assert ok(a_add)["owner"] == users[ALICE]
    run_a = ok(a_trig)["id"]
    (b_add,) = await as_user(BOB, sock, ("jobs.add", {"job": job("b-job")}))
    assert ok(b_add)["owner"] == users[BOB]
    await asyncio.to_thread(d.wait_run, run_a)

    seen = await as_user(
        ALICE,
        sock,
        ("jobs.list", {}),
        ("runs.list", {}),
        ("jobs.get", {"name": "shared"}),
        ("runs.get", {"id": run_a}),
        ("jobs.update", {"name": "a-job", "patch": {"description": "mine"}}),
    )
    assert sorted(j["name"] for j in ok(seen[0])) == ["a-job", "shared"]
    assert [r["id"] for r in ok(seen[1])] == [run_a]
    assert ok(seen[2])["source"] == "config"
    assert ok(seen[2])["spec"]["action"]["env"] == {"API_TOKEN": "***"}  # no secrets to users
    assert "s3cret" not in json.dumps(seen)
    assert ok(seen[3])["job"] == "a-job"
    assert ok(seen[4])["description"] == "mine"

    bob = await as_user(
        BOB,
        sock,
        ("jobs.list", {}),
        ("runs.list", {}),
        ("jobs.get", {"name": "a-job"}),
        ("jobs.trigger", {"name": "a-job"}),
        ("jobs.update", {"name": "a-job", "patch": {"retries": 0}}),
        ("jobs.pause", {"name": "a-job"}),
        ("jobs.remove", {"name": "a-job"}),
        ("runs.get", {"id": run_a}),
        ("runs.list", {"job": "a-job"}),
        ("dlq.list", {"job": "a-job"}),
        ("jobs.explain", {"name": "a-job"}),
        ("jobs.trigger", {"name": "shared"}),
        ("jobs.update", {"name": "shared", "patch": {"retries": 0}, "override": True}),
        ("reload", {}),
        ("events.publish", {"name": "x.y"}),
        ("store.backup", {"path": "/tmp/ad14-nope.db"}),
        ("dlq.purge", {"all": True}),
    )
    assert sorted(j["name"] for j in ok(bob[0])) == ["b-job", "shared"]
    assert ok(bob[1]) == []
    for resp in bob[2:11]:
        refused(resp, "a-job", f"uid {users[ALICE]} ({ALICE})")
    for resp in bob[11:13]:
        refused(resp, "managed by")
    for resp in bob[13:16]:
        refused(resp, "admins only")
    refused(bob[16])
    assert not await asyncio.to_thread(os.path.exists, "/tmp/ad14-nope.db")

    async with asyncio.timeout(20):
        assert sorted(j["name"] for j in await d.call("jobs.list")) == ["a-job", "b-job", "shared"]
        shared = await d.call("jobs.get", {"name": "shared"})
        assert shared["spec"]["action"]["env"] == {"API_TOKEN": "s3cret"}  # admins see all
        trail = await d.call("audit.list", {"limit": 100})
    by = {(e["cmd"], e["target"], e["outcome"]): e["uid"] for e in trail}
    assert by[("jobs.add", "a-job", "ok")] == users[ALICE]
    assert by[("jobs.trigger", "a-job", "ok")] == users[ALICE]
    assert by[("jobs.add", "b-job", "ok")] == users[BOB]
    assert by[("jobs.trigger", "a-job", "forbidden")] == users[BOB]
    assert by[("reload", None, "forbidden")] == users[BOB]
    users_named = {e["uid"]: e["user"] for e in trail}
    assert users_named[users[ALICE]] == ALICE and users_named[users[BOB]] == BOB
    (mine,) = await as_user(ALICE, sock, ("audit.list", {}))
    assert {e["uid"] for e in ok(mine)} == {users[ALICE]}
    (gone,) = await as_user(ALICE, sock, ("jobs.remove", {"name": "a-job"}))
    assert ok(gone)["name"] == "a-job"
    assert d.stop() == 0


async def test_others_are_still_refused_at_the_door(
    daemon_factory: Factory, short_tmp: Path, users: dict[str, int]
) -> None:
    """With user_group set, a uid in neither group (`nobody`) is answered `forbidden` and
    closed, as before: the group is not a way in for everyone."""
    d = daemon_factory(jobs=CONFIG_JOB, daemon=f'user_group = "{GROUP}"')
    d.start()
    os.chmod(short_tmp, 0o711)
    os.chmod(d.socket, 0o666)  # let nobody connect: SO_PEERCRED must still refuse it
    python = _python_for("nobody")
    argv = ["runuser", "-u", "nobody", "--", python, "-c", _CLIENT, str(d.socket)]
    argv.append(json.dumps([["status", {}]]))
    run = subprocess.run
    done = await asyncio.to_thread(run, argv, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    (resp,) = json.loads(done.stdout)
    assert resp["error"]["code"] == "forbidden" and "uid 65534" in resp["error"]["message"]
    assert d.stop() == 0
