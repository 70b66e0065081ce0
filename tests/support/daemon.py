"""A real daemon subprocess for system tests: config in a temp dir, socket, logs, signals.

d = make_daemon(jobs='''[[jobs]] ...''')       # fixture `daemon_factory` in tests/system
d.start()                                      # waits until `status` answers
result = await d.call("jobs.trigger", {"name": "x"})
assert d.stop() == 0                           # SIGTERM, exit code
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from automationd.errors import AdminError

BIN = Path(sys.executable).parent


def config_text(
    base: Path, *, jobs: str = "", services: str = "", daemon: str = "", extra: str = ""
) -> str:
    """A config rooted in ``base``; keys given in ``daemon`` replace the test defaults."""
    defaults = {
        "state_dir": f'"{base / "state"}"',
        "admin_socket": f'"{base / "admin.sock"}"',
        "metrics_listen": '"127.0.0.1:0"',
        "log_format": '"json"',
        "log_level": '"info"',
        "shutdown_timeout": '"5s"',
    }
    given = {line.split("=", 1)[0].strip() for line in daemon.splitlines() if "=" in line}
    lines = [f"{k} = {v}" for k, v in defaults.items() if k not in given]
    head = "\n".join(["[daemon]", *lines, daemon])
    return f"{head}\n\n{extra}\n\n{services}\n\n{jobs}\n"


class DaemonProcess:
    def __init__(self, base: Path, text: str) -> None:
        self.base = base
        self.config = base / "automationd.toml"
        self.socket = base / "admin.sock"
        self.log_path = base / "daemon.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.config.write_text(text)
        self._ids = 0

    def write_config(self, text: str) -> None:
        self.config.write_text(text)

    def start(
        self, *, env: dict[str, str] | None = None, wait: bool = True, timeout: float = 15.0
    ) -> None:
        full_env = dict(os.environ)
        full_env.update(env or {})
        full_env["PYTHONPATH"] = str(self.base) + os.pathsep + full_env.get("PYTHONPATH", "")
        logf = open(self.log_path, "ab")  # noqa: SIM115 - closed by the child's exit
        self.proc = subprocess.Popen(
            [str(BIN / "automationd"), "run", "--config", str(self.config)],
            stdout=logf,
            stderr=subprocess.STDOUT,
            env=full_env,
            cwd=self.base,
        )
        logf.close()
        if wait:
            self.wait_ready(timeout)

    def wait_ready(self, timeout: float = 15.0) -> float:
        """Poll until `status` answers; returns seconds waited."""
        t0 = time.monotonic()
        assert self.proc is not None
        while time.monotonic() - t0 < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited {self.proc.returncode}:\n{self.logs()[-3000:]}")
            try:
                self.call_sync("status")
                return time.monotonic() - t0
            except (OSError, ValueError):
                time.sleep(0.02)
        raise TimeoutError(f"daemon not ready after {timeout}s:\n{self.logs()[-3000:]}")

    def call_sync(self, cmd: str, args: dict[str, Any] | None = None, timeout: float = 10.0) -> Any:
        """One request on a fresh blocking connection; raises AdminError on ok=false."""
        self._ids += 1
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(str(self.socket))
            s.sendall(
                json.dumps({"id": self._ids, "cmd": cmd, "args": args or {}}).encode() + b"\n"
            )
            buf = b""
            while not buf.endswith(b"\n"):
                chunk = s.recv(1 << 20)
                if not chunk:
                    raise ValueError("connection closed")
                buf += chunk
        resp = json.loads(buf)
        if not resp.get("ok"):
            err = resp.get("error", {})
            raise AdminError(err.get("code", "?"), err.get("message", ""))
        return resp["result"]

    async def call(self, cmd: str, args: dict[str, Any] | None = None) -> Any:
        from tests.support.admin_client import AdminClient

        async with AdminClient(self.socket, timeout=10) as c:
            return await c.call(cmd, args or {})

    def send(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout)

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_events(self) -> list[dict[str, Any]]:
        out = []
        for line in self.logs().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out

    def wait_run(
        self,
        run_id: str,
        states: tuple[str, ...] = ("succeeded", "partial", "failed", "skipped", "cancelled"),
        timeout: float = 15.0,
    ) -> dict[str, Any]:
        t0 = time.monotonic()
        while True:
            run: dict[str, Any] = self.call_sync("runs.get", {"id": run_id})
            if run["state"] in states:
                return run
            if time.monotonic() - t0 > timeout:
                raise TimeoutError(f"run {run_id} still {run['state']}:\n{self.logs()[-2000:]}")
            time.sleep(0.02)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
