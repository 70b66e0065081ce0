"""The ``[web]`` table: defaults, values, and dotted-key errors like every other table."""

from __future__ import annotations

from pathlib import Path

import pytest

from automationd.config.load import load_config
from automationd.config.web import WebConfig
from automationd.errors import ConfigError


def _load(tmp_path: Path, text: str) -> WebConfig:
    path = tmp_path / "a.toml"
    path.write_text(text)
    return load_config(path).web


def test_web_is_off_by_default(tmp_path: Path) -> None:
    """Without a [web] table the console is off and not read-only."""
    assert _load(tmp_path, "") == WebConfig(listen="", read_only=False)


def test_web_keys_are_read(tmp_path: Path) -> None:
    """listen and read_only are taken as given."""
    web = _load(tmp_path, '[web]\nlisten = "127.0.0.1:9465"\nread_only = true\n')
    assert web == WebConfig(listen="127.0.0.1:9465", read_only=True)


@pytest.mark.parametrize(
    ("text", "key", "problem"),
    [
        ('[web]\nlisten = "nowhere"\n', "web.listen", "expected HOST:PORT"),
        ("[web]\nlisten = 9465\n", "web.listen", "expected a string"),
        ('[web]\nread_only = "yes"\n', "web.read_only", ""),
        ('[web]\nlisen = ""\n', "web.lisen", "unknown key (did you mean 'listen'?)"),
    ],
)
def test_web_errors_name_the_key(tmp_path: Path, text: str, key: str, problem: str) -> None:
    """A bad [web] value is one ConfigError line naming file and dotted key."""
    with pytest.raises(ConfigError) as err:
        _load(tmp_path, text)
    message = str(err.value)
    assert f": {key}: " in message and str(tmp_path / "a.toml") in message
    assert problem in message
