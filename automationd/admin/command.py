"""One admin command as data: its handler and whether it changes anything.

The table of these (built in ``admin/commands.py``) is the only list of commands: the admin
socket serves it, the web console's ``/api/v1/CMD`` serves the same table, and both learn from
``writes`` which commands change state (POST only, refused when read-only, audited).

A handler is ``async def h(args, caller) -> JSON-able``; raising ``AdminError`` answers with its
code. A *replying* handler (the hot ``jobs.trigger``) is ``h(args, caller, reply)`` and either
calls ``reply(result, error)`` once or returns an awaitable as usual: the socket answers such a
request straight from the write's settlement, with no task and no future.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from automationd.admin.protocol import RawJSON
from automationd.caller import Caller

Handler = Callable[..., Awaitable[Any] | None]
Reply = Callable[[Any, "BaseException | None"], None]


@dataclass(frozen=True, slots=True)
class Command:
    name: str
    handler: Handler
    writes: bool  # changes state: POST only on the web, refused when read-only, audited
    replies: bool = False  # handler(args, caller, reply): see the module docstring
    # args whose values are not strings (numbers, booleans, objects): the HTTP API decodes
    # these from a GET's query as JSON and keeps every other value the string given
    json_args: frozenset[str] = frozenset()


CommandTable = Mapping[str, Command]


async def invoke(command: Command, args: dict[str, Any], caller: Caller) -> Any:
    """Run one command to its JSON-able result (``AdminError`` on refusal).

    For callers other than the socket (the HTTP API, tests): whatever way the handler
    answers, this returns plain JSON values (a ``RawJSON`` result is decoded).
    """
    if not command.replies:
        answer = command.handler(args, caller)
        assert answer is not None, f"{command.name}: a plain handler must return an awaitable"
        return _plain(await answer)
    fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    def reply(value: Any, exc: BaseException | None) -> None:
        if fut.done():
            return
        if exc is not None:
            fut.set_exception(exc)
        else:
            fut.set_result(value)

    answer = command.handler(args, caller, reply)
    if answer is not None:
        return _plain(await answer)
    return _plain(await fut)


def _plain(value: Any) -> Any:
    return json.loads(value.text) if type(value) is RawJSON else value
