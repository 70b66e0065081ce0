"""NDJSON framing for the admin socket: bytes in, a ``Request`` or an error out (Sans-IO).

Rules:

* One request per line, UTF-8 JSON object ``{"id"?, "cmd", "args"?}``; at most ``MAX_LINE``
  bytes before the newline. Every line gets exactly one response line, in request order.
* Anything wrong with a line is a ``RequestError`` (an ``AdminError`` with code
  ``bad_request``) carrying the request ``id`` whenever it could be read, so the error response
  still lets a pipelining client match it to its request.
* Nesting is capped at ``MAX_DEPTH`` *before* ``json`` parses, by a scan that is skipped
  outright when the line holds too few brackets to be that deep (the common case).
* Numbers must be finite: ``NaN``, ``Infinity`` and literals that overflow (``1e999``) are
  refused with their path (``args.payload.x: 1e999 is not a finite number``), id echoed
  (automationd/strictjson.py).
* Lone surrogates (``"\\ud800"``) decode fine in Python but cannot be re-encoded as UTF-8 and
  would blow up later in a handler or the store; they are refused here. The check only runs
  when the line contains a ``\\u`` escape at all.
* Responses use one precomputed encoder (compact, ``ensure_ascii=False``, no NaN). A result
  string carrying a lone surrogate (captured process output) is written as a ``\\uXXXX``
  escape rather than failing, so the output is always valid UTF-8.

Imports no asyncio: the server and the tests feed it bytes.
"""

from __future__ import annotations

import json
import re
from typing import Any, NamedTuple

from automationd.errors import AdminError
from automationd.strictjson import NonFiniteError, decode_prefix, has_lone_surrogate

MAX_LINE = 1 << 20
MAX_DEPTH = 64

RequestId = int | str | None

ERROR_CODES = frozenset(
    {"bad_request", "not_found", "conflict", "forbidden", "unavailable", "internal"}
)
_REQUEST_KEYS = frozenset({"id", "cmd", "args"})
_ID_TYPES = frozenset({int, str, type(None)})
_JSON_SPACE = " \t\r\n"

# A JSON string (with escapes) or one bracket: strings are skipped whole so brackets inside
# them do not count towards the depth.
_DEPTH_TOKEN = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]', re.DOTALL)


_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


class Request(NamedTuple):
    """One parsed request line (a named tuple: one is built per request)."""

    id: RequestId
    cmd: str
    args: dict[str, Any]


class RequestError(AdminError):
    """A line that is not a valid request; ``request_id`` is echoed in the error response."""

    def __init__(self, message: str, request_id: RequestId = None) -> None:
        super().__init__("bad_request", message)
        self.request_id = request_id


def too_deep(line: bytes, limit: int = MAX_DEPTH) -> bool:
    """True when ``line`` nests arrays/objects deeper than ``limit`` (strings are skipped)."""
    if line.count(b"[") + line.count(b"{") <= limit:
        return False
    depth = 0
    for m in _DEPTH_TOKEN.finditer(line):
        tok = m.group()
        if tok in (b"[", b"{"):
            depth += 1
            if depth > limit:
                return True
        elif tok in (b"]", b"}"):
            depth -= 1
    return False


def parse_request(line: bytes) -> Request:
    """Parse one line (with or without its trailing newline) into a ``Request``."""
    body = line.rstrip(b"\r\n")
    if len(body) > MAX_LINE:
        raise RequestError("request line exceeds 1 MiB")
    try:
        text = body.decode("utf-8").strip(_JSON_SPACE)
    except UnicodeDecodeError as exc:
        raise RequestError(f"request is not valid UTF-8 (byte {exc.start})") from None
    if not text:
        raise RequestError("empty request line")
    if too_deep(body):
        raise RequestError(f"request nests deeper than {MAX_DEPTH} levels")
    try:
        obj, end = decode_prefix(text)
    except NonFiniteError as exc:  # NaN, Infinity, 1e999: named by path, id echoed
        doc = exc.document
        rid = doc.get("id") if type(doc) is dict else None
        raise RequestError(str(exc), rid if type(rid) in _ID_TYPES else None) from None
    except ValueError as exc:  # JSONDecodeError is a ValueError
        raise RequestError(f"invalid JSON: {exc}") from None
    if end != len(text):
        raise RequestError(f"invalid JSON: extra data at char {end}")
    if type(obj) is not dict:
        raise RequestError("request must be a JSON object")

    rid = obj.get("id")
    if type(rid) not in _ID_TYPES:  # bool is an int subclass, and refused
        raise RequestError("'id' must be an integer, a string or null")
    if "\\u" in text and has_lone_surrogate(obj):
        if isinstance(rid, str) and has_lone_surrogate(rid):
            rid = None  # cannot be echoed as valid UTF-8
        raise RequestError("request contains a lone UTF-16 surrogate", rid)
    if len(obj) > 1 and not _REQUEST_KEYS.issuperset(obj):
        raise RequestError(f"unknown request key {min(obj.keys() - _REQUEST_KEYS)!r}", rid)
    cmd = obj.get("cmd")
    if type(cmd) is not str or not cmd:
        raise RequestError("'cmd' must be a non-empty string", rid)
    args = obj.get("args")
    if args is None:
        args = {}
    elif type(args) is not dict:
        raise RequestError("'args' must be a JSON object", rid)
    return Request(rid, cmd, args)


def parse_json(data: bytes, where: str) -> Any:
    """One JSON document that reaches a command by another way than a request line (the HTTP
    API's body and its JSON-valued query values), held to a line's rules: UTF-8, nesting at
    most ``MAX_DEPTH``, finite numbers, no lone surrogates (SPEC §7.5 on both transports).
    A ``RequestError`` names ``where`` (``args``, ``args.payload``)."""
    try:
        text = data.decode("utf-8").strip(_JSON_SPACE)
    except UnicodeDecodeError as exc:
        raise RequestError(f"{where}: not valid UTF-8 (byte {exc.start})") from None
    if too_deep(data):
        raise RequestError(f"{where}: nests deeper than {MAX_DEPTH} levels")
    try:
        value, end = decode_prefix(text)
    except NonFiniteError as exc:
        path = f"{where}.{exc.path}" if exc.path else where
        raise RequestError(str(NonFiniteError(path, exc.literal))) from None
    except ValueError as exc:
        raise RequestError(f"{where}: invalid JSON ({exc})") from None
    if end != len(text):
        raise RequestError(f"{where}: invalid JSON (extra data at char {end})")
    if "\\u" in text and has_lone_surrogate(value):
        raise RequestError(f"{where}: a string holds a lone UTF-16 surrogate")
    return value


def _line(obj: dict[str, Any]) -> bytes:
    return (_ENCODER.encode(obj) + "\n").encode("utf-8", "backslashreplace")


class RawJSON:
    """A result that is already JSON text (rendered by the same rules): embedded as is."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


def encode_ok(request_id: RequestId, result: Any) -> bytes:
    """``{"id":…,"ok":true,"result":…}\\n``; ``TypeError``/``ValueError`` if not JSON-able."""
    if type(result) is RawJSON:
        rid = str(request_id) if type(request_id) is int else _ENCODER.encode(request_id)
        line = f'{{"id":{rid},"ok":true,"result":{result.text}}}\n'
        return line.encode("utf-8", "backslashreplace")
    return _line({"id": request_id, "ok": True, "result": result})


def encode_error(request_id: RequestId, code: str, message: str) -> bytes:
    """``{"id":…,"ok":false,"error":{"code":…,"message":…}}\\n``."""
    return _line({"id": request_id, "ok": False, "error": {"code": code, "message": message}})


def encode_request(request_id: RequestId, cmd: str, args: dict[str, Any] | None = None) -> bytes:
    """The client side: one request line (used by ``automationctl`` and test helpers)."""
    return _line({"id": request_id, "cmd": cmd, "args": args or {}})
