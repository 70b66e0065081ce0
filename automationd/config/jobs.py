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
import sys
from collections.abc import Hashable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar

from automationd.config import values as v
from automationd.config.model import (
    ActionSpec,
    Defaults,
    ExecAction,
    HttpAction,
    JobRules,
    JobSpec,
    Misfire,
    Overlap,
    PythonAction,
    ServiceConfig,
)
from automationd.core.schedule import Schedule, parse_schedule
from automationd.errors import ConfigError

NAME_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,127}")
_name_ok = NAME_RE.fullmatch
_NO_WHEN: Mapping[str, Any] = MappingProxyType({})  # shared: an absent `when` matches anything
_NO_ENV: Mapping[str, str] = MappingProxyType({})
_NO_CODES: frozenset[int] = frozenset()
_CALLABLE_RE = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*")
_METHOD_RE = re.compile(r"[A-Za-z]+")

_EXEC_KEYS = frozenset({"type", "argv", "env", "cwd", "timeout", "retryable_exit_codes"})
_HTTP_KEYS = frozenset(
    {"type", "method", "url", "headers", "json", "body", "timeout", "expect", "follow_redirects"}
)
_PYTHON_KEYS = frozenset({"type", "callable", "timeout"})
R = TypeVar("R")
_GRACE = "misfire_grace"


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
            rules = self._plain[tz] = _plain_rules(tz, defaults)
        return rules


def _plain_rules(tz: str, d: Defaults) -> JobRules:
    return JobRules(
        on=None, when=_NO_WHEN, timezone=tz, service=None, priority=0, jitter=0.0, max_runs=0,
        targets=None, timeout=d.timeout, retries=d.retries, backoff=d.backoff,
        overlap=d.overlap, misfire=d.misfire, misfire_grace=d.misfire_grace, check=None,
        verify=None,
    )


@functools.lru_cache(maxsize=4096)
def parsed_schedule(text: str, tz_name: str) -> Schedule:
    """The Schedule for ``text`` in zone ``tz_name``; cached because thousands of jobs share a
    handful of schedules. Raises ValueError with the parser's message."""
    return parse_schedule(text, v.zone(tz_name))


_path_added: set[str] = set()
_resolved: dict[str, Any] = {}


def _resolve(spec: str, base_dir: Path) -> Any:
    """Import a python action once; the config's folder goes on sys.path so operators can
    keep their action modules beside the config file."""
    fn = _resolved.get(spec)
    if fn is not None:
        return fn
    folder = str(base_dir)
    if folder not in _path_added:
        _path_added.add(folder)
        sys.path.insert(0, folder)
    from automationd.actions.python import resolve_callable  # lazy: it pulls in asyncio

    fn = resolve_callable(spec)
    _resolved[spec] = fn  # only successes: a fixed module is picked up on the next reload
    return fn


def _timeout(raw: Mapping[str, Any], here: str) -> float | None:
    t = raw.get("timeout")
    return None if t is None else v.duration(t, here, "timeout", positive=True)


def _exec(raw: Mapping[str, Any], here: str, base_dir: Path, shared: Shared | None) -> ExecAction:
    if not _EXEC_KEYS.issuperset(raw):
        v.check_keys(raw, here, _EXEC_KEYS)
    get = raw.get
    argv = get("argv")
    if argv is None:
        v.fail(here, "argv", "missing (a non-empty array of strings)")
    if type(argv) is not list or not argv:
        v.fail(here, "argv", f"expected a non-empty array of strings, got {v.show(argv)}")
    for arg in argv:
        if type(arg) is not str:
            i = next(i for i, a in enumerate(argv) if type(a) is not str)
            v.fail(here, f"argv[{i}]", f"expected a string, got {v.show(arg)}")
    if not argv[0]:
        v.fail(here, "argv[0]", "must not be empty")
    args = tuple(argv)
    if len(raw) == 2:  # the common case: {type, argv}; parse_action looks it up first
        action = ExecAction(argv=args, env=_NO_ENV)
        if shared is not None:
            shared.execs[args] = action
        return action
    env = get("env")
    cwd = get("cwd")
    timeout = get("timeout")
    codes = get("retryable_exit_codes")
    action = ExecAction(
        argv=args,
        env=_NO_ENV if env is None else v.str_map(env, here, "env"),
        cwd=None if cwd is None else v.local_path(cwd, here, "cwd", base_dir),
        timeout=None if timeout is None else v.duration(timeout, here, "timeout", positive=True),
        retryable_exit_codes=(
            _NO_CODES
            if codes is None
            else frozenset(v.int_list(codes, here, "retryable_exit_codes", low=0, high=255))
        ),
    )
    if shared is None or env is not None:
        return action
    a = action
    return shared.keep(("exec", args, a.cwd, a.timeout, a.retryable_exit_codes), a)


def _http(raw: Mapping[str, Any], here: str, shared: Shared | None) -> HttpAction:
    v.check_keys(raw, here, _HTTP_KEYS)
    url = raw.get("url")
    if url is None:
        v.fail(here, "url", "missing")
    url = v.nonempty(url, here, "url")
    if not url.startswith(("http://", "https://", "${")):
        v.fail(here, "url", f"expected an http:// or https:// URL, got {url!r}")
    method = v.string(raw.get("method", "GET"), here, "method")
    if not _METHOD_RE.fullmatch(method):
        v.fail(here, "method", f"bad HTTP method {method!r}")
    if "json" in raw and "body" in raw:
        v.fail(here, "body", "give either 'json' or 'body', not both")
    body = raw.get("body")
    headers = raw.get("headers")
    expect = raw.get("expect")
    action = HttpAction(
        method=method.upper(),
        url=url,
        headers={} if headers is None else v.str_map(headers, here, "headers"),
        json=raw.get("json"),
        body=None if body is None else v.string(body, here, "body"),
        timeout=_timeout(raw, here),
        expect=() if expect is None else v.int_list(expect, here, "expect", low=100, high=599),
        follow_redirects=v.boolean(raw.get("follow_redirects", False), here, "follow_redirects"),
    )
    if shared is None or headers is not None or action.json is not None:
        return action  # a table inside: not hashable, and rarely repeated verbatim
    a = action
    return shared.keep(("http", a.method, url, a.body, a.timeout, a.expect, a.follow_redirects), a)


def _python(
    raw: Mapping[str, Any], here: str, base_dir: Path, shared: Shared | None
) -> PythonAction:
    v.check_keys(raw, here, _PYTHON_KEYS)
    spec = raw.get("callable")
    if spec is None:
        v.fail(here, "callable", "missing ('package.module:function')")
    if type(spec) is not str or not _CALLABLE_RE.fullmatch(spec):
        v.fail(here, "callable", f"expected 'package.module:function', got {v.show(spec)}")
    try:
        fn = _resolve(spec, base_dir)
    except ValueError as exc:
        v.fail(here, "callable", str(exc))
    action = PythonAction(callable=spec, timeout=_timeout(raw, here), fn=fn)
    if shared is None:
        return action
    return shared.keep(("python", spec, action.timeout), action)


def parse_action(
    value: object, where: str, key: str, base_dir: Path, shared: Shared | None = None
) -> ActionSpec:
    """An action table by its ``type``: exec, http or python. With ``shared``, equal
    actions (same argv, same URL, ...) come back as one record."""
    if shared is not None and type(value) is dict and len(value) == 2:
        argv = value.get("argv")
        if type(argv) is list and value.get("type") == "exec":
            try:
                found = shared.execs.get(tuple(argv))  # only validated argvs are in there
            except TypeError:  # an unhashable element: the checks below name it
                found = None
            if found is not None:
                return found
    raw = value if type(value) is dict else v.table(value, where, key)
    here = f"{where}.{key}"
    kind = raw.get("type")
    if kind == "exec":
        return _exec(raw, here, base_dir, shared)
    if kind == "http":
        return _http(raw, here, shared)
    if kind == "python":
        return _python(raw, here, base_dir, shared)
    if kind is None:
        v.fail(here, "type", "missing (exec, http or python)")
    v.fail(here, "type", f"unknown action type {v.show(kind)} (expected exec, http or python)")


def _targets(value: object, where: str) -> tuple[Any, ...]:
    if not isinstance(value, list):
        v.fail(where, "targets", f"expected an array, got {v.show(value)}")
    if not value:
        v.fail(where, "targets", "must not be empty (leave it out for a single untargeted run)")
    return tuple(value)


JOB_KEYS = frozenset(
    {"name", "schedule", "on", "when", "timezone", "service", "priority", "jitter", "max_runs",
     "targets", "timeout", "retries", "backoff", "overlap", "misfire", "misfire_grace",
     "action", "check", "verify"}
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
        rules = _plain_rules(tz, defaults) if shared is None else shared.plain(tz, defaults)
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
    rules = JobRules(
        on=on,
        when=_NO_WHEN if when is None else when,
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
    )
    if shared is None or when is not None:
        return rules
    r = rules  # actions by identity: the shared ones are one object per value
    key = (on, tz, service, r.priority, r.jitter, r.max_runs, r.targets, r.timeout, r.retries,
           backoff, r.overlap, r.misfire, r.misfire_grace, id(r.check), id(r.verify))
    try:
        return shared.keep(key, rules)
    except TypeError:  # targets holding tables: this job keeps its own
        return rules
