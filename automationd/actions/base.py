"""What the engine sees of an action: a context in, a result out, an ``ActionError`` on failure.

Every action type (exec, http, python) is a callable built once per job by ``build_action``
and awaited once per attempt. The shared contract:

- it returns an ``ActionResult`` or raises ``ActionError`` with its ``kind`` set; no foreign
  exception escapes (aiohttp, OSError and user exceptions are converted where they happen);
- it bounds itself with ``asyncio.timeout(ctx.timeout)`` and reports ``timeout`` when that
  fires;
- in the check phase its value is read the same way for all types: a dict may carry
  ``perform`` (bool), ``targets`` (list) and ``payload``; the rest stays the value.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, Self

import aiohttp

from automationd import __version__
from automationd.errors import ActionError, ErrorKind
from automationd.recordgen import fast_record
from automationd.records import Phase

if TYPE_CHECKING:
    from structlog.typing import FilteringBoundLogger

OUTPUT_CAP = 64 * 1024  # bytes kept per captured stream
CHECK_KEYS = frozenset({"perform", "targets", "payload"})

Output = tuple[tuple[str, str], ...]


@fast_record
@dataclass(frozen=True, slots=True, kw_only=True)
class ActionContext:
    """Everything one attempt may know. Python actions receive it as ``ctx``."""

    job: str
    run_id: str
    attempt: int
    phase: Phase
    target: Any
    payload: Any
    log: FilteringBoundLogger
    service: str | None
    timeout: float
    idempotency_key: str
    on_spawn: Callable[[int], None] | None = None
    on_http_response: Callable[[int, Mapping[str, str]], None] | None = None


@fast_record
@dataclass(frozen=True, slots=True, kw_only=True)
class ActionResult:
    value: Any = None
    perform: bool = True
    targets: tuple[Any, ...] | None = None
    payload: Any = None
    output: Output = ()


class Action(Protocol):
    async def __call__(self, ctx: ActionContext) -> ActionResult: ...


def check_result(value: Any, *, output: Output = ()) -> ActionResult:
    """Read a check phase's value: ``perform``/``targets``/``payload`` keys steer the run.

    A bare boolean is read as ``perform``. Malformed steering keys are fatal: retrying the
    same check would return the same shape.
    """
    if isinstance(value, bool):
        return ActionResult(value=None, perform=value, output=output)
    if not isinstance(value, Mapping):
        return ActionResult(value=value, output=output)
    perform = value.get("perform", True)
    if not isinstance(perform, bool):
        raise ActionError(
            f"check result 'perform' must be true or false, not {perform!r}",
            kind=ErrorKind.FATAL,
            output=output,
        )
    raw_targets = value.get("targets")
    if raw_targets is not None and not isinstance(raw_targets, list):
        raise ActionError(
            f"check result 'targets' must be a list, not {type(raw_targets).__name__}",
            kind=ErrorKind.FATAL,
            output=output,
        )
    rest = {k: v for k, v in value.items() if k not in CHECK_KEYS}
    return ActionResult(
        value=rest or None,
        perform=perform,
        targets=tuple(raw_targets) if raw_targets is not None else None,
        payload=value.get("payload"),
        output=output,
    )


def phase_result(phase: Phase, value: Any, *, output: Output = ()) -> ActionResult:
    """The result of a successful attempt: check values steer the run, others are kept."""
    if phase is Phase.CHECK:
        return check_result(value, output=output)
    return ActionResult(value=value, output=output)


class HttpClients:
    """One ``aiohttp.ClientSession`` per service name (``None`` = no service), made on first use.

    A session per service keeps connection pools apart, so one slow API cannot use up the
    sockets of another. Sessions verify TLS, keep no cookies between runs (a run must not
    depend on what an earlier one left behind), and have no timeout of their own: each
    attempt bounds itself with ``ctx.timeout``.
    """

    def __init__(self, *, user_agent: str = f"automationd/{__version__}") -> None:
        self._sessions: dict[str | None, aiohttp.ClientSession] = {}
        self._headers = {"User-Agent": user_agent}
        self._closed = False

    def session(self, service: str | None) -> aiohttp.ClientSession:
        if self._closed:
            raise RuntimeError("HttpClients is closed")
        s = self._sessions.get(service)
        if s is None:
            s = aiohttp.ClientSession(
                headers=self._headers,
                timeout=aiohttp.ClientTimeout(total=None),
                cookie_jar=aiohttp.DummyCookieJar(),
                raise_for_status=False,
                trust_env=False,
            )
            self._sessions[service] = s
        return s

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        self._closed = True
        sessions, self._sessions = list(self._sessions.values()), {}
        for s in sessions:
            await s.close()
