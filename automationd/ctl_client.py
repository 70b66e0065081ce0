"""``automationctl``'s side of the admin socket: one request, one answer, blocking.

A short-lived CLI, so a plain blocking socket with one overall timeout; every transport
failure becomes ``Unreachable`` (exit 3), whatever the errno.
"""

from __future__ import annotations

import contextlib
import json
import socket
from typing import Any

from automationd.admin.protocol import encode_request

DEFAULT_SOCKET = "/run/automationd/admin.sock"
SOCKET_ENV = "AUTOMATIOND_SOCKET"
TIMEOUT = 30.0


class Unreachable(Exception):
    """The daemon could not be reached, or closed/timed out without answering."""


def call(path: str, cmd: str, args: dict[str, Any], timeout: float = TIMEOUT) -> dict[str, Any]:
    """Send one request and return the response object; ``Unreachable`` on any transport woe."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        try:
            sock.connect(path)
        except OSError as exc:
            raise Unreachable(f"cannot reach the daemon at {path}: {exc.strerror or exc}") from None
        # Refused before we finished writing? Its one-line answer may still be queued for us.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(encode_request(1, cmd, args))
        buf = bytearray()
        while b"\n" not in buf:
            chunk = sock.recv(1 << 16)
            if not chunk:
                raise Unreachable(f"the daemon at {path} closed the connection without answering")
            buf += chunk
    except TimeoutError:
        raise Unreachable(f"no answer from the daemon at {path} within {timeout:g}s") from None
    except ConnectionResetError:
        raise Unreachable(f"the daemon at {path} reset the connection") from None
    finally:
        sock.close()
    resp = json.loads(bytes(buf[: buf.index(b"\n")]))
    if not isinstance(resp, dict):
        raise ValueError("response is not a JSON object")
    return resp
