"""One ``[[jobs]]`` table (or a ``jobs.add`` request) → a validated ``JobSpec``.

Theory of operation: a job file may hold 100,000 jobs (~5 µs each here), so ``parse_job``
checks the table's keys against one frozenset, then reads each known key with a single dict
probe: an absent key costs one ``get``, a present one its converter. Anything shared between
jobs is computed once: time zones, schedules (by text and zone), durations and python
callables are cached, records are built with every field given (no default factories run),
and the dotted key path for an error message is only built when something is wrong.

Memory (issue 4: 100,000 jobs in ≤ 150 MB): a ``Shared`` table, one per load, makes jobs
that say the same thing hold the same objects: one schedule string, one action record, one
backoff. Config jobs keep no copy of their table (``JobSpec.raw`` rebuilds it on demand).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from automationd.config import values as v
from automationd.config.actions import parse_action
from automationd.config.model import (
    PREVIEW_TTL,
    Defaults,
    JobRules,
    JobSpec,
    Misfire,
    OnFailure,
    Overlap,
    ServiceConfig,
)
from automationd.config.shared import NO_WHEN, Shared, plain_rules
from automationd.core.schedule import Schedule, parse_schedule
from automationd.errors import ConfigError

NAME_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,127}")
_name_ok = NAME_RE.fullmatch

_GRACE = "misfire_grace"


@functools.lru_cache(maxsize=4096)
def parsed_schedule(text: str, tz_name: str) -> Schedule:
    """The Schedule for ``text`` in zone ``tz_name``; cached because thousands of jobs share a
    handful of schedules. Raises ValueError with the parser's message."""
    return parse_schedule(text, v.zone(tz_name))


def _targets(value: object, where: str) -> tuple[Any, ...]:
    if not isinstance(value, list):
        v.fail(where, "targets", f"expected an array, got {v.show(value)}")
    if not value:
        v.fail(where, "targets", "must not be empty (leave it out for a single untargeted run)")
    return tuple(value)


JOB_KEYS = frozenset(
    {
        "name",
        "schedule",
        "on",
        "when",
        "timezone",
        "service",
        "priority",
        "jitter",
        "max_runs",
        "targets",
        "timeout",
        "retries",
        "backoff",
        "overlap",
        "misfire",
        "misfire_grace",
        "action",
        "check",
        "verify",
        "description",
        "undo",
        "on_failure",
        "preview_ttl",
    }
)


def parse_job(
    raw: Mapping[str, Any],
    *,
    where: str,
    defaults: Defaults,
    services: Mapping[str, ServiceConfig],
    base_dir: Path,
    default_tz: str,
    source: str = "config",
    written: Mapping[str, Any] | str | None = None,
    shared: Shared | None = None,
) -> JobSpec:
    """Validate one job table; errors read ``{where}.{key}: {problem}`` (no file prefix).

    An API job (``source="api"``) keeps its table as written (or ``written``, e.g. the JSON
    text it was stored as) to persist; a config job keeps none. ``shared`` (one per load)
    lets equal schedules, zones, actions, backoffs and rules be one object across jobs.

    Absent keys cost one dict probe each; that is what keeps 100,000 jobs fast."""
    if type(raw) is not dict and not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: expected a table, got {v.show(raw)}")
    if not JOB_KEYS.issuperset(raw):
        v.check_keys(raw, where, JOB_KEYS)
    get = raw.get
    text = shared.text if shared is not None else str  # str(s) is s

    name = get("name")
    if name is None:
        v.fail(where, "name", "missing")
    if type(name) is not str or not _name_ok(name):
        v.fail(where, "name", f"bad job name {v.show(name)} (expected {NAME_RE.pattern})")

    tz = get("timezone")
    tz = default_tz if tz is None else text(v.timezone(tz, where, "timezone"))
    on = get("on")
    if on is not None:
        on = text(v.nonempty(on, where, "on"))
    schedule = get("schedule")
    if schedule is not None:
        schedule = text(v.nonempty(schedule, where, "schedule"))
        try:
            parsed_schedule(schedule, tz)
        except ValueError as exc:
            v.fail(where, "schedule", str(exc))
    elif on is None:
        raise ConfigError(f"{where}: a job needs 'schedule' or 'on' (or both)")
    if len(raw) == 3 and schedule is not None and "action" in raw:  # the rest is inherited
        rules = plain_rules(tz, defaults) if shared is None else shared.plain(tz, defaults)
    else:
        rules = _rules(raw, where, defaults, services, base_dir, shared, on, tz)
    action = get("action")
    if action is None:
        v.fail(where, "action", "missing (every job needs an action table)")
    action = parse_action(action, where, "action", base_dir, shared)
    if source == "api" and written is None:
        written = raw
    return JobSpec.make(name, schedule, action, rules, source, written)


def _rules(
    raw: Mapping[str, Any],
    where: str,
    defaults: Defaults,
    services: Mapping[str, ServiceConfig],
    base_dir: Path,
    shared: Shared | None,
    on: str | None,
    tz: str,
) -> JobRules:
    """Every key but name, schedule, on, timezone and action (see ``parse_job``)."""
    get = raw.get
    when = get("when")
    if when is not None:
        if on is None:
            v.fail(where, "when", "needs 'on' (it filters the payload of triggering events)")
        when = dict(v.table(when, where, "when"))
    service = get("service")
    if service is not None:
        service = v.string(service, where, "service")
        if service not in services:
            known = ", ".join(sorted(services)) or "none defined"
            v.fail(where, "service", f"unknown service {service!r} (known: {known})")
    d = defaults
    backoff = get("backoff")
    backoff = d.backoff if backoff is None else v.backoff(backoff, where, "backoff", d.backoff)
    check = get("check")
    verify = get("verify")
    priority = get("priority")
    jitter = get("jitter")
    max_runs = get("max_runs")
    targets = get("targets")
    timeout = get("timeout")
    retries = get("retries")
    overlap = get("overlap")
    misfire = get("misfire")
    grace = get("misfire_grace")
    description = get("description")
    undo = get("undo")
    on_failure = get("on_failure")
    ttl = get("preview_ttl")
    rules = JobRules(
        on=on,
        when=NO_WHEN if when is None else when,
        timezone=tz,
        service=service,
        priority=0 if priority is None else v.integer(priority, where, "priority"),
        jitter=0.0 if jitter is None else v.duration(jitter, where, "jitter"),
        max_runs=0 if max_runs is None else v.integer(max_runs, where, "max_runs", minimum=0),
        targets=None if targets is None else _targets(targets, where),
        timeout=d.timeout if timeout is None else v.duration(timeout, where, "timeout", True),
        retries=d.retries if retries is None else v.integer(retries, where, "retries", minimum=0),
        backoff=backoff,
        overlap=d.overlap if overlap is None else v.choice(overlap, where, "overlap", Overlap),
        misfire=d.misfire if misfire is None else v.choice(misfire, where, "misfire", Misfire),
        misfire_grace=d.misfire_grace if grace is None else v.duration(grace, where, _GRACE),
        check=None if check is None else parse_action(check, where, "check", base_dir, shared),
        verify=None if verify is None else parse_action(verify, where, "verify", base_dir, shared),
        description=None if description is None else v.string(description, where, "description"),
        undo=None if undo is None else parse_action(undo, where, "undo", base_dir, shared),
        on_failure=(
            OnFailure.NONE
            if on_failure is None
            else v.choice(on_failure, where, "on_failure", OnFailure)
        ),
        preview_ttl=PREVIEW_TTL if ttl is None else v.duration(ttl, where, "preview_ttl", True),
    )
    if rules.on_failure is OnFailure.ROLLBACK and rules.undo is None:
        v.fail(where, "on_failure", "'rollback' needs an 'undo' action to run")
    if shared is None or when is not None:
        return rules
    r = rules  # actions by identity: the shared ones are one object per value
    key = (
        on,
        tz,
        service,
        r.priority,
        r.jitter,
        r.max_runs,
        r.targets,
        r.timeout,
        r.retries,
        backoff,
        r.overlap,
        r.misfire,
        r.misfire_grace,
        id(r.check),
        id(r.verify),
        r.description,
        id(r.undo),
        r.on_failure,
        r.preview_ttl,
    )
    try:
        return shared.keep(key, rules)
    except TypeError:  # targets holding tables: this job keeps its own
        return rules
