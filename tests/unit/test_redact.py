"""What the audit trail keeps of a command's arguments (core/redact.py)."""

from __future__ import annotations

import json

from automationd.core.redact import HIDDEN, MAX_TEXT, audit_args, digest, redact


def test_secrets_are_hidden_and_the_shape_kept() -> None:
    """Env and header values, token- and password-like keys and URL credentials are hidden;
    env and header names stay, so a change to them is still visible."""
    args = {
        "name": "sync",
        "patch": {
            "action": {
                "type": "http",
                "url": "https://bob:hunter2@api.example/x?a=1",
                "headers": {"Authorization": "Bearer abc"},
                "env": {"API_KEY": "k", "MODE": "full"},
            },
            "api_token": "t0k",
            "db_password": "pw",
        },
    }
    shown = redact(args)
    action = shown["patch"]["action"]
    assert action["url"] == f"https://{HIDDEN}@api.example/x?a=1"
    assert action["headers"] == {"Authorization": HIDDEN}
    assert action["env"] == {"API_KEY": HIDDEN, "MODE": HIDDEN}
    assert shown["patch"]["api_token"] == HIDDEN and shown["patch"]["db_password"] == HIDDEN
    assert shown["name"] == "sync" and action["type"] == "http"
    assert "hunter2" not in repr(shown) and "abc" not in repr(shown)


def test_the_digest_tells_requests_apart_without_their_secrets() -> None:
    """Equal arguments (in any key order) have one digest; a changed secret changes it."""
    a = {"name": "x", "env": {"K": "1"}}
    assert digest(a) == digest({"env": {"K": "1"}, "name": "x"})
    assert digest(a) != digest({"name": "x", "env": {"K": "2"}})
    assert redact(a) == redact({"name": "x", "env": {"K": "2"}})


def test_long_arguments_are_cut_to_a_bounded_text() -> None:
    """A 1 MiB payload is kept as at most ``MAX_TEXT`` characters; the digest covers it all."""
    text, dig = audit_args({"payload": "x" * (1 << 20)})
    shown = json.loads(text)
    assert isinstance(shown, str) and len(shown) <= MAX_TEXT and shown.endswith("…")
    assert dig != audit_args({"payload": "x" * ((1 << 20) - 1)})[1]


def test_small_arguments_come_from_a_cache_and_agree_with_the_slow_path() -> None:
    """A manual trigger's ``{"name": …}`` is answered from the cache with the same text and
    digest as any other value; secret-looking scalars are hidden on that path too."""
    for args in ({"name": "sync"}, {"name": "x", "dry_run": True}, {"token": "t", "id": "r"}):
        text, dig = audit_args(args)
        assert json.loads(text) == redact(args) and dig == digest(args)
        assert audit_args(dict(args)) == (text, dig)
    assert json.loads(audit_args({"token": "t"})[0]) == {"token": HIDDEN}


def test_cached_scalar_args_keep_their_types() -> None:
    """``true``, ``1`` and ``1.0`` are equal keys to a cache but not the same argument: each is
    recorded as itself, whichever came first."""
    assert audit_args({"dry_run": 1})[0] == '{"dry_run":1}'
    assert audit_args({"dry_run": True})[0] == '{"dry_run":true}'
    assert audit_args({"dry_run": 1.0})[0] == '{"dry_run":1.0}'
    assert audit_args({"dry_run": True})[1] != audit_args({"dry_run": 1})[1]
