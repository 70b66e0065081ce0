"""An online backup of the SQLite store: ``VACUUM INTO`` a new file, then publish it.

Rules:
- The copy is one read transaction on a connection of its own, so it is a consistent
  snapshot and the writer keeps committing meanwhile (WAL readers never block the writer).
- The file is built under a temporary name next to the target, created empty with mode 0600
  first (``VACUUM INTO`` accepts an empty file; job specs may hold secrets), fsynced, then
  linked to the target name, which must not exist: a backup never replaces a file. A
  failure leaves no partial file behind.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path

from automationd.errors import AdminError, StoreError
from automationd.store.sqlite.sql import store_error


def backup_into(db: Path, target: Path) -> int:
    """Copy ``db`` into the new file ``target``; returns its size in bytes."""
    if not target.is_absolute():
        raise AdminError("bad_request", f"args.path: {str(target)!r} is not an absolute path")
    if not target.parent.is_dir():
        raise AdminError("bad_request", f"args.path: no directory {str(target.parent)!r}")
    if os.path.lexists(target):
        raise AdminError("conflict", f"{str(target)!r} exists; a backup never overwrites a file")
    tmp = target.with_name(f".{target.name}.{os.getpid()}.partial")
    try:
        fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except OSError as exc:
        raise StoreError(f"backup: cannot create {tmp}: {exc.strerror}", kind="io") from None
    os.close(fd)
    try:
        conn = sqlite3.connect(db, timeout=5.0)
        try:
            conn.execute("VACUUM INTO ?", (str(tmp),))
        except sqlite3.Error as exc:
            raise store_error(exc, "backup") from exc
        finally:
            conn.close()
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, target)  # no-clobber: fails if the target appeared meanwhile
        except FileExistsError:
            raise AdminError("conflict", f"{str(target)!r} exists") from None
        except OSError as exc:
            raise StoreError(f"backup: cannot create {target}: {exc.strerror}", kind="io") from None
        _fsync_dir(target.parent)
        return target.stat().st_size
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
