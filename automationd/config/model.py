"""Frozen config records: what ``config/load.py`` produces and every component receives a slice of.

Durations are float seconds, rates are ``units.Rate``; nothing here parses or validates.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from automationd.config.table import job_table
from automationd.config.web import WebConfig
from automationd.units import Rate


class Overlap(enum.StrEnum):
    SKIP = "skip"
    QUEUE = "queue"
    ALLOW = "allow"
    CANCEL_PREVIOUS = "cancel_previous"


class Misfire(enum.StrEnum):
    SKIP = "skip"
    RUN_ONCE = "run_once"
    RUN_ALL = "run_all"


class OnFailure(enum.StrEnum):
    """What a ``partial``/``failed`` run does next (SPEC §7.2): nothing, or run ``undo``."""

    NONE = "none"
    ROLLBACK = "rollback"


PREVIEW_TTL = 3600.0  # a preview older than this is stale when applied (job key preview_ttl)


@dataclass(frozen=True, slots=True, kw_only=True)
class Backoff:
    base: float = 2.0
    max: float = 64.0
    multiplier: float = 2.0
    jitter: float = 0.2


# Retries after ``rate_limited`` with no Retry-After, and the longest Retry-After obeyed:
RATE_LIMITED_BACKOFF = Backoff(base=16.0, max=64.0, multiplier=2.0, jitter=0.2)
MAX_RETRY_AFTER = 3600.0  # (a service's key defaults, and a job with no service: attempt.py)


@dataclass(frozen=True, slots=True, kw_only=True)
class BreakerConfig:
    failures: int = 5
    reset: float = 60.0


@dataclass(frozen=True, slots=True, kw_only=True)
class DaemonConfig:
    state_dir: Path = Path("/var/lib/automationd")
    admin_socket: Path = Path("/run/automationd/admin.sock")
    admin_group: str = ""
    user_group: str = ""  # members may add jobs and see/change only their own (issue 14)
    metrics_listen: str = "127.0.0.1:9464"
    timezone: str = "UTC"
    shutdown_timeout: float = 30.0
    log_format: str = "json"  # json | console
    log_level: str = "info"


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreConfig:
    """``[store]``: where runs live. SQLite (one host, in ``daemon.state_dir``) or a shared
    PostgreSQL for several daemons (SPEC §7.4)."""

    backend: str = "sqlite"  # sqlite | postgresql
    dsn: str = "postgresql:///automationd?host=/run/postgresql"
    lease_ttl: float = 15.0  # a daemon silent for this long is declared dead
    node_id: str = ""  # "" = hostname:pid


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkersConfig:
    max_concurrency: int = 16


@dataclass(frozen=True, slots=True, kw_only=True)
class RetentionConfig:
    runs_max_age: float = 30 * 86400.0
    events_max_age: float = 7 * 86400.0
    prune_interval: float = 300.0  # seconds between prune passes (the first is sooner)


@dataclass(frozen=True, slots=True, kw_only=True)
class Defaults:
    timeout: float = 300.0
    retries: int = 3
    backoff: Backoff = field(default_factory=Backoff)
    overlap: Overlap = Overlap.SKIP
    misfire: Misfire = Misfire.RUN_ONCE
    misfire_grace: float = 60.0


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceConfig:
    name: str
    rate: Rate | None = None
    burst: int | None = None  # None: max(1, ceil(rate per second))
    concurrency: int | None = None  # None: unlimited (only the global pool bounds it)
    breaker: BreakerConfig | None = None
    rate_limited_backoff: Backoff = RATE_LIMITED_BACKOFF
    max_retry_after: float = MAX_RETRY_AFTER
    retry_budget: float = 0.2
    retry_budget_floor: Rate = field(default_factory=lambda: Rate(10, 1.0, "10/s"))


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecAction:
    type: str = "exec"
    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    timeout: float | None = None
    retryable_exit_codes: frozenset[int] = frozenset()


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpAction:
    type: str = "http"
    method: str = "GET"
    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    json: Any = None
    body: str | None = None
    timeout: float | None = None
    expect: tuple[int, ...] = ()  # extra statuses counted as success; empty = any 2xx
    follow_redirects: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class PythonAction:
    type: str = "python"
    callable: str  # "package.module:function"
    timeout: float | None = None
    fn: Any = field(default=None, compare=False)  # the resolved async function, set by the loader


ActionSpec = ExecAction | HttpAction | PythonAction


@dataclass(frozen=True, slots=True, kw_only=True)
class JobRules:
    """Everything about a job but its name, schedule and action: usually the same for
    thousands of jobs, so the loader keeps one record per distinct value and jobs share it
    (100,000 jobs: 8 MB less, and a job record is built in a quarter of the time)."""

    on: str | None = None
    when: Mapping[str, Any] = field(default_factory=dict)
    timezone: str = "UTC"
    service: str | None = None
    priority: int = 0
    jitter: float = 0.0
    max_runs: int = 0
    targets: tuple[Any, ...] | None = None
    timeout: float = 300.0
    retries: int = 3
    backoff: Backoff = field(default_factory=Backoff)
    overlap: Overlap = Overlap.SKIP
    misfire: Misfire = Misfire.RUN_ONCE
    misfire_grace: float = 60.0
    check: ActionSpec | None = None
    verify: ActionSpec | None = None
    description: str | None = None  # free text for people (jobs show, explain)
    undo: ActionSpec | None = None  # reverses a succeeded perform of one target
    on_failure: OnFailure = OnFailure.NONE
    preview_ttl: float = PREVIEW_TTL


_set = object.__setattr__
_DEFAULT_BACKOFF = Backoff()


@dataclass(frozen=True, slots=True, init=False)
class JobSpec:
    """One job as declared (config or API). ``schedule`` is the raw text; the parsed form
    lives in the scheduler, built once per distinct (schedule, timezone). The rest of its
    settings live in a shared ``JobRules`` and read as attributes of the job (``spec.timeout``).
    """

    name: str
    schedule: str | None
    action: ActionSpec
    rules: JobRules
    source: str  # config | api
    # An API job's table as written (a dict, or the JSON text it was stored as): it is what
    # gets persisted, and re-read under the config of the day. Config jobs keep None: 100,000
    # of them would otherwise hold ~1 KB of parser output each that nothing reads.
    written: Mapping[str, Any] | str | None = field(compare=False, repr=False)

    def __init__(
        self,
        *,
        name: str,
        action: ActionSpec,
        schedule: str | None = None,
        on: str | None = None,
        when: Mapping[str, Any] | None = None,
        timezone: str = "UTC",
        service: str | None = None,
        priority: int = 0,
        jitter: float = 0.0,
        max_runs: int = 0,
        targets: tuple[Any, ...] | None = None,
        timeout: float = 300.0,
        retries: int = 3,
        backoff: Backoff = _DEFAULT_BACKOFF,
        overlap: Overlap = Overlap.SKIP,
        misfire: Misfire = Misfire.RUN_ONCE,
        misfire_grace: float = 60.0,
        check: ActionSpec | None = None,
        verify: ActionSpec | None = None,
        description: str | None = None,
        undo: ActionSpec | None = None,
        on_failure: OnFailure = OnFailure.NONE,
        preview_ttl: float = PREVIEW_TTL,
        source: str = "config",
        written: Mapping[str, Any] | str | None = None,
        rules: JobRules | None = None,  # given (as by dataclasses.replace): the above are unused
    ) -> None:
        if rules is None:
            rules = JobRules(
                on=on,
                when={} if when is None else when,
                timezone=timezone,
                service=service,
                priority=priority,
                jitter=jitter,
                max_runs=max_runs,
                targets=targets,
                timeout=timeout,
                retries=retries,
                backoff=backoff,
                overlap=overlap,
                misfire=misfire,
                misfire_grace=misfire_grace,
                check=check,
                verify=verify,
                description=description,
                undo=undo,
                on_failure=on_failure,
                preview_ttl=preview_ttl,
            )
        _fill(self, name, schedule, action, rules, source, written)

    @classmethod
    def make(
        cls,
        name: str,
        schedule: str | None,
        action: ActionSpec,
        rules: JobRules,
        source: str = "config",
        written: Mapping[str, Any] | str | None = None,
    ) -> JobSpec:
        """The loader's constructor: six fields set, the rules record shared, no keywords."""
        spec = _new(cls)
        _fill(spec, name, schedule, action, rules, source, written)
        return spec

    @property
    def raw(self) -> Mapping[str, Any]:
        """The job as a table: an API job's as written; a config job's rebuilt from its fields
        (every value in effect, inherited ones included), for ``jobs.get`` and persistence."""
        w = self.written
        if w is None:
            return job_table(self)
        if isinstance(w, str):
            loaded: dict[str, Any] = json.loads(w)
            return loaded
        return w

    # The rules, read as the job's own attributes.
    @property
    def on(self) -> str | None:
        return self.rules.on

    @property
    def when(self) -> Mapping[str, Any]:
        return self.rules.when

    @property
    def timezone(self) -> str:
        return self.rules.timezone

    @property
    def service(self) -> str | None:
        return self.rules.service

    @property
    def priority(self) -> int:
        return self.rules.priority

    @property
    def jitter(self) -> float:
        return self.rules.jitter

    @property
    def max_runs(self) -> int:
        return self.rules.max_runs

    @property
    def targets(self) -> tuple[Any, ...] | None:
        return self.rules.targets

    @property
    def timeout(self) -> float:
        return self.rules.timeout

    @property
    def retries(self) -> int:
        return self.rules.retries

    @property
    def backoff(self) -> Backoff:
        return self.rules.backoff

    @property
    def overlap(self) -> Overlap:
        return self.rules.overlap

    @property
    def misfire(self) -> Misfire:
        return self.rules.misfire

    @property
    def misfire_grace(self) -> float:
        return self.rules.misfire_grace

    @property
    def check(self) -> ActionSpec | None:
        return self.rules.check

    @property
    def verify(self) -> ActionSpec | None:
        return self.rules.verify

    @property
    def description(self) -> str | None:
        return self.rules.description

    @property
    def undo(self) -> ActionSpec | None:
        return self.rules.undo

    @property
    def on_failure(self) -> OnFailure:
        return self.rules.on_failure

    @property
    def preview_ttl(self) -> float:
        return self.rules.preview_ttl


def _new(cls: type[JobSpec]) -> JobSpec:
    return object.__new__(cls)


def _fill(
    spec: JobSpec,
    name: str,
    schedule: str | None,
    action: ActionSpec,
    rules: JobRules,
    source: str,
    written: Mapping[str, Any] | str | None,
) -> None:
    _set(spec, "name", name)
    _set(spec, "schedule", schedule)
    _set(spec, "action", action)
    _set(spec, "rules", rules)
    _set(spec, "source", source)
    _set(spec, "written", written)


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    path: Path
    daemon: DaemonConfig = field(default_factory=DaemonConfig)
    workers: WorkersConfig = field(default_factory=WorkersConfig)
    retention: RetentionConfig = field(default_factory=RetentionConfig)
    defaults: Defaults = field(default_factory=Defaults)
    services: Mapping[str, ServiceConfig] = field(default_factory=dict)
    jobs: tuple[JobSpec, ...] = ()
    store: StoreConfig = field(default_factory=StoreConfig)
    web: WebConfig = field(default_factory=WebConfig)
