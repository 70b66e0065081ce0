"""The outcome table: exit codes, HTTP statuses and spawn errors map to SPEC §4 kinds."""

from __future__ import annotations

import errno

import pytest

from automationd.core.outcome import classify_exit, classify_spawn_errno, classify_status
from automationd.errors import ErrorKind
from automationd.records import Phase

R, F, RL = ErrorKind.RETRYABLE, ErrorKind.FATAL, ErrorKind.RATE_LIMITED


@pytest.mark.parametrize(
    ("code", "phase", "retryable", "expected"),
    [
        (0, Phase.PERFORM, frozenset(), None),
        (0, Phase.CHECK, frozenset(), None),
        (1, Phase.CHECK, frozenset(), None),
        (1, Phase.PERFORM, frozenset(), F),
        (1, Phase.VERIFY, frozenset(), F),
        (75, Phase.PERFORM, frozenset(), R),
        (75, Phase.CHECK, frozenset(), R),
        (2, Phase.PERFORM, frozenset(), F),
        (2, Phase.PERFORM, frozenset({2, 3}), R),
        (3, Phase.CHECK, frozenset({3}), R),
        (127, Phase.PERFORM, frozenset(), F),
        (-9, Phase.PERFORM, frozenset(), R),
        (-15, Phase.PERFORM, frozenset(), R),
    ],
)
def test_classify_exit(
    code: int, phase: Phase, retryable: frozenset[int], expected: ErrorKind | None
) -> None:
    """Exit 0 (and 1 in check) succeed, 75/listed/signals retry, the rest is fatal."""
    assert classify_exit(code, phase=phase, retryable_codes=retryable) is expected


@pytest.mark.parametrize(
    ("status", "expect", "expected"),
    [
        (200, (), None),
        (201, (), None),
        (204, (), None),
        (299, (), None),
        (100, (), F),
        (301, (), F),
        (304, (), F),
        (304, (304,), None),
        (404, (404,), None),
        (400, (), F),
        (401, (), F),
        (404, (), F),
        (409, (), F),
        (408, (), R),
        (429, (), RL),
        (500, (), R),
        (502, (), R),
        (503, (), R),
        (599, (), R),
    ],
)
def test_classify_status(status: int, expect: tuple[int, ...], expected: ErrorKind | None) -> None:
    """2xx and expected statuses succeed, 429 is rate limited, 408/5xx retry, others fatal."""
    assert classify_status(status, expect) is expected


@pytest.mark.parametrize(
    ("err", "expected"),
    [
        (errno.ENOENT, F),
        (errno.EACCES, F),
        (errno.ENOEXEC, F),
        (errno.ENOTDIR, F),
        (errno.EAGAIN, R),
        (errno.EMFILE, R),
        (errno.ENOMEM, R),
        (None, R),
    ],
)
def test_classify_spawn_errno(err: int | None, expected: ErrorKind) -> None:
    """A missing or non-executable program is fatal; a resource shortage is retryable."""
    assert classify_spawn_errno(err) is expected
