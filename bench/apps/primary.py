"""A corral.cluster primary for the benchmark.

    python primary.py POLICY COUNT [--listen HOST:PORT] [--cwd DIR] -- TARGET [ARGS...]

Forks COUNT workers running TARGET (a Python script, or a console script such
as gunicorn) under POLICY (shared, rr, reuseport). With --listen the primary
pre-binds the address and the workers get it as socket activation
(LISTEN_FDS=1, fd 3). Prints cluster events as JSON lines on stdout. On
SIGTERM or SIGINT: cluster.disconnect(timeout=5), then exits.
"""

import json
import os
import signal
import sys
import threading

from corral import cluster

policy, count, *rest = sys.argv[1:]
settings: dict = {}
while rest and rest[0] != "--":
    option = rest.pop(0)
    if option == "--listen":
        settings["listen"] = [rest.pop(0)]
    elif option == "--cwd":
        settings["cwd"] = rest.pop(0)
    else:
        raise SystemExit(f"primary.py: unknown option {option}")
rest.pop(0)  # --
target, args = rest[0], rest[1:]


def out(**fields: object) -> None:
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stop.set())
signal.signal(signal.SIGINT, lambda *_: stop.set())

cluster.scheduling_policy = policy
cluster.setup_primary(exec=target, args=args, **settings)
cluster.on("online", lambda w: out(event="online", id=w.id, pid=w.pid))
cluster.on("listening", lambda w, a: out(event="listening", id=w.id, pid=w.pid, address=a))
cluster.on("disconnect", lambda w: out(event="disconnect", id=w.id, pid=w.pid))
cluster.on("exit", lambda w, c, s: out(event="exit", id=w.id, pid=w.pid, code=c, signal=s))
for _ in range(int(count)):
    cluster.fork()
out(event="forked", primary=os.getpid(), policy=cluster.scheduling_policy)
while not stop.wait(0.5):
    pass
cluster.disconnect(timeout=5)
out(event="quit")
