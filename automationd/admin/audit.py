"""The audit trail: every state-changing command, whoever sent it, is stored with its outcome.

Rules:
- It wraps the command table (admin/commands.py), so every caller is covered the same way:
  the socket, the web console (which calls ``admin/command.invoke``), a reload by SIGHUP (the
  daemon invokes ``reload`` as the signal caller), tests.
- Only commands that change state (``Command.writes``) are recorded; refusals are recorded
  too (``outcome`` is the error code), including ``forbidden`` ones from admin/scope.py.
- An entry says when, who (uid and login name, or the web session; the signal or the daemon
  itself), which command, its target (job name, run id, path; and the job when known), the
  arguments with secrets redacted plus a digest of the full ones (core/redact.py), and the
  outcome with the error message.
- A plain command answers only once its entry is durable. If the store refuses it the entry
  is posted instead (retried until it lands) and the answer is not held back: the change
  itself already happened. The hot ``jobs.trigger`` posts its entry when it answers, so it
  rides the next group commit instead of adding one to every trigger.
- Entries are pruned with runs (``retention.runs_max_age``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import structlog

from automationd.admin.command import Command, Reply
from automationd.caller import Caller
from automationd.clock import Clock
from automationd.core.ids import IdGenerator
from automationd.core.redact import audit_args
from automationd.errors import AdminError, StoreError
from automationd.store.api import Store, Write
from automationd.store.rows import w_audit_row

log = structlog.get_logger("automationd.audit")
_TELL_EVERY = 60.0  # seconds between log lines about entries the store refused


def target_of(cmd: str, args: dict[str, Any]) -> tuple[str | None, str | None]:
    """(target, job) a command's arguments name, before it runs."""
    job_arg = args.get("job")
    name = args.get("name")
    if isinstance(job_arg, dict):  # jobs.add
        added = job_arg.get("name")
        return (added, added) if isinstance(added, str) else (None, None)
    job = job_arg if isinstance(job_arg, str) else None
    if isinstance(name, str):
        return name, (name if cmd.startswith("jobs.") else job)
    for key in ("id", "path", "apply"):
        value = args.get(key)
        if isinstance(value, str):
            return value, job
    return job, job


class AuditTrail:
    def __init__(self, *, store: Store, clock: Clock, ids: IdGenerator) -> None:
        self._store = store
        self._clock = clock
        self._ids = ids
        self._unwritten = 0  # entries the store refused since the last line about them
        self._told = -_TELL_EVERY

    def wrap(self, table: dict[str, Command]) -> dict[str, Command]:
        """The same table; every state-changing command records itself."""
        return {
            name: replace(cmd, handler=self._recording(cmd)) if cmd.writes else cmd
            for name, cmd in table.items()
        }

    def entry(
        self, cmd: str, args: dict[str, Any], caller: Caller, result: Any, exc: BaseException | None
    ) -> Write:
        """The entry's row (built straight from its parts: one per manual trigger)."""
        target, job = target_of(cmd, args)
        if job is None and isinstance(result, dict):
            found = result.get("job") if cmd.startswith(("runs.", "dlq.")) else None
            job = found if isinstance(found, str) else None
        if exc is None:
            outcome, error = "ok", None
        elif isinstance(exc, AdminError):
            outcome, error = exc.code, exc.message
        elif isinstance(exc, StoreError):
            outcome, error = "unavailable", str(exc)
        else:
            outcome, error = "internal", f"{type(exc).__name__}: {exc}"
        shown, digest = audit_args(args)
        now = self._clock.time()
        user = caller.session if caller.uid is None and caller.session else caller.user
        return w_audit_row(
            (
                self._ids.new(now),
                now,
                caller.via.value,
                caller.uid,
                user,
                cmd,
                target,
                job,
                shown,
                digest,
                outcome,
                error,
            )
        )

    async def _store_entry(self, entry: Write) -> None:
        try:
            await self._store.commit([entry])
        except StoreError as exc:
            self._refused(entry, exc)
            with contextlib.suppress(StoreError):  # closing: nothing more can be stored
                self._store.post([entry])  # lands once the store heals

    def _post(self, entry: Write) -> None:
        try:
            self._store.post([entry])
        except StoreError as exc:
            self._refused(entry, exc)

    def _refused(self, entry: Write, exc: StoreError) -> None:
        """Said at most once a minute with a count (issue 11: a full disk refuses every
        write; the store logs the episode itself, so one line per entry would be a flood)."""
        self._unwritten += 1
        now = self._clock.monotonic()
        if now - self._told >= _TELL_EVERY:
            log.error(
                "audit.write_failed",
                cmd=entry.params[5],
                entries=self._unwritten,
                error=exc.reason,
                note="retried until stored; said at most once a minute",
            )
            self._unwritten, self._told = 0, now

    def _recording(self, command: Command) -> Callable[..., Awaitable[Any] | None]:
        inner, name = command.handler, command.name
        if command.replies:

            def replying(args: dict[str, Any], caller: Caller, reply: Reply) -> Any:
                def recorded(value: Any, exc: BaseException | None) -> None:
                    self._post(self.entry(name, args, caller, None, exc))
                    reply(value, exc)

                try:
                    answer = inner(args, caller, recorded)
                except Exception as exc:
                    self._post(self.entry(name, args, caller, None, exc))
                    raise
                if answer is None:
                    return None
                return self._awaited(name, args, caller, answer)

            return replying

        def plain(args: dict[str, Any], caller: Caller) -> Awaitable[Any]:
            try:
                answer = inner(args, caller)
            except Exception as exc:
                self._post(self.entry(name, args, caller, None, exc))
                raise
            assert answer is not None
            return self._awaited(name, args, caller, answer)

        return plain

    async def _awaited(
        self, name: str, args: dict[str, Any], caller: Caller, answer: Awaitable[Any]
    ) -> Any:
        try:
            result = await answer
        except Exception as exc:
            await self._store_entry(self.entry(name, args, caller, None, exc))
            raise
        await self._store_entry(self.entry(name, args, caller, result, None))
        return result
