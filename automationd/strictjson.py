"""JSON that enters the daemon: finite numbers only (pure).

Why: Python's ``json`` reads ``NaN``, ``Infinity`` and literals that overflow to infinity
(``1e999``, ``1.797e309``) as floats, but cannot write them back as JSON (``allow_nan=False``
everywhere we write). A value like that, stored in a run's payload or result, made every
later read of that row fail. So everything that comes in (admin requests, HTTP response
bodies, ``exec`` check output) is read here, and a non-finite number is refused with the path
where it was found (``args.payload.price: 1e999 is not a finite number``).

How: the decoder's ``parse_float`` and ``parse_constant`` hooks return a marker instead of a
float and note that they did; only then is the result walked to name the path. Well-formed
input pays one C-level float conversion per float literal and one flag check per document.
"""

from __future__ import annotations

import json
import math
import threading
from typing import Any

MAX_INT_DIGITS = 64  # digits of an integer literal; bigger ones say nothing a number can
MAX_DEPTH = 128  # levels ``finite_path`` looks into


class NonFiniteError(ValueError):
    """A number in the JSON text is not finite; ``path`` names where (``a.b[3]``)."""

    def __init__(self, path: str, literal: str, document: Any = None) -> None:
        where = f"{path}: " if path else ""
        problem = "has too many digits" if literal.endswith(" digits)") else "is not finite"
        super().__init__(f"{where}number {literal} {problem}")
        self.path = path
        self.literal = literal
        self.document = document  # what was read, markers in place (a request's id is kept)


class _Bad:
    """Stands where a non-finite number was, until the walk finds it."""

    __slots__ = ("literal",)

    def __init__(self, literal: str) -> None:
        self.literal = literal


_seen = threading.local()  # per thread: decoding on the loop and in to_thread must not mix


def _float(text: str) -> Any:
    value = float(text)
    if math.isfinite(value):
        return value
    _seen.bad = True
    return _Bad(text)


def _int(text: str) -> Any:
    if len(text) > MAX_INT_DIGITS:
        _seen.bad = True
        return _Bad(f"{text[:12]}… ({len(text)} digits)")
    return int(text)


def _constant(name: str) -> Any:
    _seen.bad = True
    return _Bad(name)


_DECODER = json.JSONDecoder(parse_float=_float, parse_int=_int, parse_constant=_constant)


def _find(value: Any, path: str, depth: int = 0) -> tuple[str, str] | None:
    if type(value) is _Bad:
        return path, value.literal
    if depth >= MAX_DEPTH:
        return None
    if type(value) is dict:
        for k, v in value.items():
            hit = _find(v, f"{path}.{k}" if path else k, depth + 1)
            if hit is not None:
                return hit
    elif type(value) is list:
        for i, v in enumerate(value):
            hit = _find(v, f"{path}[{i}]", depth + 1)
            if hit is not None:
                return hit
    return None


def decode_prefix(text: str) -> tuple[Any, int]:
    """``raw_decode`` with non-finite numbers refused: ``(value, end)``.

    Raises ``NonFiniteError`` naming the path, or ``ValueError`` for text that is not JSON.
    """
    _seen.bad = False
    try:
        value, end = _DECODER.raw_decode(text)
    except RecursionError:
        raise ValueError("nested too deeply") from None
    if _seen.bad:
        _seen.bad = False
        path, literal = _find(value, "") or (f"deeper than {MAX_DEPTH} levels", "a number")
        raise NonFiniteError(path, literal, document=value)
    return value, end


def loads(text: str | bytes | bytearray) -> Any:
    """``json.loads`` with non-finite numbers, absurdly long integers and lone surrogates
    (``"\\ud800"``: no UTF-8 store or client can take one) refused, as ``ValueError``."""
    if isinstance(text, bytes | bytearray):
        text = text.decode("utf-8")
    text = text.strip(" \t\r\n")
    value, end = decode_prefix(text)
    if end != len(text):
        raise ValueError(f"extra data at char {end}")
    if "\\u" in text and has_lone_surrogate(value):
        raise ValueError("a string holds a lone UTF-16 surrogate")
    return value


_ENCODE = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode


def has_lone_surrogate(value: Any) -> bool:
    """True when some string in ``value`` cannot be written as UTF-8."""
    try:
        _ENCODE(value).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def finite_path(value: Any, path: str = "", depth: int = 0) -> str | None:
    """The path of the first non-finite float in an already-built value, or None (for values
    handed over as Python objects: a ``python`` action's return value). Stops looking below
    ``MAX_DEPTH`` levels (a circular value is refused by the encoder anyway)."""
    if type(value) is float:
        return None if math.isfinite(value) else path or "value"
    if depth >= MAX_DEPTH:
        return None
    if isinstance(value, dict):
        for k, v in value.items():
            hit = finite_path(v, f"{path}.{k}" if path else str(k), depth + 1)
            if hit is not None:
                return hit
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            hit = finite_path(v, f"{path}[{i}]", depth + 1)
            if hit is not None:
                return hit
    return None


_LENIENT = json.JSONEncoder(
    separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=repr
).encode


def dumps_lenient(value: Any) -> str:
    """JSON text of anything: non-finite numbers become ``null``, values JSON has no form for
    their ``repr``, nesting past ``MAX_DEPTH`` (or a cycle) its ``repr`` cut short. For the
    store's last guard, where raising would lose a run's write."""
    return _LENIENT(_finite_copy(value, 0))


def _finite_copy(value: Any, depth: int) -> Any:
    if type(value) is float:
        return value if math.isfinite(value) else None
    if depth > MAX_DEPTH:
        return repr(value)[:200]
    if isinstance(value, dict):
        return {str(k): _finite_copy(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite_copy(v, depth + 1) for v in value]
    return value
