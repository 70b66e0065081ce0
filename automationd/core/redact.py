"""What the audit trail keeps of a command's arguments: a redacted copy and a digest (pure).

The copy is for people reading the trail: values under keys that usually hold secrets
(``env``, ``headers``, anything named like a token or a password) become ``"***"`` (the keys
stay, so "the env changed" is still visible), credentials in URLs are blanked, and the whole
is cut to ``MAX_TEXT`` characters of JSON. The digest is a hash of the *full* arguments, so
two identical requests can be told apart from two different ones without storing secrets.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

MAX_TEXT = 2000
HIDDEN = "***"
_VALUES_SECRET = frozenset({"env", "headers"})  # tables whose every value may be a secret
_SECRET_WORDS = (
    "password",
    "passwd",
    "secret",
    "token",
    "apikey",
    "api_key",
    "authorization",
    "cookie",
    "credential",
    "private_key",
)
_URL_USER = re.compile(r"(?<=://)[^/@\s]+@")

_dumps = json.JSONEncoder(
    separators=(",", ":"), ensure_ascii=False, allow_nan=False, sort_keys=True, default=repr
).encode


def secret_key(key: str) -> bool:
    k = key.lower()
    return any(word in k for word in _SECRET_WORDS)


def redact(value: Any) -> Any:
    """A copy of ``value`` with likely secrets hidden (see the module docstring)."""
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, v in value.items():
            k = str(key)
            if secret_key(k):
                out[k] = HIDDEN
            elif k.lower() in _VALUES_SECRET and isinstance(v, Mapping):
                out[k] = {str(name): HIDDEN for name in v}
            else:
                out[k] = redact(v)
        return out
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    if isinstance(value, str) and "://" in value:
        return _URL_USER.sub(HIDDEN + "@", value)
    return value


def digest(value: Any) -> str:
    """A short, stable hash of the full value (key order does not matter)."""
    return hashlib.sha256(_dumps(value).encode("utf-8", "surrogatepass")).hexdigest()[:16]


def audit_args(value: Any) -> tuple[str, str]:
    """(JSON text of the redacted copy, cut to ``MAX_TEXT``; digest of the full value).

    Arguments made only of a few short scalars (``{"name": "sync"}``: every manual trigger)
    are answered from a cache: they are the audit trail's hot path."""
    if isinstance(value, dict) and len(value) <= 4:
        items = tuple(value.items())
        if all(type(v) in _SCALARS and (type(v) is not str or len(v) <= 256) for _, v in items):
            # each value's type is part of the key: True == 1 == 1.0 would share an entry
            return _scalar_args(tuple((k, type(v), v) for k, v in items))
    return _audit_args(value)


_SCALARS = frozenset({str, int, float, bool, type(None)})


@functools.lru_cache(maxsize=4096)
def _scalar_args(items: tuple[tuple[str, type, Any], ...]) -> tuple[str, str]:
    return _audit_args({k: v for k, _, v in items})


def _audit_args(value: Any) -> tuple[str, str]:
    text = _dumps(redact(value))
    if len(text) > MAX_TEXT:
        text = _dumps(text[: MAX_TEXT - 1] + "…")  # a JSON string: still valid JSON
    return text, digest(value)
