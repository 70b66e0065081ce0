"""Reading one command's arguments: the one validation layer every command goes through (pure).

A bad value is ``bad_request`` naming ``args.KEY``, raised before anything is stored. The
limits are SPEC §7.5's:

- names (jobs, events, services, globs over them) at most ``NAME_MAX`` characters,
  idempotency keys at most ``KEY_MAX``, record ids at most ``ID_MAX``; none of them empty,
  none holding NUL or another control character;
- payloads at most ``PAYLOAD_MAX`` bytes of JSON, every number finite (the socket's parser
  refuses ``NaN``/``1e999`` already; this catches callers that hand over Python values);
- times are RFC 3339 strings with an offset, or a duration meaning "that long ago" (``"1h"``),
  between 1970 and 9999: never a bare number (``-1``, ``2**64`` and ``1e308`` meant nothing
  and one of them overflowed);
- integers in the range each command states.

Every reader takes the ``args`` mapping and the key, so the message can name the argument.
"""

from __future__ import annotations

import json
import re
from typing import Any

from automationd.errors import bad_request
from automationd.strictjson import finite_path
from automationd.units import parse_duration, parse_rfc3339

NAME_MAX = 128
GLOB_MAX = 256  # a glob may spell a class ([abc]) where a name has one character
KEY_MAX = 256
ID_MAX = 64
TEXT_MAX = 256  # other short strings: states, triggers, paging cursors
PAYLOAD_MAX = 1 << 20
TIME_MIN, TIME_MAX = 0.0, 253402300799.0  # 1970-01-01 .. 9999-12-31T23:59:59Z

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode


def _show(v: Any) -> str:
    if isinstance(v, str):
        return f"a string of {len(v)} characters" if len(v) > 40 else repr(v)
    return type(v).__name__ if isinstance(v, dict | list) else repr(v)[:40]


def _text(v: Any, key: str, limit: int, what: str) -> str:
    if type(v) is not str:
        raise bad_request(f"args.{key}: expected {what}, got {_show(v)}")
    if not v:
        raise bad_request(f"args.{key}: must not be empty")
    if len(v) > limit:
        raise bad_request(f"args.{key}: longer than {limit} characters ({len(v)})")
    m = _CONTROL.search(v)
    if m is not None:
        raise bad_request(
            f"args.{key}: control character U+{ord(m.group()):04X} at position {m.start()}"
        )
    return v


def req_str(args: dict[str, Any], key: str, limit: int = TEXT_MAX) -> str:
    return _text(args.get(key), key, limit, "a non-empty string")


def opt_str(args: dict[str, Any], key: str, limit: int = TEXT_MAX) -> str | None:
    v = args.get(key)
    return None if v is None else _text(v, key, limit, "a string")


def name_arg(args: dict[str, Any], key: str = "name") -> str:
    """A job or event name (required)."""
    return _text(args.get(key), key, NAME_MAX, "a name (a non-empty string)")


def opt_name(args: dict[str, Any], key: str) -> str | None:
    v = args.get(key)
    return None if v is None else _text(v, key, NAME_MAX, "a name (a string)")


def opt_glob(args: dict[str, Any], key: str) -> str | None:
    v = args.get(key)
    return None if v is None else _text(v, key, GLOB_MAX, "a name glob (a string)")


def id_arg(args: dict[str, Any], key: str = "id") -> str:
    return _text(args.get(key), key, ID_MAX, "an id (a non-empty string)")


def opt_id(args: dict[str, Any], key: str) -> str | None:
    v = args.get(key)
    return None if v is None else _text(v, key, ID_MAX, "an id (a string)")


def key_arg(args: dict[str, Any], key: str = "idempotency_key") -> str | None:
    v = args.get(key)
    return None if v is None else _text(v, key, KEY_MAX, "an idempotency key (a string)")


def payload_arg(args: dict[str, Any], key: str = "payload") -> Any:
    """Any JSON value up to ``PAYLOAD_MAX`` bytes, every number finite."""
    v = args.get(key)
    if v is None:
        return None
    try:
        text = _encode(v)
    except ValueError as exc:
        path = finite_path(v, f"args.{key}")
        if path is None:  # a circular reference: only an in-process caller can make one
            raise bad_request(f"args.{key}: not JSON ({exc})") from None
        raise bad_request(f"{path}: not a finite number") from None
    except TypeError as exc:  # not JSON at all (a caller that is not the socket)
        raise bad_request(f"args.{key}: not JSON ({exc})") from None
    if len(text) > PAYLOAD_MAX // 4 and len(text.encode()) > PAYLOAD_MAX:
        raise bad_request(f"args.{key}: more than {PAYLOAD_MAX} bytes of JSON")
    return v


def int_arg(args: dict[str, Any], key: str, default: int, lo: int, hi: int) -> int:
    v = args.get(key, default)
    if v is None:
        v = default
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise bad_request(f"args.{key}: expected an integer from {lo} to {hi}, got {_show(v)}")
    return v


def bool_arg(args: dict[str, Any], key: str) -> bool:
    v = args.get(key, False)
    if v is None:
        return False
    if not isinstance(v, bool):
        raise bad_request(f"args.{key}: expected true or false, got {_show(v)}")
    return v


def choice_arg(args: dict[str, Any], key: str, options: frozenset[str]) -> str | None:
    """One of ``options`` (states, triggers), or None when absent."""
    v = opt_str(args, key)
    if v is not None and v not in options:
        raise bad_request(f"args.{key}: expected one of {', '.join(sorted(options))}, got {v!r}")
    return v


def time_arg(args: dict[str, Any], key: str, now: float | None = None) -> float | None:
    """An RFC 3339 time (``2026-01-31T12:00:00Z``) or, given ``now``, a duration ago
    (``"90m"``)."""
    v = args.get(key)
    if v is None:
        return None
    what = "an RFC 3339 time (2026-01-31T12:00:00Z)"
    if now is not None:
        what += " or a duration ago (1h)"
    if type(v) is not str:
        raise bad_request(f"args.{key}: expected {what}, got {_show(v)}")
    text = _text(v, key, 64, what)
    try:
        ts = parse_rfc3339(text)
    except (ValueError, OverflowError):
        try:
            if now is None:
                raise ValueError(text)
            ts = now - parse_duration(text)
        except ValueError:
            raise bad_request(f"args.{key}: expected {what}, got {_show(v)}") from None
    if not TIME_MIN <= ts <= TIME_MAX:
        raise bad_request(f"args.{key}: {text!r} is outside 1970..9999")
    return ts
