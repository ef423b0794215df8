"""The primary-worker channel: objects both ways, file descriptors, order and volume."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import pytest

from corral.cluster.primary import Primary

ECHO = """
import os, sys
from corral import cluster

def on_message(message, fds):
    if message == "fd-please":
        r, w = os.pipe()
        os.write(w, b"from the worker")
        os.close(w)
        cluster.worker.send({"here": "a pipe"}, [r])
        os.close(r)
    elif isinstance(message, dict) and message.get("write-to-fd"):
        os.write(fds[0], b"written by the worker")
        os.close(fds[0])
        cluster.worker.send("done")
    else:
        cluster.worker.send(message)

cluster.worker.on("message", on_message)
cluster.worker.send({"hello": "from worker", "pid": os.getpid(), "nested": [1, 2.5, None, True]})
import time
while True:
    time.sleep(1)
"""


@pytest.fixture
def echo_worker(tmp_path: Path) -> Any:
    script = tmp_path / "echo.py"
    script.write_text(ECHO)
    primary = Primary(policy="shared")
    primary.setup_primary(exec=str(script), env={"PYTHONPATH": str(Path(__file__).parent.parent
                                                                     / "src")})
    inbox: list[Any] = []
    arrived = threading.Condition()

    def on_message(worker: Any, message: Any, fds: list[int]) -> None:
        with arrived:
            inbox.append((message, fds))
            arrived.notify_all()

    primary.on("message", on_message)
    worker = primary.fork()

    def wait_count(n: int, timeout: float = 60) -> list[Any]:
        with arrived:
            assert arrived.wait_for(lambda: len(inbox) >= n, timeout), len(inbox)
            return list(inbox)

    yield primary, worker, inbox, wait_count
    worker.kill(9)
    primary.io.stop()


def test_objects_both_ways(echo_worker: Any) -> None:
    primary, worker, inbox, wait_count = echo_worker
    first = wait_count(1)[0][0]
    assert first["hello"] == "from worker" and first["pid"] == worker.pid
    assert first["nested"] == [1, 2.5, None, True]
    big = {"text": "é" * 200_000, "list": list(range(50_000))}  # several packets
    worker.send(big)
    assert wait_count(2)[1][0] == big


def test_file_descriptors_both_ways(echo_worker: Any, tmp_path: Path) -> None:
    primary, worker, inbox, wait_count = echo_worker
    wait_count(1)
    worker.send("fd-please")
    message, fds = wait_count(2)[1]
    assert message == {"here": "a pipe"} and len(fds) == 1
    assert os.read(fds[0], 100) == b"from the worker"
    os.close(fds[0])
    target = tmp_path / "target"
    fd = os.open(target, os.O_WRONLY | os.O_CREAT, 0o600)
    worker.send({"write-to-fd": True}, [fd])
    os.close(fd)
    assert wait_count(3)[2][0] == "done"
    assert target.read_bytes() == b"written by the worker"


def test_100k_messages_arrive_complete_and_in_order(echo_worker: Any) -> None:
    primary, worker, inbox, wait_count = echo_worker
    wait_count(1)
    count = 100_000
    sender = threading.Thread(target=lambda: [worker.send({"i": i, "pad": "x" * 20})
                                              for i in range(count)])
    sender.start()
    received = wait_count(count + 1, timeout=240)
    sender.join()
    numbers = [m["i"] for m, _ in received[1:]]
    assert numbers == list(range(count))
