"""http actions: one request per attempt, status classified by ``core/outcome``.

- ``${...}`` references in the url, header values and string values of ``json`` are compiled
  once per job (``core/template``). Values put into the url are percent-encoded (``/``
  included), so a target cannot change the path it lands in; a header value that comes out
  holding CR or LF is refused, so a target cannot add headers.
- Every request carries ``Idempotency-Key: <ctx.idempotency_key>`` (unless the job sets that
  header itself), so a retried POST can be recognised by the API.
- Redirects are not followed unless ``follow_redirects``; a 3xx is then fatal with a message
  saying so. TLS is verified (aiohttp's default context).
- The body is read incrementally and cut at ``BODY_CAP`` bytes counted after decompression,
  so a small gzip bomb cannot fill memory. A JSON body (by content type) becomes the value;
  any other body is the value as text, and so is JSON a store cannot hold (``1e999``, ``NaN``,
  lone surrogates: automationd/strictjson.py), with a note on ``stderr``. The start of the
  body is kept as the attempt's ``stdout``; a cut is noted on ``stderr``.
"""

from __future__ import annotations

import asyncio
import codecs
from typing import Any
from urllib.parse import quote

import aiohttp
from yarl import URL

from automationd import strictjson
from automationd.actions.base import OUTPUT_CAP, ActionContext, ActionResult, HttpClients, Output
from automationd.actions.base import phase_result as _phase_result
from automationd.clock import Clock
from automationd.config.model import HttpAction
from automationd.core.backoff import parse_retry_after
from automationd.core.outcome import classify_status
from automationd.core.template import (
    JsonTemplate,
    Scope,
    Template,
    compile_json,
    compile_template,
)
from automationd.errors import ActionError, ErrorKind

BODY_CAP = 1024 * 1024  # bytes of (decompressed) body kept
_READ_CHUNK = 64 * 1024
_SNIPPET = 300  # characters of an error body quoted in the error message


def _quote_segment(text: str) -> str:
    return quote(text, safe="")


def _is_json(content_type: str) -> bool:
    return content_type == "application/json" or content_type.endswith("+json")


def _decode(body: bytes, charset: str | None) -> str:
    try:
        codec = codecs.lookup(charset or "utf-8").name
    except LookupError:
        codec = "utf-8"
    return body.decode(codec, "replace")


def _shown(url: URL) -> str:
    """The url for messages and logs: no credentials, no query (it may hold API keys)."""
    return str(url.with_user(None).with_query(None).with_fragment(None))


async def _read_capped(resp: aiohttp.ClientResponse) -> tuple[bytes, bool]:
    """Up to ``BODY_CAP`` bytes of the decompressed body, and whether more was cut off."""
    buf = bytearray()
    async for chunk in resp.content.iter_chunked(_READ_CHUNK):
        room = BODY_CAP - len(buf)
        if len(chunk) > room:
            buf += chunk[:room]
            resp.close()  # drop the connection rather than drain the rest
            return bytes(buf), True
        buf += chunk
    return bytes(buf), False


class HttpRunner:
    """An http action, built once per job."""

    __slots__ = (
        "_body",
        "_clients",
        "_clock",
        "_expect",
        "_follow",
        "_headers",
        "_json",
        "_method",
        "_own_key",
        "_url",
    )

    def __init__(self, spec: HttpAction, *, clients: HttpClients, clock: Clock) -> None:
        self._method = spec.method.upper()
        self._url: Template = compile_template(spec.url)
        self._headers: tuple[tuple[str, Template], ...] = tuple(
            (name, compile_template(value)) for name, value in spec.headers.items()
        )
        self._own_key = any(name.lower() == "idempotency-key" for name in spec.headers)
        self._json: JsonTemplate | None = compile_json(spec.json) if spec.json is not None else None
        self._body = spec.body
        self._expect = tuple(spec.expect)
        self._follow = spec.follow_redirects
        self._clients = clients
        self._clock = clock

    def _render(self, ctx: ActionContext) -> tuple[URL, dict[str, str], Any]:
        scope: Scope = {
            "job": ctx.job,
            "run_id": ctx.run_id,
            "target": ctx.target,
            "payload": ctx.payload,
        }
        try:
            url = URL(self._url.render(scope, quote=_quote_segment))
            headers: dict[str, str] = {}
            if not self._own_key:
                headers["Idempotency-Key"] = ctx.idempotency_key
            for name, template in self._headers:
                value = template.render(scope)
                if "\r" in value or "\n" in value:
                    raise ActionError(
                        f"http: header {name!r} would contain a line break; refused",
                        kind=ErrorKind.FATAL,
                    )
                headers[name] = value
            body = self._json.render(scope) if self._json is not None else None
        except ValueError as exc:  # TemplateError, or a url yarl cannot parse
            raise ActionError(f"http: {exc}", kind=ErrorKind.FATAL) from exc
        return url, headers, body

    async def __call__(self, ctx: ActionContext) -> ActionResult:
        url, headers, json_body = self._render(ctx)
        session = self._clients.session(ctx.service)
        shown = _shown(url)
        timer = asyncio.timeout(ctx.timeout)
        try:
            async with (
                timer,
                session.request(
                    self._method,
                    url,
                    headers=headers,
                    json=json_body,
                    data=self._body if json_body is None else None,
                    allow_redirects=self._follow,
                ) as resp,
            ):
                if ctx.on_http_response is not None:
                    for r in (*resp.history, resp):
                        ctx.on_http_response(r.status, r.headers)
                body, truncated = await _read_capped(resp)
        except TimeoutError as exc:
            raise ActionError(
                f"http: {self._method} {shown} timed out after {ctx.timeout:g}s",
                kind=ErrorKind.TIMEOUT,
            ) from exc
        except aiohttp.TooManyRedirects as exc:
            raise ActionError(
                f"http: {self._method} {shown}: too many redirects", kind=ErrorKind.FATAL
            ) from exc
        except aiohttp.InvalidURL as exc:
            raise ActionError(f"http: invalid url {shown!r}: {exc}", kind=ErrorKind.FATAL) from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise ActionError(
                f"http: {self._method} {shown}: {type(exc).__name__}: {exc}",
                kind=ErrorKind.RETRYABLE,
            ) from exc
        except ValueError as exc:  # aiohttp refuses a malformed request before sending it
            raise ActionError(f"http: {self._method} {shown}: {exc}", kind=ErrorKind.FATAL) from exc
        return self._outcome(ctx, resp, shown, body, truncated)

    def _outcome(
        self,
        ctx: ActionContext,
        resp: aiohttp.ClientResponse,
        shown: str,
        body: bytes,
        truncated: bool,
    ) -> ActionResult:
        status = resp.status
        text = _decode(body, resp.charset)
        output = _output(body, resp.charset, truncated)
        if truncated:
            ctx.log.warning("http.body_truncated", status=status, cap=BODY_CAP)
        kind = classify_status(status, self._expect)
        if kind is None:
            value: Any = text if body else None
            if body and not truncated and _is_json(resp.content_type):
                try:
                    value = strictjson.loads(body)
                except ValueError as exc:  # not JSON, or JSON no store can hold (1e999)
                    value = text
                    note = f"automationd: response body kept as text: {exc}"
                    output = (*output, ("stderr", note))
            return _phase_result(ctx.phase, value, output=output)
        retry_after = None
        if kind is ErrorKind.RATE_LIMITED:
            header = resp.headers.get("Retry-After")
            if header is not None:
                retry_after = parse_retry_after(header, self._clock.time())
        if 300 <= status <= 399:
            where = resp.headers.get("Location", "?")
            message = (
                f"http: {self._method} {shown} answered {status} redirect to {where!r}; "
                "not followed (set follow_redirects = true to follow redirects)"
            )
        else:
            message = f"http: {self._method} {shown} answered {status} {resp.reason or ''}".rstrip()
            snippet = " ".join(text[:_SNIPPET].split())
            if snippet:
                message = f"{message}: {snippet}"
        raise ActionError(message, kind=kind, retry_after=retry_after, output=output)


def _output(body: bytes, charset: str | None, truncated: bool) -> Output:
    streams: list[tuple[str, str]] = []
    if body:
        head = body[:OUTPUT_CAP]
        streams.append(("stdout", _decode(head, charset)))
    if truncated:
        streams.append(("stderr", f"automationd: response body cut at {BODY_CAP} bytes"))
    return tuple(streams)
