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
* Under systemd, stderr is a journal stream (``$JOURNAL_STREAM`` names its device and inode):
  every line then starts with its syslog priority, ``<3>`` error … ``<7>`` debug (sd-daemon(3)),
  so ``journalctl -p warning`` shows warnings and worse. Only when the variable matches our
  stderr: a child whose stderr was redirected elsewhere must not print the prefixes.
* The console renderer leaves out keys whose value is ``None`` (``error=None`` says nothing);
  JSON keeps them, a consumer may rely on the key being there.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any, TextIO

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

# sd-daemon(3) priorities, by structlog level name.
PRIORITIES = {
    "debug": 7,
    "info": 6,
    "notice": 5,
    "warning": 4,
    "warn": 4,
    "error": 3,
    "exception": 3,
    "critical": 2,
    "fatal": 2,
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


def journal_stream(env: Mapping[str, str] | None = None, stream: TextIO | None = None) -> bool:
    """True when ``stream`` (stderr) is the journal stream systemd named in ``$JOURNAL_STREAM``
    (``DEVICE:INODE``, compared with the stream's own; sd-daemon(3))."""
    value = (os.environ if env is None else env).get("JOURNAL_STREAM", "")
    dev, sep, ino = value.partition(":")
    if not sep or not dev.isdigit() or not ino.isdigit():
        return False
    try:
        st = os.fstat((sys.stderr if stream is None else stream).fileno())
    except (OSError, ValueError, AttributeError):  # closed, or not a real file (tests)
        return False
    return (st.st_dev, st.st_ino) == (int(dev), int(ino))


def _renderer(fmt: str, journal: bool) -> Processor:
    if fmt == "json":
        render: Processor = structlog.processors.JSONRenderer(
            serializer=json.dumps, separators=(",", ":"), ensure_ascii=False
        )
    elif fmt == "console":
        colors = sys.stderr.isatty() and not journal
        render = structlog.dev.ConsoleRenderer(colors=colors)
    else:
        raise ValueError(f"bad log format {fmt!r} (one of: {', '.join(FORMATS)})")
    return _with_priority(render) if journal else render


def _with_priority(render: Processor) -> Processor:
    """``render``, with each output line prefixed by the event's syslog priority (``<4>``):
    journald reads the prefix and strips it. Every line of a multi-line event (a console
    traceback) gets it, since each becomes its own journal entry."""

    def rendered(logger: Any, method: str, event: MutableMapping[str, Any]) -> str:
        prefix = f"<{PRIORITIES.get(str(event.get('level', method)), 6)}>"
        text = render(logger, method, event)
        assert isinstance(text, str)
        if "\n" not in text:
            return prefix + text
        return "\n".join(prefix + line for line in text.split("\n"))

    return rendered


def _drop_none(logger: Any, method: str, event: MutableMapping[str, Any]) -> Any:
    """Console only: ``key=None`` carries nothing for a person reading the line."""
    for key in [k for k, v in event.items() if v is None]:
        del event[key]
    return event


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
    else:
        procs.append(_drop_none)
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


def configure_logging(fmt: str, level: str, *, journal: bool | None = None) -> None:
    """Configure structlog (and stdlib logging) for the whole process.

    ``fmt`` is ``"json"`` (one compact JSON object per line) or ``"console"`` (aligned,
    coloured when stderr is a terminal); ``level`` is a name such as ``"info"``; ``journal``
    prefixes each line with its syslog priority (default: when stderr is the journal stream).
    Raises ``ValueError`` for an unknown format or level, before changing anything.
    """
    min_level = parse_level(level)
    renderer = _renderer(fmt, journal_stream() if journal is None else journal)
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
