"""Event matching: a job's ``on`` glob against an event name and its ``when`` fields against
the payload. Dotted ``when`` keys reach into nested objects (``"order.region" = "eu"``).

Pure (habit 2): the event bus asks, this module answers; nothing here knows about runs.

Rules:
- ``on`` is a case-sensitive shell glob over the whole name; ``*`` also crosses dots, so
  ``inventory.*`` matches ``inventory.changed`` and ``inventory.sku.changed``.
- Every ``when`` field must be present and equal. A literal payload key that contains the
  dot wins over the nested path (``{"order.region": …}`` before ``{"order": {"region": …}}``).
- Equality is JSON equality: ``1 == 1.0``, but ``true`` never equals ``1`` (Python's
  ``True == 1`` would let ``when = { flag = true }`` match a count of 1).
"""

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
    """``payload["a"]["b"]`` for ``"a.b"``; a literal key containing the dot wins if present.

    Returns a private sentinel (never equal to anything) when the path is absent.
    """
    if isinstance(payload, Mapping) and dotted in payload:
        return payload[dotted]
    cur = payload
    for part in dotted.split("."):
        if not isinstance(cur, Mapping) or part not in cur:
            return _MISSING
        cur = cur[part]
    return cur


def json_equal(a: Any, b: Any) -> bool:
    """Equality as JSON sees it: booleans are not numbers, containers compare deeply."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def when_match(when: Mapping[str, Any], payload: Any) -> bool:
    """True when every ``when`` field is present in ``payload`` and equal to it."""
    for key, want in when.items():
        got = lookup(payload, key)
        if got is _MISSING or not json_equal(got, want):
            return False
    return True


def event_matches(on: str | None, when: Mapping[str, Any], name: str, payload: Any) -> bool:
    """Whether a job listening with ``on``/``when`` is triggered by this event."""
    return on is not None and glob_match(on, name) and when_match(when, payload)
