"""Equal values seen while loading many jobs, kept once (issue 4: 100,000 jobs in ≤ 150 MB)."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from types import MappingProxyType
from typing import Any, TypeVar

from automationd.config.model import Defaults, ExecAction, JobRules

R = TypeVar("R")
NO_WHEN: Mapping[str, Any] = MappingProxyType({})  # shared: an absent `when` matches anything


class Shared:
    """Equal values seen while loading many jobs, kept once: strings (schedules, zones,
    services), action records, backoffs and rules. One per load: it remembers the rules of a
    job that sets nothing but name, schedule and action under one ``Defaults``."""

    __slots__ = ("_defaults", "_plain", "execs", "records", "strings")

    def __init__(self) -> None:
        self.strings: dict[str, str] = {}
        self.records: dict[Any, Any] = {}
        self.execs: dict[tuple[Any, ...], ExecAction] = {}  # argv → {type, argv} action
        self._plain: dict[str, JobRules] = {}
        self._defaults: Defaults | None = None

    def text(self, s: str) -> str:
        return self.strings.setdefault(s, s)

    def keep(self, key: Hashable, record: R) -> R:
        """The record first kept under ``key`` (which must determine the record's value)."""
        kept: R = self.records.setdefault(key, record)
        return kept

    def plain(self, tz: str, defaults: Defaults) -> JobRules:
        if defaults is not self._defaults:
            self._plain.clear()
            self._defaults = defaults
        rules = self._plain.get(tz)
        if rules is None:
            rules = self._plain[tz] = plain_rules(tz, defaults)
        return rules


def plain_rules(tz: str, d: Defaults) -> JobRules:
    return JobRules(
        on=None,
        when=NO_WHEN,
        timezone=tz,
        service=None,
        priority=0,
        jitter=0.0,
        max_runs=0,
        targets=None,
        timeout=d.timeout,
        retries=d.retries,
        backoff=d.backoff,
        overlap=d.overlap,
        misfire=d.misfire,
        misfire_grace=d.misfire_grace,
        check=None,
        verify=None,
    )
