"""Child process for the store crash test: acks durable writes on stdout until it is killed.

Usage: ``python store_crash_child.py STATE_DIR [WRITERS]``. Each of WRITERS tasks loops:
insert an event row with a fresh id, await the write, then print the id (flushed). A printed
id is therefore a write the store reported durable; the parent kills us with SIGKILL at a
random moment and checks that every printed id survived.
"""

from __future__ import annotations

import asyncio
import itertools
import sys
from pathlib import Path

from automationd.records import Event
from automationd.store.rows import w_event
from automationd.store.sqlite.store import open_sqlite


async def main(state_dir: Path, writers: int) -> None:
    ids = itertools.count()
    out = sys.stdout

    async def writer() -> None:
        while True:
            event_id = f"ev-{next(ids):08d}"
            await store.commit(
                [w_event(Event(id=event_id, name="crash", payload=None, created_at=0.0))]
            )
            out.write(event_id + "\n")
            out.flush()

    async with open_sqlite(state_dir) as store, asyncio.TaskGroup() as tg:
        out.write("ready\n")
        out.flush()
        for _ in range(writers):
            tg.create_task(writer())


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 64))
