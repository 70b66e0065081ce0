"""Identifiers that sort by creation time (ULID layout: 48-bit ms time + 80 random bits).

Within one millisecond the random part is incremented, so ids from one generator are
strictly increasing even when the wall clock stalls or steps back a little.
"""

from __future__ import annotations

import random

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32


def _encode(value: int, length: int) -> str:
    out = []
    for _ in range(length):
        value, rem = divmod(value, 32)
        out.append(_ALPHABET[rem])
    return "".join(reversed(out))


class IdGenerator:
    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._last_ms = -1
        self._last_rand = 0

    def new(self, now: float) -> str:
        """A 26-character id for wall time ``now`` (epoch seconds)."""
        ms = int(now * 1000)
        if ms <= self._last_ms:
            ms = self._last_ms
            self._last_rand += 1
        else:
            self._last_ms = ms
            self._last_rand = self._rng.getrandbits(79)  # headroom for increments
        return _encode(ms, 10) + _encode(self._last_rand, 16)


def id_floor(ts: float) -> str:
    """The smallest id a generator could make at wall time ``ts``: ``id < id_floor(t)``
    selects exactly the records created before ``t``."""
    return _encode(int(ts * 1000), 10)
