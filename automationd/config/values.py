"""Typed readers for single config values, each naming the dotted key path on failure.

Every reader takes ``(value, where, key)`` and builds the ``where.key`` path only when it
raises: the loader calls these hundreds of thousands of times for a large job file, so the
happy path must be a type check plus, at most, a cached lookup. Units are converted by
``automationd.units``; the caches below make repeated values (every job saying ``"5m"``,
every job in ``Europe/Berlin``) cost one dict probe.
"""

from __future__ import annotations

import difflib
import enum
import functools
import math
import zoneinfo
from collections.abc import Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, NoReturn, TypeVar

from automationd.config.model import Backoff
from automationd.errors import ConfigError
from automationd.units import Rate, parse_duration, parse_rate

E = TypeVar("E", bound=enum.Enum)


def path_of(where: str, key: str) -> str:
    """``where.key``, or just ``key`` at the top level."""
    return f"{where}.{key}" if where else key


def fail(where: str, key: str, problem: str) -> NoReturn:
    raise ConfigError(f"{path_of(where, key)}: {problem}")


def show(value: object) -> str:
    """Spell a TOML value the way the operator wrote it, short enough for one line."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping):
        return "a table"
    if isinstance(value, list):
        return "an array"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def unknown_key(where: str, key: str, allowed: Iterable[str]) -> NoReturn:
    """Reject a key nobody reads, suggesting the closest known spelling."""
    close = difflib.get_close_matches(key, list(allowed), n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    fail(where, key, f"unknown key{hint}")


def table(value: object, where: str, key: str) -> Mapping[str, Any]:
    if type(value) is not dict and not isinstance(value, Mapping):
        fail(where, key, f"expected a table, got {show(value)}")
    return value


def check_keys(raw: Mapping[str, Any], where: str, allowed: frozenset[str]) -> None:
    for key in raw:
        if key not in allowed:
            unknown_key(where, key, allowed)


def string(value: object, where: str, key: str) -> str:
    if type(value) is not str:
        fail(where, key, f"expected a string, got {show(value)}")
    return value


def nonempty(value: object, where: str, key: str) -> str:
    if type(value) is not str:
        fail(where, key, f"expected a string, got {show(value)}")
    if not value.strip():
        fail(where, key, "must not be empty")
    return value


def boolean(value: object, where: str, key: str) -> bool:
    if type(value) is not bool:
        fail(where, key, f"expected true or false, got {show(value)}")
    return value


def integer(value: object, where: str, key: str, *, minimum: int | None = None) -> int:
    """An int; TOML booleans are rejected even though Python counts them as ints."""
    if type(value) is not int:
        fail(where, key, f"expected an integer, got {show(value)}")
    if minimum is not None and value < minimum:
        fail(where, key, f"must be at least {minimum}, got {value}")
    return value


def number(
    value: object, where: str, key: str, *, low: float | None = None, high: float | None = None
) -> float:
    if type(value) is not int and type(value) is not float:
        fail(where, key, f"expected a number, got {show(value)}")
    out = float(value)
    if not math.isfinite(out):  # TOML has nan and inf; NaN would slip past both bounds
        fail(where, key, f"must be a finite number, got {out}")
    if low is not None and out < low:
        fail(where, key, f"must be at least {low:g}, got {out:g}")
    if high is not None and out > high:
        fail(where, key, f"must be at most {high:g}, got {out:g}")
    return out


@functools.lru_cache(maxsize=4096)
def _duration(text: str) -> float:
    return parse_duration(text)


def duration(value: object, where: str, key: str, positive: bool = False) -> float:
    if type(value) is not str:
        fail(where, key, f"expected a duration string, got {show(value)}")
    try:
        seconds = _duration(value)
    except ValueError as exc:
        fail(where, key, str(exc))
    if positive and seconds <= 0:
        fail(where, key, f"must be positive, got {value!r}")
    return seconds


@functools.lru_cache(maxsize=1024)
def _rate(text: str) -> Rate:
    return parse_rate(text)


def rate(value: object, where: str, key: str) -> Rate:
    if type(value) is not str:
        fail(where, key, f"expected a rate string such as '10/s', got {show(value)}")
    try:
        return _rate(value)
    except ValueError as exc:
        fail(where, key, str(exc))


def choice(value: object, where: str, key: str, kind: type[E]) -> E:
    """An enum member by value, listing the accepted spellings on failure."""
    if type(value) is str:
        try:
            return kind(value)
        except ValueError:
            pass
    options = " | ".join(str(m.value) for m in kind)
    fail(where, key, f"expected one of {options}, got {show(value)}")


def one_of(value: object, where: str, key: str, options: tuple[str, ...]) -> str:
    if type(value) is not str or value not in options:
        fail(where, key, f"expected one of {' | '.join(options)}, got {show(value)}")
    return value


@functools.lru_cache(maxsize=1024)
def zone(name: str) -> zoneinfo.ZoneInfo:
    """A cached ZoneInfo; raises ValueError naming the zone when it does not exist."""
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(f"bad time zone {name!r}") from None


def timezone(value: object, where: str, key: str) -> str:
    if type(value) is not str:
        fail(where, key, f"expected a time zone name such as 'Europe/Berlin', got {show(value)}")
    try:
        zone(value)
    except ValueError as exc:
        fail(where, key, str(exc))
    return value


def local_path(value: object, where: str, key: str, base_dir: Path) -> Path:
    """A path; relative ones are taken from the config file's folder, not the cwd, and
    resolved so logs show ``/srv/app/var`` rather than ``/srv/app/etc/../var``."""
    if type(value) is not str or not value:
        fail(where, key, f"expected a non-empty path string, got {show(value)}")
    p = Path(value).expanduser()
    return p if p.is_absolute() else (base_dir / p).resolve()


def str_map(value: object, where: str, key: str) -> dict[str, str]:
    raw = table(value, where, key)
    for k, v in raw.items():
        if type(v) is not str:
            fail(path_of(where, key), k, f"expected a string, got {show(v)}")
    return dict(raw)


def int_list(value: object, where: str, key: str, *, low: int, high: int) -> tuple[int, ...]:
    if not isinstance(value, list):
        fail(where, key, f"expected an array of integers, got {show(value)}")
    for i, v in enumerate(value):
        if type(v) is not int or not low <= v <= high:
            fail(where, f"{key}[{i}]", f"expected an integer in {low}..{high}, got {show(v)}")
    return tuple(value)


_BACKOFF_KEYS = frozenset({"base", "max", "multiplier", "jitter"})


def backoff(value: object, where: str, key: str, inherit: Backoff) -> Backoff:
    """A backoff table; keys it leaves out are taken from ``inherit`` (merge, not replace)."""
    raw = table(value, where, key)
    here = path_of(where, key)
    changes: dict[str, float] = {}
    for k, v in raw.items():
        if k == "base" or k == "max":
            changes[k] = duration(v, here, k)
        elif k == "multiplier":
            changes[k] = number(v, here, k, low=1.0)
        elif k == "jitter":
            changes[k] = number(v, here, k, low=0.0, high=1.0)
        else:
            unknown_key(here, k, _BACKOFF_KEYS)
    out = replace(inherit, **changes)
    if out.max < out.base:
        fail(here, "max", f"must be at least base ({out.base:g}s), got {out.max:g}s")
    return out
