"""The ``[web]`` table's record (kept apart so config/model.py stays under 400 lines)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class WebConfig:
    """The web console and HTTP API (SPEC §7.3): off unless ``listen`` is set."""

    listen: str = ""  # "HOST:PORT"; "" disables the console
    read_only: bool = False  # hide and refuse every state-changing request
