"""Reading one command's arguments: each reader names the argument it refuses (pure).

A bad value is ``bad_request`` naming ``args.KEY``, before anything is stored.
"""

from __future__ import annotations

from typing import Any

from automationd.errors import bad_request
from automationd.units import parse_rfc3339


def req_str(args: dict[str, Any], key: str) -> str:
    v = args.get(key)
    if not isinstance(v, str) or not v:
        raise bad_request(f"args.{key}: expected a non-empty string")
    return v


def opt_str(args: dict[str, Any], key: str) -> str | None:
    v = args.get(key)
    if v is None:
        return None
    if not isinstance(v, str):
        raise bad_request(f"args.{key}: expected a string")
    return v


def int_arg(args: dict[str, Any], key: str, default: int, lo: int, hi: int) -> int:
    v = args.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise bad_request(f"args.{key}: expected an integer from {lo} to {hi}")
    return v


def bool_arg(args: dict[str, Any], key: str) -> bool:
    v = args.get(key, False)
    if not isinstance(v, bool):
        raise bad_request(f"args.{key}: expected true or false")
    return v


def time_arg(args: dict[str, Any], key: str) -> float | None:
    v = args.get(key)
    if v is None:
        return None
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v)
    try:
        return parse_rfc3339(v)
    except ValueError as exc:
        raise bad_request(f"args.{key}: {exc}") from None
