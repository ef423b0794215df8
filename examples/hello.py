"""A tiny app that prints a line every second: `corral start examples/hello.py`."""

import os
import time

instance = os.environ.get("CORRAL_INSTANCE", "0")
n = 0
while True:
    print(f"hello from instance {instance} (pid {os.getpid()}), tick {n}")
    n += 1
    time.sleep(1)
