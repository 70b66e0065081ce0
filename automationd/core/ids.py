"""Identifiers that sort by creation time: 48-bit millisecond time + 80 random bits, in hex.

The random part is 48 bits fixed per millisecond and a 32-bit counter that starts at a random
value below 2**31 and is incremented for every further id in that millisecond, so ids from
one generator are strictly increasing even when the wall clock stalls or steps back a little.
The first 24 hex digits are formatted once per millisecond; every id costs one small format.
"""

from __future__ import annotations

import random


class IdGenerator:
    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._last_ms = -1
        self._high = 0  # the 48 random bits of this millisecond
        self._low = 0  # the counter
        self._prefix = ""

    def new(self, now: float) -> str:
        """A 32-character id for wall time ``now`` (epoch seconds)."""
        ms = int(now * 1000)
        if ms > self._last_ms:
            self._last_ms = ms
            self._high = self._rng.getrandbits(48)
            self._low = self._rng.getrandbits(31)
            self._prefix = f"{ms:012x}{self._high:012x}"
        else:
            self._low += 1
            if self._low >> 32:  # 2**31 ids in one millisecond: carry into the high part
                self._low = 0
                self._high += 1
                self._prefix = f"{self._last_ms:012x}{self._high:012x}"
        return f"{self._prefix}{self._low:08x}"


def id_floor(ts: float) -> str:
    """The smallest id a generator could make at wall time ``ts``: ``id < id_floor(t)``
    selects exactly the records created before ``t``."""
    return f"{max(0, int(ts * 1000)):012x}"
