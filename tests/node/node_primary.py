"""Node's classic cluster example with a Python primary: `from corral import cluster`
forking an unmodified Node app (its exec ends in .js). Events as JSON lines on stdout;
commands on stdin: kill ID SIG, disconnect ID, send ID JSON, quit."""
import json
import signal
import sys

from corral import cluster

policy, count, target = sys.argv[1:4]
cluster.scheduling_policy = policy
cluster.setup_primary(exec=target)


def out(**fields: object) -> None:
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


cluster.on("online", lambda w: out(event="online", id=w.id, pid=w.pid))
cluster.on("listening", lambda w, a: out(event="listening", id=w.id, pid=w.pid, address=a))
cluster.on("disconnect", lambda w: out(event="disconnect", id=w.id, pid=w.pid))
cluster.on("exit", lambda w, c, s: out(event="exit", id=w.id, pid=w.pid, code=c, signal=s,
                                       voluntary=w.exited_after_disconnect))
cluster.on("message", lambda w, m, fds: out(event="message", id=w.id, pid=w.pid, message=m))
for _ in range(int(count)):
    cluster.fork()
out(event="forked")
for line in sys.stdin:
    words = line.split(maxsplit=2)
    if not words:
        continue
    if words[0] == "kill":
        cluster.workers[int(words[1])].kill(getattr(signal, words[2]))
    elif words[0] == "disconnect":
        cluster.workers[int(words[1])].disconnect()
    elif words[0] == "send":
        cluster.workers[int(words[1])].send(json.loads(words[2]))
    elif words[0] == "quit":
        cluster.disconnect(timeout=10)
        out(event="quit")
        break
