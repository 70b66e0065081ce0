"""Who sent a command: what they may see and do, and how the audit trail names them.

Every command runs on behalf of one ``Caller``. The admin socket makes one per connection from
the kernel's SO_PEERCRED answer; the web console makes one per session; the daemon itself is
the caller of what a signal or a reload does. Handlers receive it as their second argument and
never look at sockets or cookies themselves.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Via(enum.StrEnum):
    SOCKET = "socket"
    WEB = "web"
    SIGNAL = "signal"
    DAEMON = "daemon"


@dataclass(frozen=True, slots=True, kw_only=True)
class Caller:
    via: Via
    uid: int | None = None
    user: str | None = None
    pid: int | None = None
    # Root, the daemon's own uid and admin_group members see and do everything; a caller that
    # is only in user_group sees and changes just the jobs it owns.
    admin: bool = True
    session: str | None = None  # the web session (a short, non-secret id), for the audit trail
    remote: str | None = None  # the web client's address (``127.0.0.1``)

    @property
    def label(self) -> str:
        """How logs and the audit trail name the caller: ``uid 1000 (alice)``, ``web:3f2a``
        (a browser session), ``web:token`` (the API with the bearer token)."""
        if self.via is Via.WEB:
            return f"web:{self.session or '?'}"
        if self.uid is None:
            return self.via.value
        return f"uid {self.uid} ({self.user})" if self.user else f"uid {self.uid}"


DAEMON = Caller(via=Via.DAEMON)
