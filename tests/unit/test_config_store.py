"""``[store]`` (SPEC §7.4): defaults, a PostgreSQL fleet's keys, and dotted-key errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from automationd.config.load import load_config
from automationd.errors import ConfigError


def _load(tmp_path: Path, text: str) -> object:
    path = tmp_path / "c.toml"
    path.write_text(text)
    return load_config(path)


def test_defaults_are_sqlite_with_a_15s_lease(tmp_path: Path) -> None:
    """No ``[store]``: SQLite, the SPEC's default DSN, a 15 s lease TTL, no node id."""
    cfg = _load(tmp_path, "")
    store = cfg.store  # type: ignore[attr-defined]
    assert (store.backend, store.lease_ttl, store.node_id) == ("sqlite", 15.0, "")
    assert store.dsn == "postgresql:///automationd?host=/run/postgresql"


def test_a_postgresql_fleet_reads_every_key(tmp_path: Path) -> None:
    """backend, dsn, lease_ttl (a duration) and node_id are read as given."""
    cfg = _load(
        tmp_path,
        '[store]\nbackend = "postgresql"\ndsn = "postgresql://u@db/ad"\n'
        'lease_ttl = "5s"\nnode_id = "web-1"\n',
    )
    store = cfg.store  # type: ignore[attr-defined]
    assert (store.backend, store.dsn, store.lease_ttl, store.node_id) == (
        "postgresql",
        "postgresql://u@db/ad",
        5.0,
        "web-1",
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[store]\nbackend = "mysql"\n', "store.backend: expected one of sqlite | postgresql"),
        ('[store]\nbakend = "sqlite"\n', "store.bakend: unknown key (did you mean 'backend'?)"),
        ('[store]\ndsn = "mysql://x"\n', "store.dsn: expected a postgresql:// URL"),
        ('[store]\nlease_ttl = "500ms"\n', "store.lease_ttl: must be at least 1s"),
        ('[store]\nlease_ttl = "soon"\n', "store.lease_ttl: bad duration 'soon'"),
        ("[store]\nnode_id = 7\n", "store.node_id: expected a string"),
    ],
)
def test_bad_store_keys_name_the_dotted_key(tmp_path: Path, text: str, message: str) -> None:
    """Each bad ``[store]`` value is one ConfigError line naming file and dotted key."""
    with pytest.raises(ConfigError) as err:
        _load(tmp_path, text)
    assert str(err.value).startswith(f"{tmp_path / 'c.toml'}: {message}")
