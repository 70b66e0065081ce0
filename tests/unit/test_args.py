"""The validation layer (admin/args.py, strictjson.py): every bad value named, table-driven."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest

from automationd.admin import args as a
from automationd.errors import AdminError
from automationd.strictjson import NonFiniteError, finite_path, loads

NOW = 1_800_000_000.0
MiB = 1 << 20

Reader = Callable[[dict[str, Any]], Any]

REFUSED: list[tuple[str, Reader, Any, str]] = [
    ("name", a.name_arg, None, "args.name: expected a name"),
    ("name", a.name_arg, "", "args.name: must not be empty"),
    ("name", a.name_arg, "x" * 129, "args.name: longer than 128 characters (129)"),
    ("name", a.name_arg, "x" * MiB, "longer than 128"),
    ("name", a.name_arg, "a\x00b", "args.name: control character U+0000 at position 1"),
    ("name", a.name_arg, "a\nb", "control character U+000A"),
    ("name", a.name_arg, "a\x7f", "control character U+007F"),
    ("name", a.name_arg, 7, "args.name: expected a name (a non-empty string), got 7"),
    ("name", a.name_arg, ["x"], "got list"),
    ("idempotency_key", a.key_arg, "k" * 257, "args.idempotency_key: longer than 256"),
    ("idempotency_key", a.key_arg, "", "args.idempotency_key: must not be empty"),
    ("idempotency_key", a.key_arg, "k\x01", "control character U+0001"),
    ("id", a.id_arg, "r" * 65, "args.id: longer than 64"),
    ("payload", a.payload_arg, {"x": math.inf}, "args.payload.x: not a finite number"),
    ("payload", a.payload_arg, [1, {"y": math.nan}], "args.payload[1].y: not a finite number"),
    ("payload", a.payload_arg, -math.inf, "args.payload: not a finite number"),
    ("payload", a.payload_arg, "p" * MiB, f"args.payload: more than {MiB} bytes of JSON"),
    ("payload", a.payload_arg, {"s": {1, 2}}, "args.payload: not JSON"),
    ("limit", lambda x: a.int_arg(x, "limit", 50, 1, 1000), 0, "from 1 to 1000, got 0"),
    ("limit", lambda x: a.int_arg(x, "limit", 50, 1, 1000), 2**64, "from 1 to 1000"),
    ("limit", lambda x: a.int_arg(x, "limit", 50, 1, 1000), True, "from 1 to 1000, got True"),
    ("limit", lambda x: a.int_arg(x, "limit", 50, 1, 1000), 1.5, "from 1 to 1000, got 1.5"),
    ("all", lambda x: a.bool_arg(x, "all"), "yes", "args.all: expected true or false"),
    ("since", lambda x: a.time_arg(x, "since", NOW), -1, "args.since: expected an RFC 3339"),
    ("since", lambda x: a.time_arg(x, "since", NOW), 2**64, "args.since: expected an RFC 3339"),
    ("since", lambda x: a.time_arg(x, "since", NOW), 1e308, "args.since: expected an RFC 3339"),
    ("since", lambda x: a.time_arg(x, "since", NOW), "yesterday", "expected an RFC 3339"),
    ("since", lambda x: a.time_arg(x, "since", NOW), "2026-01-01T00:00:00", "expected an RFC"),
    ("since", lambda x: a.time_arg(x, "since", NOW), "9" * 40 + "s", "expected an RFC 3339"),
    ("since", lambda x: a.time_arg(x, "since", NOW), "36500d", "outside 1970..9999"),
    ("until", lambda x: a.time_arg(x, "until", NOW), "1969-12-31T23:59:59Z", "outside 1970"),
    ("since", lambda x: a.time_arg(x, "since", NOW), "t" * MiB, "longer than 64"),
    ("name", lambda x: a.opt_glob(x, "name"), "*" * MiB, "args.name: longer than 256"),
    (
        "state",
        lambda x: a.choice_arg(x, "state", frozenset({"on", "off"})),
        "up",
        "args.state: expected one of off, on, got 'up'",
    ),
]


@pytest.mark.parametrize(("key", "reader", "value", "message"), REFUSED)
def test_bad_values_are_bad_requests_naming_the_argument(
    key: str, reader: Reader, value: Any, message: str
) -> None:
    """Each refused value raises bad_request whose message starts with args.KEY and says why."""
    with pytest.raises(AdminError) as err:
        reader({key: value})
    assert err.value.code == "bad_request"
    assert err.value.message.startswith(f"args.{key}")
    assert message in err.value.message
    assert len(err.value.message) < 200  # one short line, even for a 1 MiB value


ACCEPTED: list[tuple[str, Reader, Any, Any]] = [
    ("name", a.name_arg, "sync-inventory", "sync-inventory"),
    ("name", a.name_arg, "x" * 128, "x" * 128),
    ("name", a.name_arg, "é.名前", "é.名前"),
    ("idempotency_key", a.key_arg, None, None),
    ("idempotency_key", a.key_arg, "k" * 256, "k" * 256),
    ("payload", a.payload_arg, None, None),
    ("payload", a.payload_arg, {"x": 1.5, "y": [2**70, "s"]}, {"x": 1.5, "y": [2**70, "s"]}),
    ("limit", lambda x: a.int_arg(x, "limit", 50, 1, 1000), None, 50),
    ("since", lambda x: a.time_arg(x, "since", NOW), "1h", NOW - 3600),
    ("since", lambda x: a.time_arg(x, "since", NOW), "1970-01-01T00:00:00Z", 0.0),
    ("since", lambda x: a.time_arg(x, "since", NOW), "2027-01-15T08:00:00+01:00", 1799996400.0),
]


@pytest.mark.parametrize(("key", "reader", "value", "expected"), ACCEPTED)
def test_good_values_pass_unchanged(key: str, reader: Reader, value: Any, expected: Any) -> None:
    """Values within the limits come back as given (times as epoch seconds)."""
    assert reader({key: value}) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"a":1e999}', "a: number 1e999 is not finite"),
        ('{"a":[0,-1.797e309]}', "a[1]: number -1.797e309 is not finite"),
        ("[NaN]", "[0]: number NaN is not finite"),
        ("Infinity", "number Infinity is not finite"),
        ('{"n":' + "1" * 65 + "}", "has too many digits"),
        ('{"s":"\\ud800"}', "lone UTF-16 surrogate"),
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        ('{"a":1} x', "extra data"),
    ],
)
def test_strict_json_refuses_what_no_store_can_hold(text: str, message: str) -> None:
    """strictjson.loads raises ValueError naming the path for non-finite numbers and the like."""
    with pytest.raises(ValueError) as err:
        loads(text)
    assert message in str(err.value)


def test_strict_json_reads_ordinary_json_as_json_does() -> None:
    """Finite floats, big (but sane) integers, unicode and nesting read as json.loads reads them."""
    text = '{"f":1.5e308,"i":18446744073709551616,"u":"\\u00e9\\ud83d\\ude00","l":[[],{}]}'
    assert loads(text) == {"f": 1.5e308, "i": 2**64, "u": "é😀", "l": [[], {}]}
    assert loads(b" [1, 2] ") == [1, 2]


def test_non_finite_error_keeps_the_document_for_the_request_id() -> None:
    """The error carries what was read, so the protocol can still echo the request id."""
    with pytest.raises(NonFiniteError) as err:
        loads('{"id":9,"args":{"x":1e999}}')
    assert err.value.document["id"] == 9 and err.value.path == "args.x"


def test_finite_path_finds_the_first_bad_float() -> None:
    """finite_path names the place of NaN/inf in Python values and None when all are finite."""
    assert finite_path({"a": [1.0, {"b": math.nan}]}, "value") == "value.a[1].b"
    assert finite_path({"a": (1, 2.5, "x")}) is None
    assert finite_path(math.inf) == "value"
