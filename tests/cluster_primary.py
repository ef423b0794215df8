"""A primary for the tests: forks N workers of a server script, reports events as JSON
lines, and takes commands on stdin (fork, kill ID SIG, disconnect, quit)."""
import json
import os
import signal
import sys

from corral import cluster

policy, count, target, *args = sys.argv[1:]
cluster.scheduling_policy = policy
cluster.setup_primary(exec=target, args=args)


def out(**fields: object) -> None:
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


cluster.on("online", lambda w: out(event="online", id=w.id, pid=w.pid))
cluster.on("listening", lambda w, a: out(event="listening", id=w.id, pid=w.pid, address=a))
cluster.on("disconnect", lambda w: out(event="disconnect", id=w.id, pid=w.pid))
cluster.on("exit", lambda w, c, s: out(event="exit", id=w.id, pid=w.pid, code=c, signal=s,
                                       voluntary=w.exited_after_disconnect))
cluster.on("message", lambda w, m, fds: out(event="message", id=w.id, message=m))
for _ in range(int(count)):
    cluster.fork()
out(event="forked", primary=os.getpid())
for line in sys.stdin:
    words = line.split()
    if not words:
        continue
    if words[0] == "fork":
        cluster.fork()
    elif words[0] == "kill":
        cluster.workers[int(words[1])].kill(getattr(signal, words[2]))
    elif words[0] == "disconnect":
        cluster.workers[int(words[1])].disconnect()
    elif words[0] == "quiet":
        cluster.primary.quiet(cluster.workers[int(words[1])])
        out(event="quieted", id=int(words[1]))
    elif words[0] == "state":
        for handle in cluster.primary.handles.values():
            out(event="state", policy=handle.policy, workers=sorted(handle.workers),
                free=[w.id for w in getattr(handle, "free", [])],
                outstanding={str(k): v[0].id for k, v in getattr(handle, "outstanding",
                                                                 {}).items()},
                pending=len(getattr(handle, "pending", [])),
                handoffs=dict(getattr(handle, "handoffs", {})))
    elif words[0] == "quit":
        cluster.disconnect(timeout=10)
        out(event="quit")
        break
