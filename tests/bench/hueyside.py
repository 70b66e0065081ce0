"""The peer: SqliteHuey doing the same no-op work with the same kind of clients.

SqliteHuey with its defaults (WAL; SQLite's default ``synchronous=FULL``, so an enqueue is as
durable as our trigger) and a consumer of 4 thread workers, in this process. The producers
run in a subprocess (so they do not share our GIL with the consumer): ``clients`` threads,
each enqueuing one task at a time (Huey's enqueue returns once the task is stored: a
synchronous client). Huey's clock starts at its first enqueue and stops when the consumer
has completed the last task.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

WORKERS = 4

PRODUCER = textwrap.dedent("""
    import json, sys, threading, time
    sys.path.insert(0, sys.argv[1])
    from hueytasks import noop
    n, clients, timed = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1"
    print(repr(time.time()), flush=True)  # Huey's clock starts at its first enqueue
    lat = []
    def go():
        perf = time.perf_counter
        for _ in range(n // clients):
            t0 = perf()
            noop()
            if timed:
                lat.append(perf() - t0)
    ts = [threading.Thread(target=go) for _ in range(clients)]
    [t.start() for t in ts]; [t.join() for t in ts]
    print(json.dumps(lat), flush=True)
""")

TASKS = """
from huey import SqliteHuey
huey = SqliteHuey(filename={db!r})
@huey.task()
def noop():
    return None
"""


def _produce(base: Path, n: int, clients: int, timed: bool) -> tuple[float, list[float]]:
    out = subprocess.run(
        [sys.executable, "-c", PRODUCER, str(base), str(n), str(clients), "1" if timed else "0"],
        check=True,
        timeout=600,
        capture_output=True,
        text=True,
    )
    first, lat = out.stdout.splitlines()[:2]
    return float(first), json.loads(lat)


def huey_run(base: Path, n: int, clients: int, *, timed: bool = False) -> tuple[float, list[float]]:
    """Runs/s end to end (first enqueue → last completion) and, if ``timed``, each enqueue's
    seconds."""
    (base / "hueytasks.py").write_text(textwrap.dedent(TASKS.format(db=str(base / "huey.db"))))
    sys.path.insert(0, str(base))
    try:
        import hueytasks  # type: ignore[import-not-found]
        from huey.signals import SIGNAL_COMPLETE

        total = (n // clients) * clients
        done = 0
        lock = threading.Lock()
        finished = threading.Event()
        finished_at = 0.0

        @hueytasks.huey.signal(SIGNAL_COMPLETE)
        def _count(sig: str, task: object) -> None:
            nonlocal done, finished_at
            with lock:
                done += 1
                if done >= total and not finished.is_set():
                    finished_at = time.time()
                    finished.set()

        saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
        consumer = hueytasks.huey.create_consumer(workers=WORKERS, worker_type="thread")
        consumer.start()
        try:
            t0, lat = _produce(base, n, clients, timed)
            assert finished.wait(600)
            elapsed = finished_at - t0
        finally:
            consumer.stop(graceful=False)
            for s, h in saved.items():
                signal.signal(s, h)
        return total / elapsed, lat
    finally:
        sys.path.remove(str(base))
        sys.modules.pop("hueytasks", None)
