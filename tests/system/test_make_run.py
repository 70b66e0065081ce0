"""`make run` on a fresh machine: the demo config reaches READY fast and answers `status`.

The test runs exactly what the Makefile's `run` target runs (`mkdir -p var/run`, then
`.venv/bin/automationd run --config etc/automationd.toml`) from a copy of the repo's etc/ in a
temp dir, so ./var is temporary. The one change to the copy: the metrics port becomes 0, so a
developer's own `make run` on 9464 cannot make the test fail. `make` itself is not run: it may
pip install.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.support.notify import NotifyReceiver

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
DEMO_LISTEN = 'metrics_listen = "127.0.0.1:9464"'


def vm_rss_kib(pid: int) -> int:
    """Resident set size of ``pid`` in KiB (``VmRSS`` from /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


def demo_checkout(root: Path) -> Path:
    """A copy of etc/ under ``root`` with the metrics port freed; returns the config path."""
    shutil.copytree(REPO / "etc", root / "etc")
    config = root / "etc" / "automationd.toml"
    text = config.read_text()
    assert text.count(DEMO_LISTEN) == 1, "the demo config's metrics_listen line changed"
    config.write_text(text.replace(DEMO_LISTEN, 'metrics_listen = "127.0.0.1:0"'))
    (root / "var" / "run").mkdir(parents=True)  # what `make run` does first
    return config


def spawn_make_run(checkout: Path, env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """The Makefile's `run` command, from ``checkout``, logging to ``log_path``."""
    with open(log_path, "wb") as logf:
        return subprocess.Popen(
            [str(BIN / "automationd"), "run", "--config", "etc/automationd.toml"],
            cwd=checkout, env=env, stdout=logf, stderr=subprocess.STDOUT,
        )  # fmt: skip


async def ctl(cwd: Path, *argv: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        str(BIN / "automationctl"), *argv, cwd=cwd,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_make_run_reaches_ready_under_2s_and_status_answers(short_tmp: Path) -> None:
    """1. Start the daemon as `make run` does, with a NOTIFY_SOCKET, and time READY=1.
    2. `automationctl --socket var/run/admin.sock status` (relative, from the checkout) exits 0.
    3. State and socket live under the checkout's ./var (paths resolve against etc/).
    4. SIGTERM on the idle daemon.
    Result: READY within 2 s, status lists the 4 demo jobs, `limits` and `breakers` show the
    demo service, exit 0 within 1 s with STOPPING=1.
    """
    demo_checkout(short_tmp)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NOTIFY_", "WATCHDOG_"))}
    log_path = short_tmp / "daemon.log"
    async with NotifyReceiver(str(short_tmp / "notify.sock")) as rx:
        env["NOTIFY_SOCKET"] = rx.address
        t0 = time.monotonic()
        proc = spawn_make_run(short_tmp, env, log_path)
        try:
            ready = await rx.wait_for_message("READY=1", timeout=10)
            to_ready = ready.arrived - t0
            rss = vm_rss_kib(proc.pid)
            assert to_ready < 2.0, f"READY after {to_ready:.2f}s:\n{log_path.read_text()}"

            async with asyncio.timeout(10):
                code, out, err = await ctl(short_tmp, "--socket", "var/run/admin.sock", "status")
            assert code == 0, err
            assert "4 total, 4 enabled" in out
            async with asyncio.timeout(10):
                code, out, err = await ctl(
                    short_tmp, "--socket", "var/run/admin.sock", "--json", "jobs", "list"
                )
            assert code == 0, err
            names = {j["name"] for j in json.loads(out)}
            assert names == {"demo-heartbeat", "demo-on-event", "demo-fanout", "demo-health"}
            # the demo service shows in `limits` and `breakers` from the first run
            for argv, row in ((["limits"], ["demo_api", "30/1m", "5"]),
                              (["breakers"], ["demo_api", "closed", "0"])):  # fmt: skip
                async with asyncio.timeout(10):
                    code, out, err = await ctl(short_tmp, "--socket", "var/run/admin.sock", *argv)
                assert code == 0, err
                assert out.splitlines()[1].split()[:3] == row, out
            assert (short_tmp / "var" / "automationd.db").is_file()
            assert (short_tmp / "var" / "run" / "admin.sock").is_socket()

            t1 = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            async with asyncio.timeout(5):
                code = await asyncio.to_thread(proc.wait)
            stop_s = time.monotonic() - t1
            assert code == 0, log_path.read_text()
            assert stop_s < 1.0, f"idle stop took {stop_s:.2f}s"
            assert rx.find("STOPPING=1") is not None
            assert not (short_tmp / "var" / "run" / "admin.sock").exists()
            print(
                f"\nmake-run figures: time_to_ready_s={to_ready:.3f} idle_rss_mib={rss / 1024:.1f}"
                f" idle_stop_s={stop_s:.3f}"
            )
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
