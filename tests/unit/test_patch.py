"""JSON merge patch (RFC 7396), as ``jobs.update`` applies it (core/patch.py)."""

from __future__ import annotations

from typing import Any

import pytest

from automationd.core.patch import changed_keys, merge_patch

# RFC 7396 appendix A, plus the cases a job table meets.
CASES: list[tuple[Any, Any, Any]] = [
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    (["a", "b"], ["c", "d"], ["c", "d"]),
    ({"a": "b"}, ["c"], ["c"]),
    ({"a": "foo"}, None, None),
    ({"a": "foo"}, "bar", "bar"),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
    (  # a job: only the keys named change; nested tables merge
        {"name": "j", "schedule": "@hourly", "action": {"type": "exec", "argv": ["a"]}},
        {"schedule": "*/5 * * * *", "action": {"argv": ["b"]}, "description": "x"},
        {
            "name": "j",
            "schedule": "*/5 * * * *",
            "action": {"type": "exec", "argv": ["b"]},
            "description": "x",
        },
    ),
]


@pytest.mark.parametrize(("target", "patch", "result"), CASES)
def test_merge_patch_follows_rfc_7396(target: Any, patch: Any, result: Any) -> None:
    """Each case of the RFC's table gives the RFC's result, and the inputs are left as
    they were."""
    before = repr((target, patch))
    assert merge_patch(target, patch) == result
    assert repr((target, patch)) == before


def test_changed_keys_name_the_leaves_a_patch_touches() -> None:
    """Nested keys are dotted; an empty object counts as a key of its own."""
    patch = {"schedule": "x", "action": {"argv": ["b"], "env": {"A": None}}, "when": {}}
    assert changed_keys(patch) == ["schedule", "action.argv", "action.env.A", "when"]
