"""NDJSON framing of the admin socket (admin/protocol.py): table-driven, no IO."""

from __future__ import annotations

import json
from typing import Any

import pytest

from automationd.admin.protocol import (
    MAX_DEPTH,
    MAX_LINE,
    Request,
    RequestError,
    encode_error,
    encode_ok,
    encode_request,
    parse_request,
    too_deep,
)

_DEEP_OK = b'{"cmd":"s","args":{"a":' + b"[" * 60 + b"]" * 60 + b"}}"
_TEXT = b'  {"cmd":"s","args":{"t":"\xc3\xa9\\u00e9 \\ud83d\\ude00"}}  '

GOOD: list[tuple[bytes, Any, str, dict[str, Any] | None]] = [
    (b'{"id":7,"cmd":"jobs.trigger","args":{"name":"a"}}\n', 7, "jobs.trigger", {"name": "a"}),
    (b'{"cmd":"status"}', None, "status", {}),
    (b'{"id":"x-1","cmd":"status","args":null}\r\n', "x-1", "status", {}),
    (b'{"id":null,"cmd":"status","args":{}}', None, "status", {}),
    (_TEXT, None, "s", {"t": "éé 😀"}),
    (_DEEP_OK, None, "s", None),  # 61 levels: under the cap
]


@pytest.mark.parametrize(("line", "rid", "cmd", "args"), GOOD)
def test_valid_lines_parse(line: bytes, rid: Any, cmd: str, args: dict[str, Any] | None) -> None:
    """Well-formed request lines become Requests (id kept, args defaulting to {})."""
    got = parse_request(line)
    assert (got.id, got.cmd) == (rid, cmd)
    if args is not None:
        assert got.args == args


BAD: list[tuple[bytes, str, Any]] = [
    (b"", "empty request line", None),
    (b"   \n", "empty request line", None),
    (b"hello", "invalid JSON", None),
    (b'{"cmd":"a",}', "invalid JSON", None),
    (b'\xff{"cmd":"a"}', "not valid UTF-8 (byte 0)", None),
    (b'{"cmd":"\xed\xa0\x80"}', "not valid UTF-8", None),  # an encoded surrogate is invalid UTF-8
    (b"[1,2]", "must be a JSON object", None),
    (b'"status"', "must be a JSON object", None),
    (b'{"id":1,"cmd":"a","args":{"x":NaN}}', "args.x: number NaN is not finite", 1),
    (b'{"id":1,"cmd":"a","args":{"x":Infinity}}', "args.x: number Infinity is not finite", 1),
    (b'{"id":2,"cmd":"a","args":{"p":[1,{"q":1e999}]}}', "args.p[1].q: number 1e999", 2),
    (b'{"id":2,"cmd":"a","args":{"p":-1.797e309}}', "args.p: number -1.797e309 is not", 2),
    (b'{"id":2,"cmd":"a","args":{"p":-Infinity}}', "args.p: number -Infinity is not", 2),
    (b'{"id":2,"cmd":"a","args":{"p":1' + b"0" * 70 + b"}}", "has too many digits", 2),
    (b'{"id":1e999,"cmd":"a"}', "id: number 1e999 is not finite", None),
    (b'{"id":3,"cmd":"a","args":{"s":"\\ud800"}}', "lone UTF-16 surrogate", 3),
    (b'{"id":"\\udc00","cmd":"a"}', "lone UTF-16 surrogate", None),  # unusable id not echoed
    (b'{"id":4}', "'cmd' must be a non-empty string", 4),
    (b'{"id":4,"cmd":""}', "'cmd' must be a non-empty string", 4),
    (b'{"id":4,"cmd":["status"]}', "'cmd' must be a non-empty string", 4),
    (b'{"id":5,"cmd":"a","args":[1]}', "'args' must be a JSON object", 5),
    (b'{"id":5,"cmd":"a","args":"x"}', "'args' must be a JSON object", 5),
    (b'{"id":6,"cmd":"a","arg":{}}', "unknown request key 'arg'", 6),
    (b'{"id":true,"cmd":"a"}', "'id' must be an integer, a string or null", None),
    (b'{"id":1.5,"cmd":"a"}', "'id' must be an integer, a string or null", None),
    (b'{"id":{"x":1},"cmd":"a"}', "'id' must be an integer, a string or null", None),
    (b'{"cmd":"a","args":{"x":' + b"[" * 100 + b"]" * 100 + b"}}", "deeper than 64", None),
    (b"[" * 200_000, "deeper than 64", None),
    (b'{"cmd":"a","args":{"x":"' + b"a" * MAX_LINE + b'"}}', "exceeds 1 MiB", None),
]


@pytest.mark.parametrize(("line", "message", "rid"), BAD)
def test_invalid_lines_are_bad_requests(line: bytes, message: str, rid: Any) -> None:
    """Each malformed line raises bad_request naming the problem, with the id when readable."""
    with pytest.raises(RequestError) as err:
        parse_request(line)
    assert err.value.code == "bad_request"
    assert message in err.value.message
    assert err.value.request_id == rid


DEPTH: list[tuple[bytes, bool]] = [
    (b"[]", False),
    (b"[" * MAX_DEPTH + b"]" * MAX_DEPTH, False),
    (b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1), True),
    (b'["' + b"[" * 500 + b'"]', False),  # brackets inside a string do not nest
    (b'["\\"' + b"{" * 500 + b'"]', False),  # ...even after an escaped quote
    (b"[{}]" * 1000, False),  # many brackets, shallow
    (b'{"a":' * 70 + b"1" + b"}" * 70, True),
]


@pytest.mark.parametrize(("line", "deep"), DEPTH)
def test_depth_scan(line: bytes, deep: bool) -> None:
    """The pre-parse depth scan counts nesting, not brackets inside strings."""
    assert too_deep(line) is deep


def test_exactly_max_line_is_accepted() -> None:
    """A request of exactly MAX_LINE bytes (newline not counted) parses."""
    head, tail = b'{"cmd":"a","args":{"x":"', b'"}}'
    line = head + b"a" * (MAX_LINE - len(head) - len(tail)) + tail
    assert len(line) == MAX_LINE
    assert len(parse_request(line + b"\n").args["x"]) == MAX_LINE - len(head) - len(tail)


RESPONSES: list[tuple[bytes, bytes]] = [
    (encode_ok(7, {"a": [1, 2]}), b'{"id":7,"ok":true,"result":{"a":[1,2]}}\n'),
    (encode_ok("x", None), b'{"id":"x","ok":true,"result":null}\n'),
    (encode_ok(None, "é"), '{"id":null,"ok":true,"result":"é"}\n'.encode()),
    (
        encode_error(3, "not_found", "no job named 'x'"),
        b'{"id":3,"ok":false,"error":{"code":"not_found","message":"no job named \'x\'"}}\n',
    ),
    (encode_ok(1, "\udc80"), b'{"id":1,"ok":true,"result":"\\udc80"}\n'),  # never invalid UTF-8
    (encode_request(2, "status"), b'{"id":2,"cmd":"status","args":{}}\n'),
]


@pytest.mark.parametrize(("got", "expected"), RESPONSES)
def test_encoding_is_one_compact_utf8_line(got: bytes, expected: bytes) -> None:
    """Responses are compact, UTF-8 (not \\u-escaped), and end in exactly one newline."""
    assert got == expected
    assert got.count(b"\n") == 1
    json.loads(got)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), object(), {1j: 1}])
def test_unjsonable_results_raise(bad: Any) -> None:
    """A result that is not JSON-able raises (the server turns that into `internal`)."""
    with pytest.raises((TypeError, ValueError)):
        encode_ok(1, {"x": bad})


def test_request_roundtrip() -> None:
    """encode_request output parses back to the same request."""
    req = parse_request(encode_request("r1", "jobs.trigger", {"name": "a", "payload": [1]}))
    assert req == Request("r1", "jobs.trigger", {"name": "a", "payload": [1]})
