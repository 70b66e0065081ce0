"""web/auth.py: the token file, one-time login codes, sessions and the wrong-guess limit."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from automationd.errors import AutomationdError
from automationd.web.auth import CODE_TTL, GUESS_EVERY, GUESSES, SESSION_IDLE, WebAuth, load_token
from tests.support.clock import FakeClock


def test_token_is_made_once_owner_only(tmp_path: Path) -> None:
    """The first start writes a 0600 token; later starts read the same one."""
    token = load_token(tmp_path)
    path = tmp_path / "web.token"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(token) >= 40
    assert load_token(tmp_path) == token


def test_a_token_file_others_can_read_is_tightened(tmp_path: Path) -> None:
    """A token left readable by others is set back to 0600 (and still used)."""
    token = load_token(tmp_path)
    path = tmp_path / "web.token"
    path.chmod(0o644)
    assert load_token(tmp_path) == token
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_an_empty_token_file_is_refused(tmp_path: Path) -> None:
    """A file without a usable token stops the start with a message saying what to do."""
    (tmp_path / "web.token").write_text("\n")
    (tmp_path / "web.token").chmod(0o600)
    with pytest.raises(AutomationdError, match="delete it"):
        load_token(tmp_path)


def test_token_check() -> None:
    """Only the exact token passes; any other string (non-ASCII, lone surrogates) is just
    wrong, never an exception."""
    auth = WebAuth("s3cret-token-value", FakeClock())
    assert auth.token_ok("s3cret-token-value")
    assert not auth.token_ok("s3cret-token-valu")
    assert not auth.token_ok("")
    for odd in ("t\u00f6ken", "\udcff\udcfe", "\ud800"):  # a header's undecodable bytes too
        assert not auth.token_ok(odd)
        assert not auth.redeem(odd)


def test_login_codes_work_once_and_expire() -> None:
    """A code logs in once; a second use, an unknown code or an expired one do not."""
    clock = FakeClock()
    auth = WebAuth("t" * 40, clock)
    auth.base_url = "http://127.0.0.1:9465"
    answer = auth.login_url()
    url = str(answer["url"])
    assert url.startswith("http://127.0.0.1:9465/login?token=")
    code = url.rsplit("=", 1)[1]
    assert auth.redeem(code)
    assert not auth.redeem(code)
    assert not auth.redeem("made-up")
    late = auth.mint_code()
    clock.advance(CODE_TTL + 1)
    assert not auth.redeem(late)


def test_sessions_end_after_idle_time_and_on_logout() -> None:
    """A session is found while used; it ends after SESSION_IDLE unused, or on logout."""
    clock = FakeClock()
    auth = WebAuth("t" * 40, clock)
    session = auth.new_session("127.0.0.1")
    assert len(session.name) == 8 and session.name not in session.id
    clock.advance(SESSION_IDLE - 1)
    assert auth.session(session.id) is session  # use restarts the idle time
    clock.advance(SESSION_IDLE - 1)
    assert auth.session(session.id) is session
    clock.advance(SESSION_IDLE + 1)
    assert auth.session(session.id) is None
    other = auth.new_session("127.0.0.1")
    auth.end_session(other.id)
    assert auth.session(other.id) is None
    assert auth.session(None) is None and auth.session("nope") is None


def test_wrong_guesses_make_an_address_wait() -> None:
    """After GUESSES wrong tokens an address waits GUESS_EVERY per further guess; other
    addresses are not affected; waiting long enough forgives."""
    clock = FakeClock()
    auth = WebAuth("t" * 40, clock)
    for _ in range(GUESSES):
        assert auth.wait_for("10.0.0.1") == 0
        auth.wrong("10.0.0.1", "bearer")
    wait = auth.wait_for("10.0.0.1")
    assert 0 < wait <= GUESS_EVERY
    assert auth.wait_for("10.0.0.2") == 0
    clock.advance(wait)
    assert auth.wait_for("10.0.0.1") == 0
    auth.wrong("10.0.0.1", "bearer")
    assert auth.wait_for("10.0.0.1") > 0
    clock.advance(GUESS_EVERY * GUESSES)
    assert auth.wait_for("10.0.0.1") == 0
