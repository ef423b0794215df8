"""Burst app of bench/logs.py: write N lines to stdout as fast as it can, then exit.

Each line is `<instance> <seq:07d> xxx...x\\n`, BURST_LINE_BYTES bytes with its newline
(default 100), seq = 0..N-1, so a reader can tell a line that is missing, repeated,
cut, merged or out of order.

The writes do not depend on how the manager set up Python's buffering (corral sets
PYTHONUNBUFFERED=1, PM2 does not): the whole output is built first, then written with
os.write in BURST_CHUNK-byte pieces (default 8192, the size of a block-buffered
sys.stdout's flushes), so chunk boundaries fall in the middle of lines, as with a
real app's buffered prints. BURST_CHUNK=0 writes one line per os.write.

Environment:
  BURST_LINES       lines to write (default 200000)
  BURST_LINE_BYTES  bytes per line, newline included (default 100)
  BURST_CHUNK       bytes per os.write, 0 = one line per write (default 8192)
  BENCH_STAMP_DIR   if set: writes <dir>/<pid> (JSON: pid, instance, t_start, t_written)
                    once the last byte is written, and <dir>/<pid>.start at start
The instance is CORRAL_INSTANCE (corral), NODE_APP_INSTANCE (PM2) or 0.
"""

import json
import os
import sys
import time


def main() -> int:
    t_start = time.time()
    stamp_dir = os.environ.get("BENCH_STAMP_DIR")
    pid = os.getpid()
    if stamp_dir:
        with open(os.path.join(stamp_dir, f"{pid}.start"), "w") as f:
            f.write(repr(t_start))
    instance = int(os.environ.get("CORRAL_INSTANCE") or os.environ.get("NODE_APP_INSTANCE")
                   or 0)
    lines = int(os.environ.get("BURST_LINES", "200000"))
    size = int(os.environ.get("BURST_LINE_BYTES", "100"))
    chunk = int(os.environ.get("BURST_CHUNK", "8192"))
    head = f"{instance} "
    pad = "x" * (size - len(head) - 8 - 1)  # 7 digits, a space, the newline
    data = "".join(f"{head}{seq:07d} {pad}\n" for seq in range(lines)).encode()
    view = memoryview(data)
    step = chunk if chunk > 0 else size
    fd = sys.stdout.fileno()
    pos = 0
    while pos < len(view):
        pos += os.write(fd, view[pos:pos + step])
    t_written = time.time()
    if stamp_dir:
        path = os.path.join(stamp_dir, str(pid))
        with open(path + ".tmp", "w") as f:
            json.dump({"pid": pid, "instance": instance, "t_start": t_start,
                       "t_written": t_written, "lines": lines}, f)
        os.rename(path + ".tmp", path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
