"""Who and what may touch the admin socket: its file on disk, and the peers that connect.

The file: start-up never weakens or destroys what it did not create. The socket is bound under
umask 0o117, so it is born 0660 with no looser window, then handed to ``admin_group``. An
existing path is removed only when it is a socket we own that nobody answers on (stale from a
crash); a live socket, a symlink, a regular file, a directory or another uid's socket stops
start-up with a message. On exit the path is unlinked only if it is still the inode we bound,
so a successor daemon's socket is never pulled from under it.

The peers: SO_PEERCRED gives the kernel's (pid, uid, gid) of the connecting process. Root, our
own uid and members of ``admin_group`` are allowed, as admins; members of ``user_group`` are
allowed too, as users who see and change only their own jobs (admin/scope.py). Membership is
the primary gid, the ``/etc/group`` member list, or the supplementary groups (SO_PEERGROUPS,
else ``/proc/<pid>/status``), re-read per connection so a changed membership needs no restart.

With ``user_group`` set the socket file must let two groups in: it belongs to ``user_group``
when there is no ``admin_group`` (still 0660), and is 0666 when both are set, SO_PEERCRED
then being the only gate (everyone else is answered ``forbidden``).
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


def resolve_group(name: str, key: str = "admin_group") -> int | None:
    """A group name → gid (``""`` → None); an unknown group is an ``AdminSocketError``."""
    if not name:
        return None
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        raise AdminSocketError(f"{key} {name!r} does not exist") from None


# --- peers -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Peer:
    pid: int
    uid: int
    gid: int
    allowed: bool
    admin: bool = True  # False: a user_group member, who sees and changes only its own jobs


@dataclass(frozen=True, slots=True)
class PeerPolicy:
    """Root, ``own_uid`` and members of ``admin_gid`` (when set) may use the socket as
    admins; members of ``user_gid`` (when set) as users."""

    own_uid: int
    admin_gid: int | None
    user_gid: int | None = None

    def check(self, sock: Any) -> Peer:
        """The peer of a connected Unix socket, and whether (and as what) it may talk to us."""
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _CRED.size)
        pid, uid, gid = _CRED.unpack(raw)
        if uid in (0, self.own_uid) or _member(sock, pid, uid, gid, self.admin_gid):
            return Peer(pid, uid, gid, True)
        user = _member(sock, pid, uid, gid, self.user_gid)
        return Peer(pid, uid, gid, user, admin=False)

    @property
    def socket_mode(self) -> tuple[int, int | None]:
        """The socket file's mode and group (see the module docstring)."""
        if self.user_gid is None:
            return 0o660, self.admin_gid
        if self.admin_gid is None or self.admin_gid == self.user_gid:
            return 0o660, self.user_gid
        return 0o666, self.admin_gid


def _member(sock: Any, pid: int, uid: int, gid: int, group: int | None) -> bool:
    if group is None:
        return False
    if gid == group:
        return True
    with contextlib.suppress(KeyError):
        if pwd.getpwuid(uid).pw_name in grp.getgrgid(group).gr_mem:
            return True
    return group in _peer_groups(sock, pid)


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


def bind_socket(
    path: Path, gid: int | None, mode: int = 0o660
) -> tuple[socket.socket, tuple[int, int]]:
    """Bind a socket at ``path`` (0660, or ``mode``; group ``gid``); returns it and its
    (dev, ino)."""
    if not path.parent.exists():
        dir_mode = 0o750 if mode == 0o660 else 0o755
        path.parent.mkdir(mode=dir_mode, parents=True, exist_ok=True)
        os.chmod(path.parent, dir_mode)
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
        if stat.S_IMODE(st.st_mode) != mode:
            os.chmod(path, mode)
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
