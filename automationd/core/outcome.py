"""The one table of truths: exit codes, HTTP statuses and spawn errors → ``ErrorKind``.

``None`` means success. Actions raise; they never decide what a code means themselves, so
the rules of SPEC §5 live here, in one place a unit test can walk.

Rules:
- exec: 0 succeeds; in the check phase 1 also succeeds (it means "skip"); 75 (EX_TEMPFAIL)
  and codes the job lists as retryable are retryable; a child killed by a signal (negative
  code) is retryable, because something outside the program ended it (OOM killer, operator);
  every other code is fatal.
- http: 2xx and the job's ``expect`` statuses succeed; 429 is rate limited; 408 and 5xx are
  retryable; everything else (1xx, 3xx when redirects are not followed, other 4xx) is fatal.
- spawn: errors that a retry cannot fix (missing file, no permission, not executable) are
  fatal; resource shortages (EAGAIN, EMFILE, ENOMEM, ...) are retryable.
"""

from __future__ import annotations

import errno

from automationd.errors import ErrorKind
from automationd.records import Phase

EX_TEMPFAIL = 75
CHECK_SKIP_CODE = 1

_FATAL_SPAWN_ERRNOS = frozenset(
    {
        errno.ENOENT,
        errno.EACCES,
        errno.EPERM,
        errno.ENOTDIR,
        errno.EISDIR,
        errno.ENOEXEC,
        errno.ELOOP,
        errno.ENAMETOOLONG,
        errno.E2BIG,
    }
)


def classify_exit(code: int, *, phase: Phase, retryable_codes: frozenset[int]) -> ErrorKind | None:
    """Kind of failure for an exec action's exit code, or None when it succeeded."""
    if code == 0 or (code == CHECK_SKIP_CODE and phase is Phase.CHECK):
        return None
    if code == EX_TEMPFAIL or code in retryable_codes or code < 0:
        return ErrorKind.RETRYABLE
    return ErrorKind.FATAL


def classify_status(status: int, expect: tuple[int, ...]) -> ErrorKind | None:
    """Kind of failure for an HTTP status, or None when it counts as success."""
    if 200 <= status <= 299 or status in expect:
        return None
    if status == 429:
        return ErrorKind.RATE_LIMITED
    if status == 408 or 500 <= status <= 599:
        return ErrorKind.RETRYABLE
    return ErrorKind.FATAL


def classify_spawn_errno(err: int | None) -> ErrorKind:
    """Kind of failure when a child process could not be started at all."""
    return ErrorKind.FATAL if err in _FATAL_SPAWN_ERRNOS else ErrorKind.RETRYABLE
