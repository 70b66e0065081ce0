"""Who may use the web console: the secret token, one-time login codes, sessions, and the
limit on wrong guesses.

Rules:
- The secret token lives in ``state_dir/web.token`` (mode 0600), made at the first start with
  the console on and kept across restarts. It works as ``Authorization: Bearer`` on every
  request, and in the login form.
- ``automationctl web-login`` asks the daemon (socket command ``web.login``) for a *one-time
  code*: a URL ``/login?token=CODE`` that logs one browser in, once, within ``CODE_TTL``.
  The long-lived token never appears in a URL (browser history, proxy logs).
- A login makes a server-side session: the browser holds only a random id in an HttpOnly,
  SameSite=Strict cookie; the session carries its CSRF token and a short, non-secret name
  for logs and the audit trail. Sessions live in memory (a restart logs everyone out) and
  end ``SESSION_IDLE`` after their last use.
- Every wrong token or code counts against its sender's address; after ``GUESSES`` wrong
  ones in a row the address waits (token bucket: one more guess per ``GUESS_EVERY``), and
  while it waits even a right token is not looked at, so guessing cannot go faster.
- Secrets are compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import stat
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from automationd.clock import Clock
from automationd.core.ratelimit import TokenBucket
from automationd.errors import AutomationdError
from automationd.units import Rate

log = structlog.get_logger("automationd.web")

TOKEN_FILE = "web.token"
COOKIE = "automationd_session"
CODE_TTL = 600.0  # seconds a one-time login link stays valid
SESSION_IDLE = 12 * 3600.0
MAX_SESSIONS = 1000
MAX_CODES = 100
GUESSES = 5  # wrong tokens an address may send before it has to wait
GUESS_EVERY = 10.0  # seconds per further guess after that
_MAX_ADDRESSES = 10_000


def load_token(state_dir: Path) -> str:
    """The console's secret, made on first use (0600, owner only); a readable-by-others file
    is tightened and said so in the log."""
    path = Path(state_dir) / TOKEN_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    except OSError as exc:
        raise AutomationdError(f"web: cannot create {path}: {exc.strerror or exc}") from exc
    else:
        token = secrets.token_urlsafe(32)
        with os.fdopen(fd, "w") as f:
            f.write(token + "\n")
        log.info("web.token_created", path=str(path))
        return token
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            os.chmod(path, 0o600)
            log.warning("web.token_mode_fixed", path=str(path), was=oct(mode))
        token = path.read_text("utf-8").strip()
    except OSError as exc:
        raise AutomationdError(f"web: cannot read {path}: {exc.strerror or exc}") from exc
    if len(token) < 16:
        raise AutomationdError(f"web: {path} holds no usable token (delete it to make a new one)")
    return token


@dataclass(slots=True, eq=False)
class Session:
    id: str  # the cookie's secret value
    name: str  # short and not secret: logs and the audit trail name the session by it
    csrf: str
    remote: str
    expires: float  # monotonic
    flash: list[tuple[str, str]] = field(default_factory=list)  # (kind, text) for the next page


class WebAuth:
    """Token, codes, sessions and the wrong-guess limit; see the module docstring."""

    def __init__(self, token: str, clock: Clock) -> None:
        self._token = token.encode()
        self._clock = clock
        self._codes: dict[str, float] = {}  # code → expiry (monotonic)
        self._sessions: OrderedDict[str, Session] = OrderedDict()
        self._guesses: OrderedDict[str, TokenBucket] = OrderedDict()
        self._rate = Rate(1, GUESS_EVERY, f"1/{GUESS_EVERY:g}s")
        self.base_url = ""  # "http://HOST:PORT", set once the console listens

    # -- the token and one-time codes ---------------------------------------------------
    def token_ok(self, presented: str) -> bool:
        # surrogatepass: a header's undecodable bytes arrive as lone surrogates
        return hmac.compare_digest(presented.encode("utf-8", "surrogatepass"), self._token)

    def mint_code(self) -> str:
        now = self._clock.monotonic()
        for code in [c for c, exp in self._codes.items() if exp <= now]:
            del self._codes[code]
        while len(self._codes) >= MAX_CODES:
            del self._codes[next(iter(self._codes))]
        code = secrets.token_urlsafe(24)
        self._codes[code] = now + CODE_TTL
        return code

    def login_url(self) -> dict[str, object]:
        """What ``web.login`` answers: a fresh one-time login URL."""
        return {
            "url": f"{self.base_url}/login?token={self.mint_code()}",
            "expires_in_s": CODE_TTL,
        }

    def redeem(self, code: str) -> bool:
        """True once for a live code (it is spent either way)."""
        expiry = None
        for known in self._codes:
            if hmac.compare_digest(known.encode(), code.encode("utf-8", "surrogatepass")):
                expiry = self._codes.pop(known)
                break
        return expiry is not None and expiry > self._clock.monotonic()

    # -- sessions -----------------------------------------------------------------------
    def new_session(self, remote: str) -> Session:
        while len(self._sessions) >= MAX_SESSIONS:
            self._sessions.popitem(last=False)
        sid = secrets.token_urlsafe(32)
        session = Session(
            id=sid,
            name=hashlib.sha256(sid.encode()).hexdigest()[:8],
            csrf=secrets.token_urlsafe(24),
            remote=remote,
            expires=self._clock.monotonic() + SESSION_IDLE,
        )
        self._sessions[sid] = session
        log.info("web.login", session=session.name, remote=remote)
        return session

    def session(self, sid: str | None) -> Session | None:
        """The live session for a cookie value (its idle time restarts), else None."""
        if not sid:
            return None
        session = self._sessions.get(sid)
        if session is None:
            return None
        now = self._clock.monotonic()
        if session.expires <= now:
            del self._sessions[sid]
            return None
        session.expires = now + SESSION_IDLE
        self._sessions.move_to_end(sid)
        return session

    def end_session(self, sid: str) -> None:
        session = self._sessions.pop(sid, None)
        if session is not None:
            log.info("web.logout", session=session.name)

    # -- wrong guesses ------------------------------------------------------------------
    def wait_for(self, remote: str) -> float:
        """Seconds ``remote`` must wait before its next token is looked at (0: go ahead)."""
        bucket = self._guesses.get(remote)
        if bucket is None:
            return 0.0
        left = bucket.tokens(self._clock.monotonic())
        if left >= GUESSES:
            del self._guesses[remote]  # forgiven: full again
        if left >= 1.0:
            return 0.0
        return max(0.001, (1.0 - left) * GUESS_EVERY)

    def wrong(self, remote: str, what: str) -> None:
        """``remote`` sent a wrong token or code: spend one of its guesses."""
        now = self._clock.monotonic()
        bucket = self._guesses.get(remote)
        if bucket is None:
            while len(self._guesses) >= _MAX_ADDRESSES:
                self._guesses.popitem(last=False)
            bucket = self._guesses[remote] = TokenBucket(self._rate, GUESSES, now)
        bucket.take(now)
        log.warning("web.wrong_token", remote=remote, what=what)
