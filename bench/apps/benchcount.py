"""Per-process request counter for the bench servers.

Each server calls hit() once per request. On the first hit, a daemon thread
starts and writes this process's running total to $BENCH_COUNT_DIR/<pid>
every 0.2 s (written then renamed, so a reader never sees half a number).
The harness reads the folder before and after each wrk run: the difference
per pid is the split of the requests between the workers.
"""

import os
import threading
import time

_dir = os.environ.get("BENCH_COUNT_DIR")
_lock = threading.Lock()
_count = 0
_started = False


def _dump_loop() -> None:
    path = os.path.join(_dir, str(os.getpid()))
    last = -1
    while True:
        n = _count
        if n != last:
            with open(path + ".tmp", "w") as f:
                f.write(str(n))
            os.replace(path + ".tmp", path)
            last = n
        time.sleep(0.2)


def _start() -> None:
    global _started
    with _lock:
        if not _started and _dir:
            _started = True
            threading.Thread(target=_dump_loop, daemon=True, name="benchcount").start()


def hit() -> None:
    """One request (a single-threaded server: event loop or sync worker)."""
    global _count
    _count += 1
    if not _started:
        _start()


def hit_locked() -> None:
    """One request, from any thread (thread-per-connection servers)."""
    global _count
    with _lock:
        _count += 1
    if not _started:
        _start()
