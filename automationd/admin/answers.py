"""Turning a handler's answer into one response line, whatever the handler did.

A handler either answers with a coroutine (awaited in its own task) or, for hot commands that
finish their work synchronously, with a future (settled by a callback, no task at all). Either
way the connection gets exactly one line per request: the result, the ``AdminError``'s code, or
``internal`` (logged) for anything unexpected.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

from automationd.admin.protocol import Request, encode_error, encode_ok
from automationd.errors import AdminError
from automationd.obs.logs import get_logger

log = get_logger()


async def await_answer(answer: Awaitable[Any], req: Request, fut: asyncio.Future[bytes]) -> None:
    """Await one handler's answer and resolve its response future, whatever happens."""
    data: bytes | None = None
    try:
        data = encode_ok(req.id, await answer)
    except Exception as exc:
        data = error_line(req, exc)
    finally:
        if not fut.done():
            fut.set_result(data or encode_error(req.id, "internal", "request was cancelled"))


def settle_answer(req: Request, fut: asyncio.Future[bytes], answer: asyncio.Future[Any]) -> None:
    """Done-callback twin of ``_call`` for handlers that answer with a future."""
    if fut.done():
        return
    if answer.cancelled():
        fut.set_result(encode_error(req.id, "internal", "request was cancelled"))
        return
    exc = answer.exception()
    if exc is not None:
        fut.set_result(error_line(req, exc))
        return
    try:
        fut.set_result(encode_ok(req.id, answer.result()))
    except Exception as enc:
        fut.set_result(error_line(req, enc))


def error_line(req: Request, exc: BaseException) -> bytes:
    if isinstance(exc, AdminError):
        return encode_error(req.id, exc.code, exc.message)
    log.error("admin.internal_error", cmd=req.cmd, error=f"{type(exc).__name__}: {exc}",
              exc_info=exc)
    return encode_error(req.id, "internal", "internal error (see the daemon log)")
