"""Formatting primitives for ``automationctl``'s human output: cells, times, tables.

One time format everywhere: ``2026-12-02 19:32:00Z`` (UTC), or, when stdout is a terminal
and ``--utc`` is not given, local time with its offset (``2026-12-02 20:32:00+01:00``).
Relative times are humanised from the same ``now`` for one whole output (``in 4m``,
``3h ago``), so two columns of one table never disagree about the present.

Long values: a table's last column (where errors go) and a key/value listing's values are
wrapped to the terminal's width when stdout is a terminal, and printed whole when it is not
(a pipe to grep wants one record per line); other cells are cut at 60 characters with ``…``.
``--wide`` prints every cell whole and wraps nothing.

The style of one output (zone, width, now) is a context variable that ``use_style`` sets
once per command, so views stay plain ``result -> str`` functions.
"""

from __future__ import annotations

import datetime as dt
import json
import textwrap
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from automationd.units import parse_rfc3339

_CONTROL = {c: " " for c in range(32)} | {127: " "}
MAX_CELL = 60


@dataclass(frozen=True, slots=True)
class Style:
    """How one command's output is rendered (decided once, in ``ctl.main``)."""

    utc: bool = True  # False: local time with its offset
    wide: bool = False  # print every cell whole, wrap nothing
    width: int | None = None  # wrap long last columns to this many characters (a terminal)
    now: float | None = None  # epoch seconds; None: no relative times


_PLAIN = Style()
_style: ContextVar[Style | None] = ContextVar("automationctl_style", default=None)


def style() -> Style:
    """The current output's style (plain UTC, no wrapping, outside ``use_style``)."""
    return _style.get() or _PLAIN


@contextmanager
def use_style(s: Style) -> Iterator[None]:
    token = _style.set(s)
    try:
        yield
    finally:
        _style.reset(token)


def cell(value: Any, width: int = MAX_CELL) -> str:
    """One table cell: ``-`` for null, compact JSON for containers, control chars flattened,
    cut at ``width`` with ``…`` unless ``--wide``."""
    if value is None or value == "":
        text = "-"
    elif isinstance(value, bool):
        text = "yes" if value else "no"
    elif isinstance(value, float):
        text = f"{value:.1f}" if abs(value) < 1e6 else f"{value:.3g}"
    elif isinstance(value, dict | list):
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    else:
        text = str(value)
    text = text.translate(_CONTROL)
    if len(text) <= width or style().wide:
        return text
    return text[: width - 1] + "…"


def whole(value: Any) -> str:
    """A cell that is never cut (wrapped instead, where it is the last column)."""
    return cell(value, 1 << 30)


# --- times -------------------------------------------------------------------------------------


def epoch(value: Any) -> float | None:
    """RFC 3339 text or epoch seconds → epoch seconds; None for anything else."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    try:
        return parse_rfc3339(value)
    except ValueError:
        return None


def clock_time(ts: float, zone: dt.tzinfo | None = None) -> str:
    """Epoch seconds → ``2026-12-02 19:32:00Z``, in ``zone`` (default: the output's style)."""
    if zone is None and style().utc:
        zone = dt.UTC
    d = dt.datetime.fromtimestamp(ts, zone) if zone is not None else _local(ts)
    offset = d.utcoffset()
    text = d.strftime("%Y-%m-%d %H:%M:%S")
    if not offset:
        return text + "Z"
    total = int(offset.total_seconds())
    sign, total = ("-", -total) if total < 0 else ("+", total)
    return f"{text}{sign}{total // 3600:02d}:{total % 3600 // 60:02d}"


def _local(ts: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(ts, dt.UTC).astimezone()


def span(seconds: float) -> str:
    """A humanised length of time, two units at most: ``45s``, ``4m``, ``2h15m``, ``3d4h``."""
    s = int(abs(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m"
    if s < 86400:
        h, m = divmod(s // 60, 60)
        return f"{h}h{m}m" if m and h < 10 else f"{h}h"
    d, h = divmod(s // 3600, 24)
    return f"{d}d{h}h" if h and d < 10 else f"{d}d"


def relative(ts: float, now: float) -> str:
    """``in 4m``, ``3h ago`` or ``now`` (within a second)."""
    delta = ts - now
    if abs(delta) < 1:
        return "now"
    return f"in {span(delta)}" if delta > 0 else f"{span(delta)} ago"


def when(value: Any, rel: bool = False) -> str:
    """An RFC 3339 string (or epoch seconds) in the output's time format, with the relative
    time in brackets when ``rel`` (``2026-12-02 19:32:00Z (in 4m)``); ``-`` for null."""
    ts = epoch(value)
    if ts is None:
        return cell(value)
    text = clock_time(ts)
    now = style().now
    if rel and now is not None:
        text += f" ({relative(ts, now)})"
    return text


# --- blocks ------------------------------------------------------------------------------------


def _wrap(text: str, width: int) -> list[str]:
    """Long prose (an error) folded to ``width``; a short value (a time, a state) is left
    whole even where it overflows: cut in three it would be harder to read, not easier."""
    if style().wide or style().width is None or len(text) <= max(width, 40):
        return [text]
    return textwrap.wrap(text, max(width, 30), break_on_hyphens=False) or [text]


def table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """Left-aligned columns two spaces apart; the last column is not padded, and wraps to the
    terminal's width under its own start (long errors stay readable, never cut)."""
    body = [list(r) for r in rows]
    if not body:
        return "(none)\n"
    widths = [max(len(h), *(len(r[i]) for r in body)) for i, h in enumerate(headers)]
    indent = sum(widths[:-1]) + 2 * (len(widths) - 1)
    room = (style().width or 0) - indent
    lines = []
    for r in [list(headers), *body]:
        head = "".join(v.ljust(w) + "  " for v, w in zip(r[:-1], widths[:-1], strict=True))
        first, *rest = _wrap(r[-1], room)
        lines.append((head + first).rstrip())
        lines.extend(" " * indent + more for more in rest)
    return "\n".join(lines) + "\n"


def keyvalues(pairs: Iterable[tuple[str, Any]]) -> str:
    """``key  value`` lines, keys padded to one width; long values wrap under themselves."""
    items = [(k, v if isinstance(v, str) else whole(v)) for k, v in pairs]
    if not items:
        return ""
    width = max(len(k) for k, _ in items)
    room = (style().width or 0) - width - 2
    out = []
    for k, v in items:
        first, *rest = _wrap(v, room)
        out.append(f"{k.ljust(width)}  {first}\n")
        out.extend(f"{' ' * (width + 2)}{more}\n" for more in rest)
    return "".join(out)
