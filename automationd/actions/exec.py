"""exec actions: run a program without a shell, in its own process group.

Theory of operation:

- The child starts with ``start_new_session=True``, so it leads a new process group whose id
  is its pid. That id goes to ``ctx.on_spawn`` at once; after a daemon crash
  ``kill_orphans`` uses the persisted ids to end what the dead daemon left running. No
  ``preexec_fn``: it is unsafe while other threads (aiosqlite's) exist.
- stdout and stderr are fed, as they arrive, into tail buffers that keep the last
  ``OUTPUT_CAP`` bytes, so a chatty child costs bounded memory. The child is started with
  ``loop.subprocess_exec`` and a small protocol rather than ``create_subprocess_exec``,
  because ``Process.wait()`` only returns once the pipes close: we need to see the child's
  exit apart from its leftovers letting go of stdout.
- An attempt's process group never outlives the attempt. When the child exits, anything
  left in its group gets SIGTERM, then SIGKILL once the pipes close or ``KILL_GRACE`` passes.
  On timeout or cancellation the whole group gets SIGTERM, ``KILL_GRACE`` to exit, then
  SIGKILL.
- The environment is the daemon's minus what belongs to the daemon alone (systemd's notify
  and watchdog sockets, credentials, socket activation), plus the job's ``env``, plus the
  ``AUTOMATIOND_*`` attempt variables. A payload too big for an environment variable goes
  through a private temp file instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from automationd import strictjson
from automationd.actions.base import OUTPUT_CAP, ActionContext, ActionResult, Output, phase_result
from automationd.config.model import ExecAction
from automationd.core.outcome import CHECK_SKIP_CODE, classify_exit, classify_spawn_errno
from automationd.errors import ActionError, ErrorKind
from automationd.records import Phase

KILL_GRACE = 5.0  # seconds between SIGTERM and SIGKILL; tests shrink it
PAYLOAD_ENV_LIMIT = 64 * 1024  # bigger payloads go through AUTOMATIOND_PAYLOAD_FILE

SCRUBBED_ENV = frozenset(
    {
        "NOTIFY_SOCKET",
        "CREDENTIALS_DIRECTORY",
        "LISTEN_FDS",
        "LISTEN_PID",
        "LISTEN_FDNAMES",
    }
)
SCRUBBED_PREFIXES = ("WATCHDOG_",)
ATTEMPT_ENV = frozenset(
    {
        "AUTOMATIOND_JOB",
        "AUTOMATIOND_RUN_ID",
        "AUTOMATIOND_ATTEMPT",
        "AUTOMATIOND_PHASE",
        "AUTOMATIOND_TARGET",
        "AUTOMATIOND_PAYLOAD",
        "AUTOMATIOND_PAYLOAD_FILE",
    }
)


def child_environment(environ: Mapping[str, str], extra: Mapping[str, str]) -> dict[str, str]:
    """The base environment of every child of a job: the daemon's, scrubbed, plus ``extra``."""
    env = {
        k: v
        for k, v in environ.items()
        if k not in SCRUBBED_ENV and k not in ATTEMPT_ENV and not k.startswith(SCRUBBED_PREFIXES)
    }
    env.update(extra)
    return env


class _Tail:
    """The last ``cap`` bytes of a stream, and how many earlier bytes were dropped."""

    __slots__ = ("buf", "cap", "dropped")

    def __init__(self, cap: int = OUTPUT_CAP) -> None:
        self.buf = bytearray()
        self.cap = cap
        self.dropped = 0

    def feed(self, chunk: bytes) -> None:
        self.buf += chunk
        excess = len(self.buf) - self.cap
        if excess > 0:
            del self.buf[:excess]
            self.dropped += excess

    def text(self) -> str:
        if not self.dropped:
            return self.buf.decode("utf-8", "replace")
        marker = f"[automationd: {self.dropped} earlier bytes dropped]\n".encode()
        return (marker + self.buf[len(marker) :]).decode("utf-8", "replace")


class _Capture(asyncio.SubprocessProtocol):
    """Feeds the child's pipes into tail buffers and signals exit and pipe closure apart.

    ``Process.wait()`` from ``create_subprocess_exec`` only returns once the pipes close, so
    a leftover grandchild holding stdout would make a finished child look hung; this
    protocol tells "the child exited" from "everyone let go of the pipes".
    """

    def __init__(self) -> None:
        self.out = _Tail()
        self.err = _Tail()
        self.exited = asyncio.Event()
        self.pipes_closed = asyncio.Event()
        self._open = {1, 2}

    def pipe_data_received(self, fd: int, data: bytes | str) -> None:
        chunk = data.encode() if isinstance(data, str) else data
        (self.out if fd == 1 else self.err).feed(chunk)

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        self._open.discard(fd)
        if not self._open:
            self.pipes_closed.set()

    def process_exited(self) -> None:
        self.exited.set()


async def _within(seconds: float, event: asyncio.Event) -> bool:
    """Wait for ``event`` at most ``seconds``; True if it was set."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await event.wait()
    return event.is_set()


def _killpg(pgid: int, sig: signal.Signals) -> bool:
    """Signal a process group; False when it is already gone (or not ours)."""
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        return False
    return True


async def _terminate(cap: _Capture, pgid: int) -> None:
    """SIGTERM the group, give the child ``KILL_GRACE`` seconds, then SIGKILL the group."""
    try:
        _killpg(pgid, signal.SIGTERM)
        await _within(KILL_GRACE, cap.exited)
    finally:  # runs even if we are cancelled again while waiting
        _killpg(pgid, signal.SIGKILL)
    await _within(KILL_GRACE, cap.exited)
    await _within(KILL_GRACE, cap.pipes_closed)  # grandchildren holding the pipes are gone


async def _sweep(cap: _Capture, pgid: int) -> None:
    """After the child exited: end what it left in its group, so the attempt owns nothing.

    Leftovers get SIGTERM and until the pipes close (or ``KILL_GRACE``) to go, then SIGKILL.
    A process that escaped the group but holds a pipe is not waited for beyond the grace.
    """
    if _killpg(pgid, signal.SIGTERM):
        await _within(KILL_GRACE, cap.pipes_closed)
        _killpg(pgid, signal.SIGKILL)
    await _within(KILL_GRACE, cap.pipes_closed)


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _write_private(text: str) -> str:
    fd, path = tempfile.mkstemp(prefix="automationd-payload-", suffix=".json")  # mode 0600
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    return path


def _json_object(tail: _Tail) -> dict[str, Any] | None:
    """stdout read as a JSON object, when it is one and was not cut."""
    if tail.dropped:
        return None
    text = tail.buf.strip()
    if not text.startswith(b"{"):
        return None
    try:
        value = strictjson.loads(text)  # 1e999 or NaN must not reach the store
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _exit_message(code: int, stderr: _Tail) -> str:
    if code < 0:
        try:
            what = f"killed by {signal.Signals(-code).name}"
        except ValueError:
            what = f"killed by signal {-code}"
    else:
        what = f"exited with code {code}"
    lines = [ln for ln in stderr.buf.decode("utf-8", "replace").splitlines() if ln.strip()]
    return f"{what}: {lines[-1].strip()[:300]}" if lines else what


class ExecRunner:
    """An exec action, built once per job."""

    __slots__ = ("_argv", "_cwd", "_env", "_retryable")
    spawns = True  # the engine hands it ``ctx.on_spawn`` (the process group, for recovery)

    def __init__(self, spec: ExecAction, *, environ: Mapping[str, str] | None = None) -> None:
        if not spec.argv:
            raise ValueError("exec action needs a non-empty argv")
        self._argv = tuple(spec.argv)
        self._cwd = str(spec.cwd) if spec.cwd is not None else None
        self._env = child_environment(os.environ if environ is None else environ, spec.env)
        self._retryable = frozenset(spec.retryable_exit_codes)

    async def __call__(self, ctx: ActionContext) -> ActionResult:
        env = dict(self._env)
        env["AUTOMATIOND_JOB"] = ctx.job
        env["AUTOMATIOND_RUN_ID"] = ctx.run_id
        env["AUTOMATIOND_ATTEMPT"] = str(ctx.attempt)
        env["AUTOMATIOND_PHASE"] = ctx.phase.value
        env["AUTOMATIOND_TARGET"] = _dumps(ctx.target)
        payload = _dumps(ctx.payload)
        payload_file: str | None = None
        if len(payload.encode()) > PAYLOAD_ENV_LIMIT:
            try:
                payload_file = await asyncio.to_thread(_write_private, payload)
            except OSError as exc:
                raise ActionError(
                    f"exec: cannot write payload file: {exc}", kind=ErrorKind.RETRYABLE
                ) from exc
            env["AUTOMATIOND_PAYLOAD_FILE"] = payload_file
        else:
            env["AUTOMATIOND_PAYLOAD"] = payload
        try:
            return await self._run(ctx, env)
        finally:
            if payload_file is not None:
                with contextlib.suppress(OSError):
                    os.unlink(payload_file)

    async def _run(self, ctx: ActionContext, env: dict[str, str]) -> ActionResult:
        loop = asyncio.get_running_loop()
        try:
            transport, cap = await loop.subprocess_exec(
                _Capture,
                *self._argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
                cwd=self._cwd,
                start_new_session=True,
            )
        except OSError as exc:
            where = f" in {self._cwd}" if self._cwd else ""
            raise ActionError(
                f"exec: cannot start {self._argv[0]!r}{where}: {exc.strerror or exc}",
                kind=classify_spawn_errno(exc.errno),
            ) from exc
        pgid = transport.get_pid()
        timer = asyncio.timeout(ctx.timeout)
        try:
            if ctx.on_spawn is not None:
                ctx.on_spawn(pgid)
            async with timer:
                await cap.exited.wait()
                await _sweep(cap, pgid)
        except TimeoutError:
            await _terminate(cap, pgid)
            if not timer.expired():
                raise
            ctx.log.warning("exec.timeout", pgid=pgid, timeout_s=ctx.timeout)
            raise ActionError(
                f"timed out after {ctx.timeout:g}s; process group {pgid} terminated",
                kind=ErrorKind.TIMEOUT,
                output=_output(cap.out, cap.err),
            ) from None
        except BaseException:  # cancelled (or a bug): the group must not outlive the attempt
            await _terminate(cap, pgid)
            raise
        finally:
            transport.close()
        code = transport.get_returncode()
        assert code is not None  # exited is set only after the return code is known
        return self._result(ctx, code, cap.out, cap.err)

    def _result(self, ctx: ActionContext, code: int, out: _Tail, err: _Tail) -> ActionResult:
        output = _output(out, err)
        kind = classify_exit(code, phase=ctx.phase, retryable_codes=self._retryable)
        if kind is not None:
            raise ActionError(_exit_message(code, err), kind=kind, output=output)
        result = phase_result(ctx.phase, _json_object(out), output=output)
        if ctx.phase is Phase.CHECK and code == CHECK_SKIP_CODE:
            result = replace(result, perform=False)
        return result


def _output(out: _Tail, err: _Tail) -> Output:
    return tuple(
        (name, tail.text()) for name, tail in (("stdout", out), ("stderr", err)) if tail.buf
    )


def kill_orphans(entries: Iterable[tuple[int, str]], *, proc_root: Path = Path("/proc")) -> int:
    """SIGKILL process groups a crashed daemon left behind; return how many were killed.

    A group is killed only when one of its members still carries
    ``AUTOMATIOND_RUN_ID=<run_id>`` in its environment, so a recycled id that now belongs to
    somebody else's process is left alone. Members are found by their process group, so a
    group whose leader already exited is still found through its grandchildren.
    """
    wanted = {pgid: run_id for pgid, run_id in entries if pgid > 1 and pgid != os.getpgrp()}
    if not wanted:
        return 0
    members = _group_members(proc_root, wanted.keys())
    killed = 0
    for pgid, pids in members.items():
        marker = f"AUTOMATIOND_RUN_ID={wanted[pgid]}".encode()
        if any(marker in _environ(proc_root, pid) for pid in pids) and _killpg(
            pgid, signal.SIGKILL
        ):
            killed += 1
    return killed


def _group_members(proc_root: Path, pgids: Iterable[int]) -> dict[int, list[int]]:
    wanted = set(pgids)
    found: dict[int, list[int]] = {}
    with os.scandir(proc_root) as it:
        for entry in it:
            if not entry.name.isdigit():
                continue
            try:
                stat = Path(entry.path, "stat").read_bytes()
            except OSError:
                continue
            fields = stat.rsplit(b")", 1)[-1].split()
            if len(fields) > 2 and (pgrp := int(fields[2])) in wanted:
                found.setdefault(pgrp, []).append(int(entry.name))
    return found


def _environ(proc_root: Path, pid: int) -> list[bytes]:
    try:
        return Path(proc_root, str(pid), "environ").read_bytes().split(b"\0")
    except OSError:
        return []
