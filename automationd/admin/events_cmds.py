"""The ``events.*`` commands: publish, list, replay."""

from __future__ import annotations

from typing import Any

from automationd.admin.args import (
    bool_arg,
    int_arg,
    key_arg,
    name_arg,
    opt_glob,
    payload_arg,
    time_arg,
)
from automationd.admin.command import Command
from automationd.caller import Caller
from automationd.clock import Clock
from automationd.engine.eventbus import EventBus
from automationd.errors import bad_request
from automationd.store.api import Store


class EventCommands:
    def __init__(self, *, bus: EventBus, store: Store, clock: Clock) -> None:
        self._clock = clock
        self._bus = bus
        self._store = store

    def commands(self) -> list[Command]:
        return [
            Command(
                "events.publish", self.events_publish, writes=True, json_args=frozenset({"payload"})
            ),
            Command("events.list", self.events_list, writes=False, json_args=frozenset({"limit"})),
            Command(
                "events.replay", self.events_replay, writes=True, json_args=frozenset({"force"})
            ),
        ]

    async def events_publish(self, args: dict[str, Any], caller: Caller) -> dict[str, Any]:
        name = name_arg(args)
        event, triggered, existing = await self._bus.publish(
            name, payload_arg(args), idempotency_key=key_arg(args)
        )
        out: dict[str, Any] = {"id": event.id, "name": event.name, "triggered": triggered}
        if existing:
            out["existing"] = True
        return out

    async def events_list(self, args: dict[str, Any], caller: Caller) -> list[dict[str, Any]]:
        now = self._clock.time()
        events = await self._store.events(
            since=time_arg(args, "since", now),
            until=time_arg(args, "until", now),
            limit=int_arg(args, "limit", 50, 1, 1000),
            newest_first=True,
            name=opt_glob(args, "name"),
        )
        return [e.to_json() for e in events]

    async def events_replay(self, args: dict[str, Any], caller: Caller) -> dict[str, Any]:
        now = self._clock.time()
        since = time_arg(args, "since", now)
        if since is None:
            raise bad_request("args.since: required (RFC 3339, or a duration ago such as 1h)")
        n, triggered = await self._bus.replay(
            since=since,
            until=time_arg(args, "until", now),
            name=opt_glob(args, "name"),
            force=bool_arg(args, "force"),
        )
        return {"events": n, "triggered": triggered}
