"""Turning a handler's answer into one response line, whatever the handler did.

A handler either answers with a coroutine (awaited in its own task), with a future (settled by
a callback), or, if it is a replying command (admin/command.py), by calling the ``reply`` it was
given (no task and no future at all: the hot path). Either way the connection gets exactly one
line per request: the result, the ``AdminError``'s code, ``unavailable`` with the store's
one-line reason for a ``StoreError``, or ``internal`` (logged) for anything unexpected.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from automationd.admin.protocol import Request, encode_error, encode_ok
from automationd.errors import AdminError, StoreError
from automationd.obs.logs import get_logger

log = get_logger()


Fill = Callable[[bytes], None]  # puts a request's one response line in its place


async def await_answer(answer: Awaitable[Any], req: Request, fill: Fill) -> None:
    """Await one handler's answer and fill its response, whatever happens."""
    data: bytes | None = None
    try:
        data = encode_ok(req.id, await answer)
    except Exception as exc:
        data = error_line(req, exc)
    finally:
        fill(data or encode_error(req.id, "internal", "request was cancelled"))


def settle_answer(req: Request, fill: Fill, answer: asyncio.Future[Any]) -> None:
    """Done-callback twin of ``await_answer`` for handlers that answer with a future."""
    if answer.cancelled():
        fill(encode_error(req.id, "internal", "request was cancelled"))
        return
    exc = answer.exception()
    reply_to(req, fill, None if exc is not None else answer.result(), exc)


def reply_to(req: Request, fill: Fill, value: Any, exc: BaseException | None) -> None:
    """The ``reply`` given to a replying handler: exactly one line, whatever happened."""
    if exc is not None:
        fill(error_line(req, exc))
        return
    try:
        fill(encode_ok(req.id, value))
    except Exception as enc:
        fill(error_line(req, enc))


def error_line(req: Request, exc: BaseException) -> bytes:
    if isinstance(exc, AdminError):
        return encode_error(req.id, exc.code, exc.message)
    if isinstance(exc, StoreError):
        # The request was fine; the store could not take it (disk full, I/O error, read-only,
        # stopping). The store logs each failure episode once (store/writer.py rule 7), so
        # this answer logs nothing: a full disk must not turn into a traceback per request.
        return encode_error(req.id, "unavailable", exc.reason)
    log.error(
        "admin.internal_error", cmd=req.cmd, error=f"{type(exc).__name__}: {exc}", exc_info=exc
    )
    return encode_error(req.id, "internal", "internal error (see the daemon log)")
