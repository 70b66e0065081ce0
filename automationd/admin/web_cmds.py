"""The ``web.login`` command: a one-time login URL for the web console (``automationctl
web-login``), minted by whoever can reach the socket, the way Jupyter prints its link."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from automationd.admin.command import Command
from automationd.caller import Caller
from automationd.errors import conflict


class WebCommands:
    def __init__(self, *, login_url: Callable[[], dict[str, Any]] | None) -> None:
        self._login_url = login_url  # None: the console is off

    def commands(self) -> list[Command]:
        # writes: it mints a credential, so it is audited and refused by a read-only console
        return [Command("web.login", self.web_login, writes=True)]

    async def web_login(self, args: dict[str, Any], caller: Caller) -> dict[str, Any]:
        if self._login_url is None:
            raise conflict('the web console is off: set [web] listen = "127.0.0.1:9465"')
        return self._login_url()
