"""Node's cluster example in Python: a primary forks 2 workers that share port 3000.

    python examples/cluster_demo.py
    curl 127.0.0.1:3000/        # "hello world, start with cluster <pid>", pids take turns

The workers run examples/app.py unmodified: its bind of 127.0.0.1:3000 is
turned into a request to the primary, which owns the listening socket.
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))

from corral import cluster  # noqa: E402

WORKERS = int(os.environ.get("WORKERS", "2"))

if cluster.is_primary:
    if "CORRAL_CLUSTER_SCHED_POLICY" not in os.environ:
        cluster.scheduling_policy = cluster.SCHED_RR  # Node's default: pids take turns
    print(f"primary {os.getpid()} is running ({cluster.scheduling_policy} policy)", flush=True)
    cluster.setup_primary(exec=os.path.join(os.path.dirname(os.path.abspath(__file__)), "app.py"))
    for _ in range(WORKERS):
        cluster.fork()

    def on_listening(worker, address):
        print(f"worker {worker.process.pid} is listening on "
              f"{address['address']}:{address['port']}", flush=True)

    def on_exit(worker, code, signal):
        print(f"worker {worker.process.pid} died ({signal or code})", flush=True)

    cluster.on("listening", on_listening)
    cluster.on("exit", on_exit)
