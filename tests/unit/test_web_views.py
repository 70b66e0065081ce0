"""The console's pure helpers: next fires with DST notes, attempt timelines, the runs
filter and its index choice, API query values, the origin check, URL hosts."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from multidict import MultiDict

from automationd.admin.args import choice_arg, opt_id, opt_name, time_arg
from automationd.core.runstate import RunState
from automationd.core.schedule import parse_schedule
from automationd.errors import AdminError
from automationd.records import Trigger
from automationd.store.api import RunQuery
from automationd.web.api import STATUS, query_args
from automationd.web.app import url_host
from automationd.web.guard import same_origin
from automationd.web.job_pages import fire_rows
from automationd.web.pages import local_target
from automationd.web.run_pages import indexed, runs_filter, timeline

BERLIN = "Europe/Berlin"


def _utc(*args: int) -> float:
    return dt.datetime(*args, tzinfo=dt.UTC).timestamp()


def test_next_fires_mark_the_spring_forward_gap() -> None:
    """02:30 Berlin does not exist on 2026-03-29: that fire is moved to 03:00 and marked."""
    schedule = parse_schedule("30 2 * * *", ZoneInfo(BERLIN))
    rows = fire_rows(schedule, _utc(2026, 3, 27, 12), BERLIN, count=4)
    assert [r["note"] for r in rows] == [None, "dst-gap", None, None]
    assert rows[0]["local"].startswith("2026-03-28 02:30:00 CET")
    assert rows[1]["local"].startswith("2026-03-29 03:00:00 CEST")
    assert rows[2]["local"].startswith("2026-03-30 02:30:00 CEST")


def test_next_fires_mark_the_repeated_hour() -> None:
    """02:30 Berlin happens twice on 2026-10-25: it fires once, on the first pass, marked."""
    schedule = parse_schedule("30 2 * * *", ZoneInfo(BERLIN))
    rows = fire_rows(schedule, _utc(2026, 10, 24, 12), BERLIN, count=2)
    assert rows[0]["note"] == "dst-fold" and "CEST" in rows[0]["local"]
    assert rows[1]["note"] is None


def test_timeline_groups_attempts_by_target_in_first_try_order() -> None:
    """The check phase, then each target in the order it was first tried."""
    attempts = [
        {"n": 1, "phase": "check", "target": None},
        {"n": 2, "phase": "perform", "target": "b"},
        {"n": 3, "phase": "perform", "target": {"sku": 1}},
        {"n": 4, "phase": "perform", "target": "b"},
    ]
    groups = timeline(attempts)
    assert [g["label"] for g in groups] == ["check phase", 'target "b"', 'target {"sku": 1}']
    assert [a["n"] for a in groups[1]["attempts"]] == [2, 4]


def test_runs_filter_reads_times_and_refuses_unknowns() -> None:
    """Durations mean "ago", RFC 3339 is taken as is, unknown states are dropped with a note."""
    now = _utc(2026, 1, 1, 12)
    q, _, problem = runs_filter({"since": "1h", "until": "2026-01-01T11:30:00Z"}, now)
    assert q.since == now - 3600 and q.until == _utc(2026, 1, 1, 11, 30) and problem == ""
    q, _, problem = runs_filter({"state": "nope", "job": "a"}, now)
    assert q.state is None and q.job == "a" and "args.state: expected one of" in problem


@pytest.mark.parametrize(
    ("key", "value"),
    [("since", "999999h"), ("until", "10000-01-01T00:00:00Z"), ("job", "a\x01b"),
     ("job", "j" * 129), ("trigger", "bogus"), ("before", "x" * 65)],
)  # fmt: skip
def test_runs_filter_refuses_what_runs_list_refuses(key: str, value: str) -> None:
    """The page's filters go through runs.list's own validators (admin/args.py): a value the
    command refuses is dropped with the command's message, not read some other way."""
    with pytest.raises(AdminError) as ei:
        runs_cmd_args({key: value})
    q, given, problem = runs_filter({key: value}, _utc(2026, 1, 1, 12))
    assert problem == ei.value.message and given.get(key, "") == ""
    assert getattr(q, key) is None


def runs_cmd_args(args: dict[str, str]) -> None:
    """What runs.list does with its filters (a copy would drift: this reads them the same)."""
    now = _utc(2026, 1, 1, 12)
    opt_name(args, "job")
    choice_arg(args, "state", frozenset(s.value for s in RunState))
    choice_arg(args, "trigger", frozenset(t.value for t in Trigger))
    time_arg(args, "since", now)
    time_arg(args, "until", now)
    opt_id(args, "before")


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (RunQuery(), True),
        (RunQuery(job="a"), True),
        (RunQuery(state="failed"), True),
        (RunQuery(state="running"), True),
        (RunQuery(state="succeeded"), False),
        (RunQuery(job="a", state="failed"), False),
        (RunQuery(trigger="manual"), False),
    ],
)
def test_which_filters_an_index_serves(query: RunQuery, expected: bool) -> None:
    """Index-served filters read directly; the rest read a bounded window."""
    assert indexed(query) is expected


def test_query_values_are_strings_unless_the_arg_takes_json() -> None:
    """Only the args a command takes as JSON are decoded; every other value is the string
    given (``name=123`` is the job "123", not the number)."""
    args = query_args(
        MultiDict(limit="5", name="123", job="sync-1", payload='{"a": [1]}', state="true"),
        frozenset({"limit", "payload"}),
    )
    assert args == {
        "limit": 5,
        "name": "123",
        "job": "sync-1",
        "payload": {"a": [1]},
        "state": "true",
    }


@pytest.mark.parametrize(
    ("text", "problem"),
    [("NaN", "not finite"), ("[1e999]", "not finite"), ('"\\ud800"', "surrogate"),
     ("[" * 65 + "]" * 65, "deeper than 64"), ("many", "invalid JSON")],
)  # fmt: skip
def test_a_json_query_value_is_held_to_the_sockets_rules(text: str, problem: str) -> None:
    """A JSON-valued query arg is parsed as strictly as a socket line (SPEC §7.5): bad_request
    naming the arg."""
    with pytest.raises(AdminError) as ei:
        query_args(MultiDict(payload=text), frozenset({"payload"}))
    assert ei.value.code == "bad_request"
    assert ei.value.message.startswith("args.payload") and problem in ei.value.message


def test_error_codes_map_to_statuses() -> None:
    """SPEC §7.3's mapping."""
    assert STATUS == {
        "bad_request": 400,
        "unauthorized": 401,
        "forbidden": 403,
        "not_found": 404,
        "conflict": 409,
        "internal": 500,
        "unavailable": 503,
    }


@pytest.mark.parametrize(
    ("headers", "ok"),
    [
        ({}, True),
        ({"Sec-Fetch-Site": "same-origin"}, True),
        ({"Sec-Fetch-Site": "none"}, True),
        ({"Sec-Fetch-Site": "cross-site"}, False),
        ({"Sec-Fetch-Site": "same-site"}, False),
        ({"Origin": "http://127.0.0.1:9465"}, True),
        ({"Origin": "http://127.0.0.1:9466"}, False),
        ({"Origin": "null"}, False),
        ({"Origin": "null", "Sec-Fetch-Site": "same-origin"}, True),  # a form under no-referrer
        ({"Origin": "http://127.0.0.1:9465", "Sec-Fetch-Site": "cross-site"}, False),
    ],
)
def test_same_origin(headers: dict[str, str], ok: bool) -> None:
    """A browser's Sec-Fetch-Site decides; without it, an Origin must be this one."""
    request = make_mocked_request("POST", "/x", headers={"Host": "127.0.0.1:9465", **headers})
    assert same_origin(request) is ok


def test_url_host_names_this_host_for_a_wildcard() -> None:
    """A console on 0.0.0.0 or [::] is reached through the loopback address."""
    assert url_host("0.0.0.0:9465") == "127.0.0.1:9465"
    assert url_host("[::]:9465") == "[::1]:9465"
    assert url_host("10.1.2.3:80") == "10.1.2.3:80"


@pytest.mark.parametrize(
    "target",
    ["/\t/evil.com", "/\r\n/evil.com", "/\n/evil.com", "/\x00/evil.com", "/\x7f/x",
     "//evil.com", "/\\evil.com", "https://evil.com/", "evil.com", "/%09/x\t"],
)  # fmt: skip
def test_a_login_redirect_never_leaves_the_site(target: str) -> None:
    """A ``next`` with control characters, a backslash, a scheme or a host falls back to
    ``/`` (yarl drops a tab, so ``/\\t/evil.com`` would become ``//evil.com``)."""
    assert local_target(target) == "/"


@pytest.mark.parametrize("target", ["/", "/jobs/a?tab=runs", "/runs?job=a%20b", "/%09/x"])
def test_a_local_login_redirect_is_kept(target: str) -> None:
    """A plain path on this server (percent-escapes included) is where a login goes next,
    and its Location header stays a path."""
    assert local_target(target) == target
    location = web.HTTPSeeOther(target).headers["Location"]
    assert location.startswith("/") and not location.startswith("//")
