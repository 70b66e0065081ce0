"""obs/systemd.py against a real NOTIFY_SOCKET receiver (path and abstract)."""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from automationd.clock import SystemClock
from automationd.obs.systemd import Notifier, forget_env, run_watchdog, scrub_env
from tests.support.notify import NotifyReceiver


@pytest.fixture(params=["path", "abstract"])
async def receiver(
    request: pytest.FixtureRequest, short_tmp: Path
) -> AsyncIterator[NotifyReceiver]:
    """A NotifyReceiver on a filesystem path or in the abstract namespace."""
    rx = (
        NotifyReceiver.abstract()
        if request.param == "abstract"
        else NotifyReceiver(str(short_tmp / "notify.sock"))
    )
    async with rx:
        yield rx


async def test_lifecycle_messages_arrive_in_order(receiver: NotifyReceiver) -> None:
    """READY=1, STATUS=…, WATCHDOG=1 and STOPPING=1 reach the socket named by NOTIFY_SOCKET."""
    n = Notifier.from_env({"NOTIFY_SOCKET": receiver.address})
    assert n.enabled
    assert n.ready("serving 3 jobs")
    assert n.status("draining 2 attempts")
    assert n.watchdog()
    assert n.stopping()
    async with asyncio.timeout(5):
        await receiver.wait_for_message("STOPPING=1")
    n.close()
    assert [m.fields for m in receiver.messages] == [
        {"READY": "1", "STATUS": "serving 3 jobs"},
        {"STATUS": "draining 2 attempts"},
        {"WATCHDOG": "1"},
        {"STOPPING": "1"},
    ]


async def test_reloading_carries_monotonic_usec(receiver: NotifyReceiver) -> None:
    """RELOADING=1 is sent with MONOTONIC_USEC on CLOCK_MONOTONIC, as systemd ≥ 253 requires."""
    n = Notifier.from_env({"NOTIFY_SOCKET": receiver.address}, clock=SystemClock())
    before = time.monotonic()
    n.reloading()
    async with asyncio.timeout(5):
        msg = await receiver.wait_for_message("RELOADING=1")
    n.close()
    usec = int(msg.fields["MONOTONIC_USEC"])
    assert int(before * 1e6) <= usec <= time.monotonic() * 1e6  # usec is truncated to whole µs


async def test_status_text_is_kept_on_one_line(receiver: NotifyReceiver) -> None:
    """A newline in a STATUS text cannot inject a second notification field."""
    n = Notifier.from_env({"NOTIFY_SOCKET": receiver.address})
    n.status("ok\nREADY=1")
    async with asyncio.timeout(5):
        msg = await receiver.wait_for_message("STATUS=")
    n.close()
    assert msg.fields == {"STATUS": "ok READY=1"}


def test_without_notify_socket_everything_is_a_noop() -> None:
    """No NOTIFY_SOCKET: methods return False, nothing raises, the watchdog is off."""
    n = Notifier.from_env({"WATCHDOG_USEC": "30000000"})
    assert not n.enabled
    assert n.watchdog_interval is None
    assert not any([n.ready(), n.reloading(), n.stopping(), n.status("x"), n.watchdog()])


@pytest.mark.parametrize(
    ("env", "interval"),
    [
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "{pid}"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({}, None),
    ],
)
def test_watchdog_interval_is_half_of_watchdog_usec_for_our_pid(
    env: dict[str, str], interval: float | None
) -> None:
    """The watchdog is armed at WATCHDOG_USEC/2 only when WATCHDOG_PID is unset or ours."""
    environ = {k: v.format(pid=os.getpid()) for k, v in env.items()}
    environ["NOTIFY_SOCKET"] = "@nobody-listens"
    assert Notifier.from_env(environ).watchdog_interval == interval


def test_send_failure_is_logged_once_and_never_raises(short_tmp: Path) -> None:
    """Sending to a socket nobody bound returns False and logs systemd.notify_failed once."""
    n = Notifier.from_env({"NOTIFY_SOCKET": str(short_tmp / "missing.sock")})
    with capture_logs() as logs:
        results = [n.ready(), n.status("x"), n.watchdog()]
    n.close()
    assert results == [False, False, False]
    assert [e["event"] for e in logs] == ["systemd.notify_failed"]


def test_unsupported_socket_kind_disables_notifications() -> None:
    """A NOTIFY_SOCKET that is neither a path nor @abstract is reported and ignored."""
    with capture_logs() as logs:
        n = Notifier.from_env({"NOTIFY_SOCKET": "vsock:2:1234"})
    assert not n.enabled and not n.ready()
    assert [e["event"] for e in logs] == ["systemd.notify_socket_unsupported"]


def test_scrub_env_drops_daemon_only_variables() -> None:
    """Children get the environment minus NOTIFY_SOCKET, WATCHDOG_*, CREDENTIALS_*, LISTEN_*."""
    environ = {
        "PATH": "/usr/bin",
        "NOTIFY_SOCKET": "@x",
        "WATCHDOG_USEC": "1",
        "WATCHDOG_PID": "1",
        "CREDENTIALS_DIRECTORY": "/run/credentials/x",
        "LISTEN_FDS": "1",
        "LISTEN_PID": "1",
        "LISTEN_FDNAMES": "admin",
        "INVOCATION_ID": "abc",
    }
    assert scrub_env(environ) == {"PATH": "/usr/bin", "INVOCATION_ID": "abc"}
    assert "NOTIFY_SOCKET" in environ  # a copy, not in place
    forget_env(environ)
    assert environ == {"PATH": "/usr/bin", "INVOCATION_ID": "abc"}


async def test_watchdog_pings_at_interval_and_pauses_while_unhealthy(
    receiver: NotifyReceiver,
) -> None:
    """
    1. WATCHDOG_USEC=200ms arms a 100 ms ping interval; pings arrive about that far apart.
    2. While health() is false no pings arrive.
    3. When health() is true again, pings resume.
    Result: the watchdog only vouches for a healthy daemon.
    """
    n = Notifier.from_env({"NOTIFY_SOCKET": receiver.address, "WATCHDOG_USEC": "200000"})
    healthy = True
    async with asyncio.timeout(5), asyncio.TaskGroup() as tg:
        task = tg.create_task(run_watchdog(n, SystemClock(), lambda: healthy), name="watchdog")
        await receiver.wait_for(lambda _: receiver.count("WATCHDOG=1") >= 4)
        healthy = False
        at_flip = receiver.count("WATCHDOG=1")
        arrivals = [m.arrived for m in receiver.messages if m.matches("WATCHDOG=1")]
        gaps = [b - a for a, b in itertools.pairwise(arrivals)]
        assert all(0.05 < g < 0.5 for g in gaps), gaps

        await asyncio.sleep(0.45)
        paused = receiver.count("WATCHDOG=1")
        assert paused <= at_flip + 1  # one ping may have been in flight at the flip

        healthy = True
        await receiver.wait_for(lambda _: receiver.count("WATCHDOG=1") > paused)
        task.cancel()
    n.close()


class _LaggyClock:
    """Monotonic time that jumps: each sleep_until overshoots its deadline by a scripted lag."""

    def __init__(self, lags: list[float]) -> None:
        self.t = 100.0
        self.lags = lags

    def monotonic(self) -> float:
        return self.t

    async def sleep_until(self, deadline: float) -> None:
        if not self.lags:
            raise _ScriptDone
        self.t = max(self.t, deadline) + self.lags.pop(0)
        await asyncio.sleep(0)


class _ScriptDone(Exception):
    pass


async def test_watchdog_skips_a_tick_after_loop_lag(receiver: NotifyReceiver) -> None:
    """A tick that wakes more than one interval late sends no ping; the next on-time tick does."""
    n = Notifier.from_env({"NOTIFY_SOCKET": receiver.address, "WATCHDOG_USEC": "200000"})
    clock = _LaggyClock([0.0, 0.25, 0.01, 0.0])  # interval 0.1: the second tick is too late
    with capture_logs() as logs, pytest.raises(_ScriptDone):
        await run_watchdog(n, clock, lambda: True)  # type: ignore[arg-type]
    async with asyncio.timeout(5):
        await receiver.wait_for(lambda _: receiver.count("WATCHDOG=1") >= 4)
        await asyncio.sleep(0.05)
    n.close()
    assert receiver.count("WATCHDOG=1") == 4  # the first ping plus three on-time ticks
    skipped = [e for e in logs if e["event"] == "systemd.watchdog_skipped"]
    assert [e["reason"] for e in skipped] == ["loop_lag"]


async def test_watchdog_returns_at_once_when_not_armed() -> None:
    """Without WATCHDOG_USEC run_watchdog returns immediately (nothing to ping)."""
    n = Notifier.from_env({"NOTIFY_SOCKET": "@unused"})
    async with asyncio.timeout(1):
        await run_watchdog(n, SystemClock(), lambda: True)
