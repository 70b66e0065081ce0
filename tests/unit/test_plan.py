"""Plans and staleness (core/plan.py): stable hashes and the reasons an apply names."""

from __future__ import annotations

from typing import Any

import pytest

from automationd.core.plan import (
    Plan,
    age_reason,
    canonical,
    early_reasons,
    make_plan,
    plan_diff,
    plan_from_json,
    stale_message,
)

BASE = make_plan(targets=["a", "b", {"sku": 1}], payload={"x": 1, "y": [1, 2]}, definition="d1")


def test_hash_is_stable_and_ignores_key_order() -> None:
    """The same decision hashes the same whatever the key order, and survives a round trip
    through its stored JSON; a pinned value guards against the encoding drifting."""
    same = make_plan(targets=["a", "b", {"sku": 1}], payload={"y": [1, 2], "x": 1}, definition="d1")
    assert same.hash == BASE.hash and len(BASE.hash) == 64
    assert plan_from_json(BASE.to_json()) == BASE
    assert canonical({"b": 1, "a": "é"}) == '{"a":"é","b":1}'
    pinned = make_plan(targets=None, payload=None, definition="")
    # sha256 of {"definition":"","output":"","payload":null,"perform":true,"targets":null}
    assert pinned.hash == "f63d9aaae1cd2441569d4b65135b98e3b1e123fa3ba76e98f8dd8cf7bf334b18"


@pytest.mark.parametrize(
    ("change", "reasons"),
    [
        ({}, []),
        ({"definition": "d2"}, ["job definition changed since the preview"]),
        ({"targets": ["a", {"sku": 1}, "c"]}, ['targets added: "c"', 'targets removed: "b"']),
        ({"targets": ["b", "a", {"sku": 1}]}, ["targets reordered"]),
        ({"targets": None}, ["targets changed: now no targets"]),
        ({"payload": {"x": 2, "y": [1, 2]}}, ["payload changed"]),
        ({"perform": False}, ["the check now says nothing to perform"]),
        (
            {"definition": "d2", "targets": ["a", "b", {"sku": 1}, "z"], "payload": 3},
            ["job definition changed since the preview", 'targets added: "z"', "payload changed"],
        ),
    ],
)
def test_diff_names_each_difference(change: dict[str, Any], reasons: list[str]) -> None:
    """Each kind of change yields its own reason, in a fixed order; equal plans none, and
    then their hashes are equal too."""
    parts: dict[str, Any] = {
        "targets": BASE.targets,
        "payload": BASE.payload,
        "definition": BASE.definition,
        "perform": BASE.perform,
    }
    now = make_plan(**{**parts, **change})
    assert plan_diff(BASE, now) == reasons
    assert (now.hash == BASE.hash) is (not reasons)


def test_the_rest_of_the_checks_output_counts_too() -> None:
    """Targets and payload equal, another output: the apply is stale, naming the keys that
    differ; the same output (whatever its key order) is no difference."""
    parts: dict[str, Any] = {"targets": ["a"], "payload": None, "definition": "d"}
    before = {"perform": True, "targets": ["a"], "rules": "v1", "n": 1}
    same = make_plan(**parts, output={"n": 1, "rules": "v1", "perform": True, "targets": ["a"]})
    preview = make_plan(**parts, output=before)
    assert plan_diff(preview, same) == [] and same.hash == preview.hash
    after = {**before, "rules": "v2", "extra": 0}
    now = make_plan(**parts, output=after)
    assert plan_diff(preview, now, before, after) == ["check output changed (keys: extra, rules)"]
    assert plan_diff(preview, now) == ["check output changed"]
    assert make_plan(**parts).output == "" != preview.output  # no check: no output


def test_many_added_targets_are_cut_short() -> None:
    """A long list of added targets names five and counts the rest."""
    now = make_plan(
        targets=[*(BASE.targets or ()), *range(8)], payload=BASE.payload, definition="d1"
    )
    (reason,) = plan_diff(BASE, now)
    assert reason == "targets added: 0, 1, 2, 3, 4 … and 3 more"


@pytest.mark.parametrize(
    ("age", "ttl", "reason"),
    [
        (10.0, 3600.0, None),
        (3600.0, 3600.0, None),
        (3601.0, 3600.0, "preview is 1h1s old, older than preview_ttl 1h"),
        (0.5, 0.3, "preview is 500ms old, older than preview_ttl 300ms"),
    ],
)
def test_age(age: float, ttl: float, reason: str | None) -> None:
    """A preview is stale by age only once it is older than its TTL."""
    assert age_reason(100.0, 100.0 + age, ttl) == reason


def test_early_reasons_and_message() -> None:
    """Before the check runs again, the definition and the age are judged together."""
    got = early_reasons(BASE, "d2", made_at=0.0, now=7200.0, ttl=3600.0)
    assert got == [
        "job definition changed since the preview",
        "preview is 2h old, older than preview_ttl 1h",
    ]
    assert stale_message(got) == "plan is stale: " + "; ".join(got)


def test_plan_from_json_refuses_what_is_not_a_plan() -> None:
    """A stored value without a hash is no plan."""
    assert plan_from_json(None) is None and plan_from_json({"targets": []}) is None
    assert isinstance(plan_from_json({"hash": "h", "targets": ["a"]}), Plan)
