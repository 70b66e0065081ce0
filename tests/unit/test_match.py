"""Event matching tables: ``on`` globs, ``when`` fields, dotted paths (SPEC §2 on/when)."""

from __future__ import annotations

from typing import Any

import pytest

from automationd.core.match import event_matches, glob_match, json_equal, lookup, when_match

GLOBS = [
    ("inventory.*", "inventory.changed", True),
    ("inventory.*", "inventory.sku.changed", True),
    ("inventory.*", "inventory", False),
    ("inventory.*", "Inventory.changed", False),
    ("inventory.changed", "inventory.changed", True),
    ("inventory.changed", "inventory.changedx", False),
    ("run.succeeded", "run.failed", False),
    ("run.*", "run.partial", True),
    ("*", "anything.at.all", True),
    ("order.?", "order.1", True),
    ("order.?", "order.12", False),
    ("order.[ab]", "order.b", True),
    ("order.[!ab]", "order.b", False),
]


@pytest.mark.parametrize(("pattern", "name", "expected"), GLOBS)
def test_glob(pattern: str, name: str, expected: bool) -> None:
    """``on`` is a case-sensitive whole-name glob whose ``*`` also crosses dots."""
    assert glob_match(pattern, name) is expected


NESTED = {"order": {"region": "eu", "lines": {"count": 2}}, "order.region": "literal"}
LOOKUPS: list[tuple[Any, str, Any]] = [
    ({"region": "eu"}, "region", "eu"),
    ({"order": {"region": "eu"}}, "order.region", "eu"),
    (NESTED, "order.region", "literal"),  # a literal dotted key wins
    (NESTED, "order.lines.count", 2),
    ({"a": None}, "a", None),
]


@pytest.mark.parametrize(("payload", "key", "expected"), LOOKUPS)
def test_lookup_found(payload: Any, key: str, expected: Any) -> None:
    """Dotted keys reach into nested objects; a literal key with the dot takes precedence."""
    assert lookup(payload, key) == expected


@pytest.mark.parametrize(
    ("payload", "key"),
    [
        ({}, "region"),
        ({"order": "eu"}, "order.region"),
        (None, "a"),
        ([1, 2], "0"),
        ({"order": {"x": 1}}, "order.region"),
    ],
)
def test_lookup_missing_never_equals_anything(payload: Any, key: str) -> None:
    """An absent path yields a sentinel that equals no value, not even None."""
    got = lookup(payload, key)
    assert got is not None and not json_equal(got, None)


WHENS: list[tuple[dict[str, Any], Any, bool]] = [
    ({}, None, True),
    ({}, {"anything": 1}, True),
    ({"region": "eu"}, {"region": "eu", "sku": 7}, True),
    ({"region": "eu"}, {"region": "us"}, False),
    ({"region": "eu"}, {}, False),
    ({"region": "eu"}, None, False),
    ({"region": "eu"}, "eu", False),
    ({"order.region": "eu"}, {"order": {"region": "eu"}}, True),
    ({"order.region": "eu"}, {"order": {"region": "us"}}, False),
    ({"region": "eu", "tier": 1}, {"region": "eu", "tier": 1}, True),
    ({"region": "eu", "tier": 1}, {"region": "eu", "tier": 2}, False),
    ({"tier": 1}, {"tier": 1.0}, True),
    ({"flag": True}, {"flag": 1}, False),
    ({"count": 1}, {"count": True}, False),
    ({"flag": False}, {"flag": False}, True),
    ({"v": None}, {"v": None}, True),
    ({"v": None}, {}, False),
    ({"tags": ["a", "b"]}, {"tags": ["a", "b"]}, True),
    ({"tags": ["a", "b"]}, {"tags": ["b", "a"]}, False),
    ({"o": {"x": 1}}, {"o": {"x": 1}}, True),
    ({"o": {"x": 1}}, {"o": {"x": True}}, False),
    ({"job": "A"}, {"job": "A", "run_id": "r", "state": "succeeded"}, True),
]


@pytest.mark.parametrize(("when", "payload", "expected"), WHENS)
def test_when(when: dict[str, Any], payload: Any, expected: bool) -> None:
    """Every ``when`` field must be present and JSON-equal to the payload's value."""
    assert when_match(when, payload) is expected


EVENTS: list[tuple[str | None, dict[str, Any], str, Any, bool]] = [
    ("inventory.*", {"region": "eu"}, "inventory.changed", {"region": "eu"}, True),
    ("inventory.*", {"region": "eu"}, "inventory.changed", {"region": "us"}, False),
    ("inventory.*", {"region": "eu"}, "orders.created", {"region": "eu"}, False),
    (None, {}, "inventory.changed", {}, False),
    ("run.succeeded", {"job": "A"}, "run.succeeded", {"job": "A", "state": "succeeded"}, True),
    ("run.succeeded", {"job": "A"}, "run.succeeded", {"job": "B", "state": "succeeded"}, False),
]


@pytest.mark.parametrize(("on", "when", "name", "payload", "expected"), EVENTS)
def test_event_matches(
    on: str | None, when: dict[str, Any], name: str, payload: Any, expected: bool
) -> None:
    """A job is triggered only when it listens (``on`` set), the glob and every field match."""
    assert event_matches(on, when, name, payload) is expected
