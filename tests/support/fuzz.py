"""Hypothesis strategies for hostile admin requests: every SPEC command, its arguments and worse.

A request is built as a Python value and written by ``request_line``, which can also write what
``json`` cannot: literals that overflow to infinity (``1e999``) and ``NaN``/``Infinity``, put in
place of ``Raw`` markers. Values come from a few pools: names that exist and names that
cannot (empty, NUL, control characters, 129 and ~1 MiB characters), numbers from -1 to 2^64
and 1e308, times as RFC 3339, durations and numbers, nested payloads, and ids seen in answers.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from hypothesis import strategies as st

MiB = 1 << 20


class Raw:
    """A JSON literal written as is (``1e999``, ``NaN``)."""

    def __init__(self, text: str) -> None:
        self.text = text


NON_FINITE = ("1e999", "-1e999", "1.797e309", "NaN", "Infinity", "-Infinity", "1E400")


def request_line(rid: int, cmd: Any, args: Any) -> bytes:
    """One request line; ``Raw`` markers become their literal text."""
    raws: list[str] = []

    def default(o: Any) -> Any:
        if isinstance(o, Raw):
            raws.append(o.text)
            return f"\x00raw{len(raws) - 1}\x00"
        raise TypeError(type(o).__name__)

    text = json.dumps({"id": rid, "cmd": cmd, "args": args}, default=default, ensure_ascii=False)
    for i, raw in enumerate(raws):
        text = text.replace(json.dumps(f"\x00raw{i}\x00"), raw, 1)
    return text.encode("utf-8", "surrogatepass") + b"\n"


# --- pools ---------------------------------------------------------------------------------------

EXISTING_JOBS = ("alpha", "beta", "gamma")
BAD_TEXT = (
    "",
    " ",
    "\x00",
    "a\x00b",
    "tab\there",
    "new\nline",
    "\x7f",
    "\u0085",
    "x" * 129,
    "k" * 257,
    "n" * (MiB - 1000),
    "*",
    "[",
    "[!a-",
    "é名前",
    "../../etc/passwd",
    "'; DROP TABLE runs; --",
    "%s%s%n",
)
NUMBERS = (-1, 0, 1, 63, 2**31, 2**63 - 1, 2**63, 2**64, -(2**64), 10**30, 1e308, -1e308, 0.5, -0.0)


def mostly(
    good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any], weight: int = 3
) -> st.SearchStrategy[Any]:
    """Good values ``weight`` times as often as bad ones, so requests get past the first
    check and reach the handlers. (``one_of(good, good, bad)`` would not: equal branches
    count once.)"""
    return st.integers(0, weight).flatmap(lambda i: bad if i == weight else good)


text = st.one_of(
    st.text(max_size=30),
    st.sampled_from(BAD_TEXT),
    st.from_regex(r"[a-z0-9][a-z0-9._-]{0,16}", fullmatch=True),
)
names = mostly(st.sampled_from(EXISTING_JOBS), text)
event_names = mostly(st.sampled_from(("fz.a", "fz.b", "fail.x", "run.succeeded")), text)
numbers = st.one_of(
    st.sampled_from(NUMBERS),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
)
good_payloads = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=20),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=8,
)
non_finite = st.sampled_from(NON_FINITE).map(Raw)
scalars = st.one_of(st.none(), st.booleans(), numbers, text, non_finite)
payloads = mostly(
    good_payloads,
    st.one_of(
        st.recursive(
            scalars,
            lambda inner: st.one_of(
                st.lists(inner, max_size=4),
                st.dictionaries(st.text(max_size=8), inner, max_size=4),
            ),
            max_leaves=12,
        ),
        st.just({"big": "p" * (MiB - 500)}),
        st.just([[[[[[[[[[[[[[[[[[[["deep"]]]]]]]]]]]]]]]]]]]]),
    ),
)
good_times = st.one_of(
    st.datetimes(
        min_value=dt.datetime(2000, 1, 1),
        max_value=dt.datetime(2100, 1, 1),
        timezones=st.just(dt.UTC),
    ).map(lambda t: t.isoformat()),
    st.sampled_from(("1h", "90m", "0s", "7d", "2026-01-01T00:00:00Z")),
)
times = mostly(
    good_times,
    st.one_of(
        st.datetimes(timezones=st.timezones()).map(lambda t: t.isoformat()),
        st.sampled_from(
            (
                "1h",
                "90m",
                "0s",
                "7d",
                "9" * 40 + "s",
                "2026-01-01T00:00:00Z",
                "0001-01-01T00:00:00Z",
            )
        ),
        st.sampled_from(("9999-12-31T23:59:59+00:00", "2026-13-01T00:00:00Z", "yesterday")),
        numbers,
        non_finite,
        text,
    ),
)
flags = mostly(st.booleans(), scalars)


class SeenId:
    """Stands for the ``n``-th id seen in an answer so far; ``resolve`` fills it in when the
    request is sent (a strategy must not read state that changes between examples)."""

    def __init__(self, n: int) -> None:
        self.n = n


class TmpPath:
    """Stands for a file in the test's own folder (``store.backup`` must write nowhere else:
    the text pool holds paths such as ``../../etc/passwd``)."""

    def __init__(self, name: str) -> None:
        self.name = name


def resolve(args: Any, seen: list[str], tmp: str = "/nonexistent") -> Any:
    """``args`` with its markers filled in (ids seen so far, paths under ``tmp``)."""
    if not isinstance(args, dict):
        return args

    def one(v: Any) -> Any:
        if isinstance(v, SeenId):
            return seen[v.n % len(seen)] if seen else "0" * 32
        if isinstance(v, TmpPath):
            return f"{tmp}/{v.name}"
        return v

    return {k: one(v) for k, v in args.items()}


ids = mostly(st.integers(0, 10_000).map(SeenId), st.one_of(text, numbers))


def _job_spec() -> st.SearchStrategy[Any]:
    good_action = st.just({"type": "python", "callable": "acts:noop"})
    action = st.one_of(
        good_action,
        st.fixed_dictionaries({"type": st.sampled_from(("exec", "http", "python", "x"))}),
        payloads,
    )
    fresh = st.from_regex(r"fz-[a-z0-9]{1,8}", fullmatch=True)
    spec = st.fixed_dictionaries(
        {
            "name": mostly(fresh, names),
            # never a glob that could match run.* events: jobs that start on each other's ends
            # are a fork bomb the depth limit bounds only in length (3 listeners: 3^16 runs)
            "on": mostly(
                st.from_regex(r"fz\.[a-z*]{1,5}", fullmatch=True),
                st.sampled_from(("", "\x00", "x" * 200, 5, None, ["fz.*"])),
            ),
            "action": mostly(good_action, action),
        },
        optional={
            "schedule": st.one_of(st.sampled_from(("@yearly", "@at 2099-01-01T00:00:00Z")), text),
            "retries": numbers,
            "priority": numbers,
            "max_runs": numbers,
            "timeout": st.one_of(times, st.just("9" * 30 + "s")),
            "backoff": st.fixed_dictionaries(
                {}, optional={"base": times, "max": times, "multiplier": numbers}
            ),
            "targets": payloads,
            "when": payloads,
            "misfire": text,
            "jitter": times,
            "bogus_key": scalars,
        },
    )
    return mostly(spec, payloads)


def _patch() -> st.SearchStrategy[Any]:
    """A merge patch for ``jobs.update`` (never an ``on`` glob: see ``_job_spec``)."""
    return st.fixed_dictionaries(
        {},
        optional={
            "description": mostly(st.text(max_size=40), scalars),
            "retries": mostly(st.integers(0, 5), numbers),
            "priority": numbers,
            "timeout": times,
            "schedule": st.sampled_from(("@yearly", None, "not a schedule", 5)),
            "backoff": st.fixed_dictionaries({}, optional={"base": times, "multiplier": numbers}),
            "bogus_key": scalars,
        },
    )


def _args(cmd: str) -> st.SearchStrategy[Any]:
    limit, any_id = mostly(st.integers(0, 1001), st.one_of(numbers, scalars)), ids
    kinds = mostly(st.sampled_from(("fatal", "retryable", "timeout")), text)
    keys: dict[str, st.SearchStrategy[Any]] = {
        "status": {},
        "jobs.list": {"state": mostly(st.sampled_from(("enabled", "paused")), text)},
        "jobs.get": {"name": names},
        "jobs.add": {"job": _job_spec()},
        "jobs.remove": {"name": names},
        "jobs.pause": {"name": names},
        "jobs.resume": {"name": names},
        "jobs.trigger": {
            "name": names,
            "payload": payloads,
            "idempotency_key": mostly(st.from_regex(r"[a-z0-9-]{1,12}", fullmatch=True), scalars),
            "dry_run": flags,
        },
        "runs.list": {
            "job": names,
            "state": mostly(st.sampled_from(("succeeded", "failed")), text),
            "trigger": mostly(st.sampled_from(("manual", "event")), text),
            "since": times,
            "until": times,
            "before": any_id,
            "limit": limit,
            "offset": limit,
        },
        "runs.get": {"id": any_id},
        "runs.logs": {"id": any_id},
        "runs.cancel": {"id": any_id},
        "runs.retry": {"id": any_id},
        "dlq.list": {"job": names, "limit": limit},
        "dlq.retry": {"id": any_id, "job": names, "all": flags, "kind": kinds, "since": times},
        "dlq.purge": {"id": any_id, "job": names, "all": flags, "kind": kinds, "since": times},
        "dlq.summary": {"job": names, "kind": kinds, "since": times},
        "runs.rollback": {"id": any_id},
        "events.publish": {
            "name": event_names,
            "payload": payloads,
            "idempotency_key": mostly(st.from_regex(r"[a-z0-9-]{1,12}", fullmatch=True), scalars),
        },
        "events.list": {"name": st.one_of(event_names, text), "since": times, "until": times},
        "events.replay": {"since": times, "until": times, "name": event_names, "force": flags},
        "limits.list": {},
        "breakers.list": {},
        "store.check": {},
        "store.backup": {
            "path": mostly(
                st.from_regex(r"bk-[a-z0-9]{1,8}\.db", fullmatch=True).map(TmpPath),
                st.sampled_from(("", "\x00", "p" * 5000, 5, None, [])),
            )
        },
        "jobs.update": {
            "name": names,
            "patch": mostly(_patch(), payloads),
            "if_revision": mostly(st.integers(1, 5), scalars),
            "override": flags,
        },
        "jobs.explain": {"name": names},
        "jobs.backfill": {"name": names, "since": times, "until": times, "dry_run": flags},
        "audit.list": {"job": names, "since": times, "limit": limit},
    }[cmd]  # type: ignore[assignment]
    known = st.fixed_dictionaries({}, optional=keys)
    if cmd == "jobs.trigger":  # now and then an apply of a preview (SPEC §7.2)
        apply = st.fixed_dictionaries({"apply": any_id}, optional={"name": names, "dry_run": flags})
        known = mostly(known, apply, weight=6)
    extra = st.dictionaries(text, scalars, max_size=2)
    odd = st.one_of(
        st.builds(lambda a, b: {**b, **a}, known, extra),
        scalars,  # args that are not an object at all
    )
    return mostly(known, odd, weight=6)


COMMANDS = (
    "status",
    "jobs.list",
    "jobs.get",
    "jobs.add",
    "jobs.remove",
    "jobs.pause",
    "jobs.resume",
    "jobs.trigger",
    "runs.list",
    "runs.get",
    "runs.logs",
    "runs.cancel",
    "runs.retry",
    "dlq.list",
    "dlq.retry",
    "dlq.purge",
    "dlq.summary",
    "runs.rollback",
    "events.publish",
    "events.list",
    "events.replay",
    "limits.list",
    "breakers.list",
    "store.check",
    "store.backup",
    "jobs.update",
    "jobs.explain",
    "jobs.backfill",
    "audit.list",
)


def requests() -> st.SearchStrategy[tuple[str, Any]]:
    """``(cmd, args)`` for a SPEC command (rarely a command that is not one)."""
    cmd = mostly(st.sampled_from(COMMANDS), text, weight=10)
    return cmd.flatmap(lambda c: st.tuples(st.just(c), _args(c) if c in COMMANDS else scalars))
