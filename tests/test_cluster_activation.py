"""Socket activation: workers get the primary's listeners at fd 3 with LISTEN_FDS, so
servers that take an fd (gunicorn, uvicorn --fd, socket.socket(fileno=3)) need no hook."""

from __future__ import annotations

import collections
import shutil
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from corral.cluster.primary import Primary

from clusterkit import get, pid_of
from conftest import free_port, wait_for

SRC = str(Path(__file__).resolve().parent.parent / "src")

WSGI = """
import os
def app(environ, start_response):
    body = f"hello world, start with cluster {os.getpid()}\\n".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
"""

ASGI = """
import os
async def app(scope, receive, send):
    body = f"hello world, start with cluster {os.getpid()}\\n".encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})
"""

RAW = """
import os, socket
env = {k: os.environ.get(k) for k in ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES")}
assert env["LISTEN_PID"] == str(os.getpid()), env
sock = socket.socket(fileno=3)
while True:
    conn, _ = sock.accept()
    with conn:
        while not conn.recv(65536).endswith(b"\\r\\n\\r\\n"):
            pass
        body = f"hello world, start with cluster {os.getpid()} {env['LISTEN_FDNAMES']}".encode()
        conn.sendall(b"HTTP/1.1 200 OK\\r\\nConnection: close\\r\\nContent-Length: "
                     + str(len(body)).encode() + b"\\r\\n\\r\\n" + body)
"""


def tool(name: str) -> str:
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed")
    return found


@pytest.fixture
def cluster_of() -> Any:
    started: list[Primary] = []

    def start(exec_: str, args: list[str], cwd: Path, port: int, count: int = 2) -> Primary:
        primary = Primary(policy="shared")
        primary.setup_primary(exec=exec_, args=args, cwd=str(cwd), listen=[f"127.0.0.1:{port}"],
                              env={"PYTHONPATH": SRC, "CORRAL_CLUSTER_LISTEN_NAMES": "web"})
        online = threading.Semaphore(0)
        primary.on("online", lambda worker: online.release())
        for _ in range(count):
            primary.fork()
        for _ in range(count):
            assert online.acquire(timeout=30)
        started.append(primary)
        return primary

    yield start
    for primary in started:
        for worker in list(primary.workers.values()):
            worker.kill(9)
        primary.io.stop()


def _spread(port: int, requests: int = 30) -> collections.Counter[int]:
    wait_for(lambda: _answers(port), timeout=30, what="the server to answer")
    split: collections.Counter[int] = collections.Counter()
    for _ in range(requests):
        status, body = get(port)
        assert status == 200
        split[pid_of(body)] += 1
    return split


def _answers(port: int) -> bool:
    try:
        return get(port, timeout=2)[0] == 200
    except OSError:
        return False


def test_gunicorn_through_listen_fds(cluster_of: Any, tmp_path: Path) -> None:
    (tmp_path / "wsgi.py").write_text(WSGI)
    port = free_port()
    cluster_of(tool("gunicorn"), ["-w", "1", "--log-level", "warning", "wsgi:app"], tmp_path,
               port)
    split = _spread(port)
    assert sum(split.values()) == 30
    print("gunicorn -w 1 x2 split", sorted(split.values()))


def test_uvicorn_fd_3(cluster_of: Any, tmp_path: Path) -> None:
    (tmp_path / "asgi.py").write_text(ASGI)
    port = free_port()
    cluster_of(tool("uvicorn"), ["asgi:app", "--fd", "3", "--log-level", "warning"], tmp_path,
               port)
    split = _spread(port)
    assert sum(split.values()) == 30


def test_plain_socket_from_fd_3(cluster_of: Any, tmp_path: Path) -> None:
    (tmp_path / "raw.py").write_text(RAW)
    port = free_port()
    cluster_of(str(tmp_path / "raw.py"), [], tmp_path, port)
    wait_for(lambda: _answers(port), timeout=30, what="the server to answer")
    status, body = get(port)
    assert status == 200 and body.endswith(" web")
