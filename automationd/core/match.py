"""Event matching: a job's ``on`` glob against an event name and its ``when`` fields against
the payload. Dotted ``when`` keys reach into nested objects (``"order.region" = "eu"``)."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

_MISSING = object()


@lru_cache(maxsize=4096)
def _glob(pattern: str) -> re.Pattern[str]:
    return re.compile(fnmatch.translate(pattern))


def glob_match(pattern: str, name: str) -> bool:
    """Case-sensitive shell-style glob (``*`` also crosses dots: ``inventory.*``)."""
    return _glob(pattern).match(name) is not None


def lookup(payload: Any, dotted: str) -> Any:
    """``payload["a"]["b"]`` for ``"a.b"``; a literal key containing the dot wins if present."""
    if isinstance(payload, Mapping) and dotted in payload:
        return payload[dotted]
    cur = payload
    for part in dotted.split("."):
        if not isinstance(cur, Mapping) or part not in cur:
            return _MISSING
        cur = cur[part]
    return cur


def when_match(when: Mapping[str, Any], payload: Any) -> bool:
    return all(lookup(payload, key) == want for key, want in when.items())


def event_matches(on: str | None, when: Mapping[str, Any], name: str, payload: Any) -> bool:
    return on is not None and glob_match(on, name) and when_match(when, payload)
