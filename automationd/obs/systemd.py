"""sd_notify without libsystemd: READY/RELOADING/STOPPING/STATUS/WATCHDOG over a datagram socket.

Theory of operation:

* systemd passes ``NOTIFY_SOCKET`` (a path, or ``@name`` for an abstract socket) and, when the
  unit has ``WatchdogSec=``, ``WATCHDOG_USEC`` (plus ``WATCHDOG_PID`` naming the process it is
  meant for). A notification is one datagram of ``KEY=value`` lines.
* Notifying must never take the daemon down: sends are non-blocking, errors are logged once and
  swallowed. Without ``NOTIFY_SOCKET`` every method is a cheap no-op, so callers never branch.
* The watchdog is a *liveness* signal, so :func:`run_watchdog` pings only while the event loop
  keeps its timing and the daemon's own health check passes. A stalled loop or a dead store then
  leads systemd to restart us (``Restart=on-failure``), which is the point of the watchdog.
* These variables are meant for this process only. A job started with them would confuse
  systemd (a child sending ``READY=1`` or pinging the watchdog for a wedged parent). Use
  :func:`scrub_env` for child environments and :func:`forget_env` on ``os.environ`` right after
  :meth:`Notifier.from_env` has read it.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Mapping, MutableMapping

import structlog

from automationd.clock import Clock, SystemClock

log = structlog.get_logger()

# Variables systemd hands to the main process only; no child may inherit them.
PRIVATE_ENV_KEYS = frozenset(
    {
        "NOTIFY_SOCKET",
        "WATCHDOG_USEC",
        "WATCHDOG_PID",
        "CREDENTIALS_DIRECTORY",
        "LISTEN_FDS",
        "LISTEN_PID",
        "LISTEN_FDNAMES",
    }
)


def scrub_env(environ: Mapping[str, str]) -> dict[str, str]:
    """A copy of ``environ`` without the systemd variables meant for the daemon alone.

    The daemon should also remove them from its own ``os.environ`` (see :func:`forget_env`)
    once :meth:`Notifier.from_env` has read them, so that no child process, library or
    ``subprocess`` call made without an explicit ``env=`` ever inherits them.
    """
    return {k: v for k, v in environ.items() if k not in PRIVATE_ENV_KEYS}


def forget_env(environ: MutableMapping[str, str]) -> None:
    """Remove the daemon-only systemd variables from ``environ`` in place (use on os.environ)."""
    for key in PRIVATE_ENV_KEYS:
        environ.pop(key, None)


def _socket_address(value: str) -> str | None:
    """``NOTIFY_SOCKET`` → the address ``sendto`` takes; ``None`` if unusable."""
    if value.startswith("@"):
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    return None  # e.g. "vsock:…" (systemd ≥ 254); not needed for a host daemon


class Notifier:
    """Sends sd_notify datagrams to ``address``; a no-op when ``address`` is ``None``."""

    def __init__(
        self,
        address: str | None,
        *,
        watchdog_usec: int | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.address = address
        self.watchdog_usec = watchdog_usec if watchdog_usec and watchdog_usec > 0 else None
        self._clock: Clock = clock or SystemClock()
        self._sock: socket.socket | None = None
        self._failing = False

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str],
        *,
        pid: int | None = None,
        clock: Clock | None = None,
    ) -> Notifier:
        """Read ``NOTIFY_SOCKET``/``WATCHDOG_USEC``/``WATCHDOG_PID`` from ``environ``.

        The watchdog is armed only when ``WATCHDOG_PID`` is unset or equals our pid: a value
        inherited from a parent service names that parent, not us.
        """
        raw = environ.get("NOTIFY_SOCKET", "")
        address = _socket_address(raw) if raw else None
        if raw and address is None:
            log.warning("systemd.notify_socket_unsupported", notify_socket=raw)
        usec: int | None = None
        wd_pid = environ.get("WATCHDOG_PID", "")
        my_pid = os.getpid() if pid is None else pid
        if not wd_pid or wd_pid == str(my_pid):
            try:
                usec = int(environ.get("WATCHDOG_USEC", "") or 0) or None
            except ValueError:
                log.warning("systemd.watchdog_usec_invalid", value=environ.get("WATCHDOG_USEC"))
        return cls(address, watchdog_usec=usec, clock=clock)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    @property
    def watchdog_interval(self) -> float | None:
        """Seconds between pings: half of ``WATCHDOG_USEC`` (as sd_watchdog_enabled advises)."""
        if self.watchdog_usec is None or self.address is None:
            return None
        return self.watchdog_usec / 2 / 1_000_000

    def notify(self, **fields: object) -> bool:
        """Send one datagram of ``KEY=value`` lines; True if it was handed to the kernel.

        Values are made single-line (systemd reads a newline as the start of the next field).
        """
        if self.address is None or not fields:
            return False
        text = "\n".join(f"{k}={str(v).replace(chr(10), ' ')}" for k, v in fields.items())
        try:
            if self._sock is None:
                self._sock = socket.socket(
                    socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK
                )
            self._sock.sendto(text.encode(), self.address)
        except OSError as exc:
            if not self._failing:
                self._failing = True
                log.warning(
                    "systemd.notify_failed",
                    notify_socket=self._display_address(),
                    error=str(exc),
                    fields=sorted(fields),
                )
            return False
        if self._failing:
            self._failing = False
            log.info("systemd.notify_recovered", notify_socket=self._display_address())
        return True

    def ready(self, status: str | None = None) -> bool:
        """``READY=1``: start-up is complete (also sent after a reload finishes)."""
        if status is None:
            return self.notify(READY=1)
        return self.notify(READY=1, STATUS=status)

    def reloading(self) -> bool:
        """``RELOADING=1`` with ``MONOTONIC_USEC`` (systemd ≥ 253 requires it for notify-reload)."""
        usec = int(self._clock.monotonic() * 1_000_000)
        return self.notify(RELOADING=1, MONOTONIC_USEC=usec)

    def stopping(self) -> bool:
        """``STOPPING=1``: shutdown has begun; systemd waits for exit up to TimeoutStopSec."""
        return self.notify(STOPPING=1)

    def status(self, text: str) -> bool:
        """``STATUS=…``: one line shown by ``systemctl status``."""
        return self.notify(STATUS=text)

    def watchdog(self) -> bool:
        """``WATCHDOG=1``: we are alive; call at :attr:`watchdog_interval`."""
        return self.notify(WATCHDOG=1)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _display_address(self) -> str | None:
        if self.address is not None and self.address.startswith("\0"):
            return "@" + self.address[1:]
        return self.address


async def run_watchdog(notifier: Notifier, clock: Clock, health: Callable[[], bool]) -> None:
    """Ping ``WATCHDOG=1`` every :attr:`Notifier.watchdog_interval` while we are healthy.

    A tick is skipped (no ping) when the loop overslept the tick by more than one interval,
    because a loop that late is not serving timers, admin requests or runs on time, or when
    ``health()`` is false or raises. Returns at once if the watchdog is not armed; otherwise runs
    until cancelled. Skips are logged on the change from pinging to not pinging and back.
    """
    interval = notifier.watchdog_interval
    if interval is None:
        return
    wd_log = log.bind(interval_s=interval)
    wd_log.info("systemd.watchdog_started")
    notifier.watchdog()
    skipping: str | None = None
    deadline = clock.monotonic() + interval
    while True:
        await clock.sleep_until(deadline)
        now = clock.monotonic()
        lag = now - deadline
        deadline = now + interval
        reason: str | None = None
        if lag > interval:
            reason = "loop_lag"
        else:
            try:
                if not health():
                    reason = "unhealthy"
            except Exception as exc:
                reason = f"health_error: {exc!r}"
        if reason is None:
            notifier.watchdog()
            if skipping is not None:
                wd_log.info("systemd.watchdog_resumed", after=skipping)
                skipping = None
        elif reason != skipping:
            wd_log.warning("systemd.watchdog_skipped", reason=reason, lag_s=round(lag, 3))
            skipping = reason
