"""The error hierarchy, mapped to exit codes and admin error codes at the edges.

    AutomationdError
    ├── ConfigError        exit code 2; message is "FILE: dotted.key: problem"
    ├── ActionError        carries kind (ErrorKind) and retry_after
    │   ├── RetryableError (public: python actions raise it)
    │   └── FatalError     (public)
    ├── StoreError         the database failed or is unusable
    ├── LockedError        another daemon owns the state directory (exit code 1)
    └── AdminError         carries the protocol error code (bad_request, not_found, ...)

Foreign exceptions (aiohttp, OSError, subprocess) are converted inside ``actions/*`` with
``raise ... from exc`` so that no foreign type reaches the engine.
"""

from __future__ import annotations

import enum


class ErrorKind(enum.StrEnum):
    """Why an attempt failed (SPEC §4). Decides whether and how it is retried."""

    RETRYABLE = "retryable"
    FATAL = "fatal"
    TIMEOUT = "timeout"
    RATE_LIMITED = "rate_limited"
    BREAKER_OPEN = "breaker_open"
    INTERRUPTED = "interrupted"
    CANCELLED = "cancelled"
    STALE = "stale"  # an apply whose preview no longer holds (SPEC §7.2); never retried

    @property
    def retryable(self) -> bool:
        return self not in (ErrorKind.FATAL, ErrorKind.CANCELLED, ErrorKind.STALE)


class AutomationdError(Exception):
    """Base of every error automationd raises on purpose."""


class ConfigError(AutomationdError):
    """The configuration is invalid; the message is one line naming file, key and problem."""

    exit_code = 2


class ActionError(AutomationdError):
    """An action attempt failed with a classified kind."""

    kind: ErrorKind = ErrorKind.RETRYABLE
    #: captured ``(stream, text)`` pairs, persisted even though the attempt failed
    output: tuple[tuple[str, str], ...] = ()

    def __init__(
        self,
        message: str,
        *,
        kind: ErrorKind | None = None,
        retry_after: float | None = None,
        output: tuple[tuple[str, str], ...] = (),
    ) -> None:
        super().__init__(message)
        self.message = message
        if kind is not None:
            self.kind = kind
        self.retry_after = retry_after
        self.output = output


class RetryableError(ActionError):
    """Raise from a python action to ask for a retry, optionally after ``retry_after`` seconds."""

    kind = ErrorKind.RETRYABLE

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(
            message,
            kind=ErrorKind.RATE_LIMITED if retry_after is not None else ErrorKind.RETRYABLE,
            retry_after=retry_after,
        )


class FatalError(ActionError):
    """Raise from a python action when retrying cannot help."""

    kind = ErrorKind.FATAL

    def __init__(self, message: str) -> None:
        super().__init__(message, kind=ErrorKind.FATAL)


class StoreError(AutomationdError):
    """The store failed, is locked by another process, or is newer than this code.

    ``kind`` says what an operator can do about it: ``disk_full``, ``io``, ``read_only``,
    ``busy``, ``corrupt``, ``closed`` (the daemon is stopping) or ``other``. The admin socket
    answers every kind ``unavailable``: the request was fine, the store could not take it.
    """

    def __init__(self, message: str, *, kind: str = "other", reason: str | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        # what an answer, /healthz and status say ("store: disk full"); the message keeps
        # the driver's words for the log
        self.reason = reason or message


class LockedError(StoreError):
    """Another daemon holds the state directory's lock."""

    exit_code = 1


class AdminError(AutomationdError):
    """An admin request failed; ``code`` is one of the SPEC §3 error codes."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def bad_request(message: str) -> AdminError:
    return AdminError("bad_request", message)


def not_found(message: str) -> AdminError:
    return AdminError("not_found", message)


def conflict(message: str) -> AdminError:
    return AdminError("conflict", message)


def forbidden(message: str) -> AdminError:
    return AdminError("forbidden", message)


def unavailable(message: str) -> AdminError:
    return AdminError("unavailable", message)
