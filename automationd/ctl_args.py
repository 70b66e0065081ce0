"""Argument types of ``automationctl``: a bad value is a usage error (exit 2), said by argparse
before any socket is touched. Also the ``--version`` action ``automationd`` shares."""

from __future__ import annotations

import argparse
import json
import tomllib
from collections.abc import Sequence
from typing import Any

from automationd.clock import SystemClock
from automationd.units import parse_duration, parse_rfc3339, rfc3339


def json_value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON: {exc}") from None


def json_object(text: str) -> dict[str, Any]:
    value = json_value(text)
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("expected a JSON object")
    return value


def toml_job(path: str) -> dict[str, Any]:
    """A TOML file holding one job table's keys (a lone ``[[jobs]]`` entry is accepted too)."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise argparse.ArgumentTypeError(f"cannot read {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise argparse.ArgumentTypeError(f"{path}: {exc}") from None
    jobs = data.get("jobs")
    if list(data) == ["jobs"] and isinstance(jobs, list) and len(jobs) == 1:
        return dict(jobs[0])
    return data


def since(text: str) -> str:
    """An RFC 3339 time, or a duration meaning "that long ago" (``1h`` → now minus 1 h)."""
    try:
        return rfc3339(SystemClock().time() - parse_duration(text)) or text
    except ValueError:
        pass
    try:
        parse_rfc3339(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"bad time {text!r}: expected RFC 3339 (2026-01-31T12:00:00Z) or a duration (1h)"
        ) from None
    return text


def count(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = -1
    if n < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}")
    return n


class Version(argparse.Action):
    """``--version`` of both commands: ``PROG VERSION`` on stdout, then exit 0. The version
    is read from the installed package only when asked (it costs ~20 ms)."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        kwargs.setdefault("nargs", 0)
        kwargs.setdefault("default", argparse.SUPPRESS)
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *_: Any) -> None:
        from automationd import __version__

        print(f"{parser.prog} {__version__}")
        parser.exit()
