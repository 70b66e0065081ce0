"""Who and what may touch the admin socket: its file on disk, and the peers that connect.

The file: start-up never weakens or destroys what it did not create. The socket is bound under
umask 0o117, so it is born 0660 with no looser window, then handed to ``admin_group``. An
existing path is removed only when it is a socket we own that nobody answers on (stale from a
crash); a live socket, a symlink, a regular file, a directory or another uid's socket stops
start-up with a message. On exit the path is unlinked only if it is still the inode we bound,
so a successor daemon's socket is never pulled from under it.

The peers: SO_PEERCRED gives the kernel's (pid, uid, gid) of the connecting process. Root, our
own uid and members of ``admin_group`` are allowed. Membership is the primary gid, the
``/etc/group`` member list, or the supplementary groups (SO_PEERGROUPS, else
``/proc/<pid>/status``), re-read per connection so a changed membership needs no restart.
"""

from __future__ import annotations

import contextlib
import errno
import grp
import os
import pwd
import socket
import stat
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from automationd.errors import AutomationdError
from automationd.obs.logs import get_logger

log = get_logger()

_CRED = struct.Struct("3i")
_SO_PEERGROUPS = getattr(socket, "SO_PEERGROUPS", 59)  # Linux >= 4.13; not exported by 3.11


class AdminSocketError(AutomationdError):
    """The admin socket cannot be set up safely (start-up fails; exit code 1)."""

    exit_code = 1


def resolve_group(name: str) -> int | None:
    """``admin_group`` → gid (``""`` → None); an unknown group is an ``AdminSocketError``."""
    if not name:
        return None
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        raise AdminSocketError(f"admin_group {name!r} does not exist") from None


# --- peers -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Peer:
    pid: int
    uid: int
    gid: int
    allowed: bool


@dataclass(frozen=True, slots=True)
class PeerPolicy:
    """Root, ``own_uid`` and members of ``admin_gid`` (when set) may use the socket."""

    own_uid: int
    admin_gid: int | None

    def check(self, sock: Any) -> Peer:
        """The peer of a connected Unix socket, and whether it may talk to us."""
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _CRED.size)
        pid, uid, gid = _CRED.unpack(raw)
        return Peer(pid, uid, gid, self._allows(sock, pid, uid, gid))

    def _allows(self, sock: Any, pid: int, uid: int, gid: int) -> bool:
        if uid in (0, self.own_uid):
            return True
        if self.admin_gid is None:
            return False
        if gid == self.admin_gid:
            return True
        with contextlib.suppress(KeyError):
            if pwd.getpwuid(uid).pw_name in grp.getgrgid(self.admin_gid).gr_mem:
                return True
        return self.admin_gid in _peer_groups(sock, pid)


def user_name(uid: int) -> str | None:
    """The login name of ``uid`` (None for a uid without a passwd entry)."""
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return None


def _peer_groups(sock: Any, pid: int) -> set[int]:
    """Supplementary groups of the peer: SO_PEERGROUPS, else ``/proc/<pid>/status``."""
    with contextlib.suppress(OSError):
        raw = sock.getsockopt(socket.SOL_SOCKET, _SO_PEERGROUPS, 4 * 1024)
        return set(struct.unpack(f"{len(raw) // 4}I", raw[: len(raw) // 4 * 4]))
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("Groups:"):
                    return {int(g) for g in line.split()[1:]}
    except (OSError, ValueError):
        pass
    return set()


# --- the socket file ---------------------------------------------------------------------------


def clear_path(path: Path, own_uid: int) -> None:
    """Make ``path`` free for bind, removing only a stale socket of ours."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    what = f"admin socket path {str(path)!r}"
    if stat.S_ISLNK(st.st_mode):
        raise AdminSocketError(f"{what} is a symlink; refusing to touch it")
    if not stat.S_ISSOCK(st.st_mode):
        kind = "directory" if stat.S_ISDIR(st.st_mode) else "file that is not a socket"
        raise AdminSocketError(f"{what} exists and is a {kind}; refusing to remove it")
    if st.st_uid != own_uid:
        raise AdminSocketError(f"{what} is a socket owned by uid {st.st_uid}; refusing it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.setblocking(False)
    try:
        probe.connect(str(path))
    except ConnectionRefusedError:
        os.unlink(path)  # stale: left behind by a daemon that died
        log.info("admin.stale_socket_removed", path=str(path))
        return
    except BlockingIOError:
        pass  # backlog full: someone is listening
    except OSError as exc:
        raise AdminSocketError(f"cannot probe {what}: {exc.strerror}") from None
    finally:
        probe.close()
    raise AdminSocketError(f"another daemon is listening on {str(path)!r}")


def bind_socket(path: Path, gid: int | None) -> tuple[socket.socket, tuple[int, int]]:
    """Bind a 0660 socket at ``path`` (group ``gid``); returns it and its (dev, ino)."""
    if not path.parent.exists():
        path.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
        os.chmod(path.parent, 0o750)
        if gid is not None:
            os.chown(path.parent, -1, gid)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        old = os.umask(0o117)
        try:
            sock.bind(str(path))
        finally:
            os.umask(old)
        st = os.lstat(path)
        if stat.S_IMODE(st.st_mode) != 0o660:
            os.chmod(path, 0o660)
        if gid is not None:
            os.chown(path, -1, gid, follow_symlinks=False)
    except OSError as exc:
        sock.close()
        reason = "address in use" if exc.errno == errno.EADDRINUSE else exc.strerror or str(exc)
        raise AdminSocketError(f"cannot create admin socket {str(path)!r}: {reason}") from None
    return sock, (st.st_dev, st.st_ino)


def unlink_if_ours(path: Path, ident: tuple[int, int]) -> None:
    """Remove ``path`` only if it is still the socket (dev, ino) we bound."""
    with contextlib.suppress(OSError):
        st = os.lstat(path)
        if (st.st_dev, st.st_ino) == ident:
            os.unlink(path)
