"""The state directory's exclusive lock: one daemon per ``state_dir``.

Two daemons writing one SQLite file would each believe their in-memory view (timer wheel,
running attempts, crash recovery) is the truth, so the second one must refuse to start. We use
``flock(LOCK_EX | LOCK_NB)`` on ``state_dir/automationd.lock`` because the kernel drops it when
the process dies (even on ``kill -9``), so a crash never leaves a stale lock behind. The file is
never deleted: unlinking a lock file races with a process that has it open.

The holder writes its pid into the file only so the refusal message can name it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from automationd.errors import LockedError

LOCK_NAME = "automationd.lock"


class StateDirLock:
    """An acquired lock; hold it for the process lifetime and ``release()`` on close."""

    __slots__ = ("_fd", "path")

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, state_dir: Path) -> StateDirLock:
        """Take the lock or raise ``LockedError`` naming the directory and the holder's pid."""
        path = state_dir / LOCK_NAME
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            raise LockedError(
                f"state directory {state_dir} is locked by another automationd (pid {holder})"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return cls(path, fd)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        """Drop the lock (idempotent). The pid is cleared so a stale number never misleads."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _read_pid(fd: int) -> str:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return "unknown"
    return text if text.isdigit() else "unknown"
