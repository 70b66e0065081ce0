"""structlog set up once: key-value events on stderr, rendered as JSON lines or for a console.

Why this shape:

* The processor chain is chosen here, at configure time, and never re-inspected on the hot path
  (habit 12). ``make_filtering_bound_logger`` turns every method below the level into a no-op,
  so a disabled ``log.debug(...)`` costs one attribute lookup and a call.
* Output goes to stderr: under systemd that is the journal, which adds its own metadata.
* Loggers are cached on first use, so call :func:`configure_logging` once, before the first log
  line. A changed ``log_format``/``log_level`` takes effect at the next start, not on reload.
* Libraries that use stdlib ``logging`` (aiohttp, asyncio) are routed through the same renderer at
  WARNING and above, so the journal sees one format. aiohttp's per-request access log is
  silenced: the metrics endpoint is scraped every few seconds and each line would be noise.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

import structlog
from structlog.typing import Processor

FORMATS = ("json", "console")
_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}

# Marks the root handler this module installed, so a second call replaces it instead of
# stacking a duplicate (tests configure more than once in one process).
_HANDLER_MARK = "_automationd_handler"


def parse_level(level: str) -> int:
    """``"info"`` → ``logging.INFO``; an unknown name is a ``ValueError`` naming it."""
    try:
        return _LEVELS[level.strip().lower()]
    except KeyError:
        raise ValueError(
            f"bad log level {level!r} (one of: debug, info, warning, error, critical)"
        ) from None


def _renderer(fmt: str) -> Processor:
    if fmt == "json":
        return structlog.processors.JSONRenderer(
            serializer=json.dumps, separators=(",", ":"), ensure_ascii=False
        )
    if fmt == "console":
        return structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    raise ValueError(f"bad log format {fmt!r} (one of: {', '.join(FORMATS)})")


def _shared_processors(fmt: str) -> list[Processor]:
    """What every event gets before rendering, for structlog and stdlib records alike."""
    procs: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
    ]
    if fmt == "json":
        # The console renderer formats exceptions itself (and warns if they arrive pre-formatted).
        procs.append(structlog.processors.format_exc_info)
    return procs


def _route_stdlib(fmt: str, renderer: Processor) -> None:
    """Send stdlib ``logging`` records at WARNING+ through ``renderer`` on stderr."""
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.add_logger_name, *_shared_processors(fmt)],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    setattr(handler, _HANDLER_MARK, True)
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _HANDLER_MARK, False)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    access = logging.getLogger("aiohttp.access")
    access.setLevel(logging.CRITICAL + 1)
    access.propagate = False


def configure_logging(fmt: str, level: str) -> None:
    """Configure structlog (and stdlib logging) for the whole process.

    ``fmt`` is ``"json"`` (one compact JSON object per line) or ``"console"`` (aligned,
    coloured when stderr is a terminal); ``level`` is a name such as ``"info"``. Raises
    ``ValueError`` for an unknown format or level, before changing anything.
    """
    min_level = parse_level(level)
    renderer = _renderer(fmt)
    structlog.configure(
        processors=[*_shared_processors(fmt), renderer],
        wrapper_class=structlog.make_filtering_bound_logger(min_level),
        logger_factory=structlog.WriteLoggerFactory(file=sys.stderr),
        context_class=dict,
        cache_logger_on_first_use=True,
    )
    _route_stdlib(fmt, renderer)


def reset_logging() -> None:
    """Undo :func:`configure_logging` (tests only): structlog defaults, our root handler gone."""
    structlog.reset_defaults()
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _HANDLER_MARK, False)]:
        root.removeHandler(old)
    root.setLevel(logging.WARNING)
    access = logging.getLogger("aiohttp.access")
    access.setLevel(logging.NOTSET)
    access.propagate = True


def get_logger(**initial: Any) -> structlog.typing.FilteringBoundLogger:
    """A typed structlog logger (``structlog.get_logger`` returns ``Any``)."""
    logger: structlog.typing.FilteringBoundLogger = structlog.get_logger(**initial)
    return logger
