"""Finds or starts the daemon of a CORRAL_HOME and sends it requests.

Blocking sockets only, and the C socket module rather than `socket` (which
imports enum): the CLI must stay quick to import and to run.
"""

from __future__ import annotations

import _socket
import itertools
import os
import sys
import time

from corral.model.errors import CorralError
from corral.model.version import __version__
from corral.model.wire import ProtocolError, encode, read_frame
from corral.store.home import Home, unix_address

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

DAEMON_START_TIMEOUT_S = 15.0
HELLO_TIMEOUT_S = 10.0  # a daemon that does not answer `hello` this soon is stuck
DEFAULT_TIMEOUT_S = 300.0  # for any other reply (CORRAL_TIMEOUT, in seconds; 0: none)
IDLE_RECONNECT_S = 100.0  # the daemon closes a connection idle for 120 s


def request_timeout() -> float | None:
    """How long a command waits for the daemon's reply: CORRAL_TIMEOUT seconds (0: no
    limit), DEFAULT_TIMEOUT_S otherwise."""
    text = os.environ.get("CORRAL_TIMEOUT", "")
    try:
        value = float(text) if text.strip() else DEFAULT_TIMEOUT_S
    except ValueError:
        value = DEFAULT_TIMEOUT_S
    return value if value > 0 else None


class Client:
    def __init__(self, home: Home, *, start: bool = True) -> None:
        self.home = home
        self._ids = itertools.count(1)
        self.daemon_version: str | None = None
        self.daemon_pid: int | None = None
        self.sock = self._connect() if not start else self._connect_or_start()
        self.last_used = time.monotonic()
        self._hello()
        if self.daemon_version != __version__:
            print(
                f"corral: the daemon runs corral {self.daemon_version} and this command is "
                f"{__version__}; `corral update` hands your apps over to a daemon of this "
                "version without restarting them",
                file=sys.stderr,
            )

    def _hello(self) -> None:
        """The first request: versions; a daemon that does not answer it within
        HELLO_TIMEOUT_S is hung (or out of file descriptors): said at once."""
        self.sock.settimeout(HELLO_TIMEOUT_S)
        hello = self.call("hello", version=__version__)
        self.daemon_version = hello["version"]
        self.daemon_pid = hello["pid"]
        self.sock.settimeout(request_timeout())

    def _connect(self) -> _socket.socket:
        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        sock.settimeout(HELLO_TIMEOUT_S)
        dir_fd = None
        try:
            address, dir_fd = unix_address(self.home.socket)  # a home of any length
            sock.connect(address)
        except OSError:
            sock.close()
            raise
        finally:
            if dir_fd is not None:
                os.close(dir_fd)
        return sock

    def _connect_or_start(self) -> _socket.socket:
        self.home.check_owner()  # never talk to a daemon (or a fake) in another user's home
        try:
            return self._connect()
        except PermissionError:
            raise CorralError(
                f"permission denied on {self.home.socket}: that daemon belongs to another "
                "user; set CORRAL_HOME to a folder of your own"
            ) from None
        except OSError:
            pass
        self.home.ensure()
        import fcntl

        lock_fd = os.open(self.home.spawn_lock,
                          os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX)
            try:
                return self._connect()
            except OSError:
                pass
            self._spawn_daemon()
            deadline = time.monotonic() + DAEMON_START_TIMEOUT_S
            while True:
                try:
                    return self._connect()
                except OSError:
                    if time.monotonic() > deadline:
                        raise CorralError(
                            f"the daemon did not start; see {self.home.daemon_log}") from None
                    time.sleep(0.01)
        finally:
            os.close(lock_fd)

    def _spawn_daemon(self) -> None:
        import subprocess

        read_fd, write_fd = os.pipe()
        log_fd = os.open(self.home.daemon_log,
                         os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            subprocess.Popen(
                [sys.executable, "-m", "corral.daemon", "--ready-fd", str(write_fd)],
                stdin=subprocess.DEVNULL,
                stdout=log_fd,
                stderr=log_fd,
                pass_fds=(write_fd,),
                start_new_session=True,
                cwd="/",
            )
        finally:
            os.close(write_fd)
            os.close(log_fd)
        chunks = []
        with os.fdopen(read_fd, "rb") as ready:
            while chunk := ready.read(4096):
                chunks.append(chunk)
        answer = b"".join(chunks).decode(errors="replace")
        if answer != "ok":
            raise CorralError(answer or f"the daemon did not start; see {self.home.daemon_log}")

    def call(self, method: str, **params: object) -> Any:
        return self.receive(self.send(method, **params))

    def send(self, method: str, **params: object) -> str:
        """The first half of call(): the request goes out; receive() waits for its reply
        (`corral list` imports the table's code meanwhile, while the daemon works)."""
        request_id = next(self._ids)
        frame = encode({"id": request_id, "method": method, "params": params})
        if method != "hello" and time.monotonic() - self.last_used > IDLE_RECONNECT_S:
            self._reconnect()  # the daemon closes connections idle for long
        try:
            self.sock.sendall(frame)
        except TimeoutError:
            return self._timed_out(method)
        except OSError as exc:
            raise CorralError(f"lost the connection to the daemon ({exc}); see "
                              f"{self.home.daemon_log}") from None
        return method

    def receive(self, method: str) -> Any:
        """The reply to the request send() sent (the one in flight: one at a time)."""
        try:
            response: Any = read_frame(self.sock)
        except TimeoutError:
            return self._timed_out(method)
        except (OSError, ProtocolError) as exc:
            raise CorralError(f"lost the connection to the daemon ({exc}); see "
                              f"{self.home.daemon_log}") from None
        self.last_used = time.monotonic()
        if "error" in response:
            error = response["error"]
            raise CorralError(error["message"], code=error.get("code", 1))
        return response["result"]

    def _timed_out(self, method: str) -> Any:
        waited = self.sock.gettimeout() or 0
        raise CorralError(
            f"the daemon{f' (pid {self.daemon_pid})' if self.daemon_pid else ''} did "
            f"not answer `{method}` within {waited:.0f} s; it may be hung or still at "
            f"work: see {self.home.daemon_log} and `corral list`. CORRAL_TIMEOUT=SECONDS "
            "waits longer (0: no limit)") from None

    def _reconnect(self) -> None:
        self.sock.close()
        try:
            self.sock = self._connect()
        except OSError as exc:
            raise CorralError(f"lost the connection to the daemon ({exc}); see "
                              f"{self.home.daemon_log}") from None
        self.last_used = time.monotonic()
        self._hello()

    def stream(self, method: str, **params: object) -> Any:
        """Send one request and yield every frame the daemon sends back (follow)."""
        first = self.call(method, **params)
        self.sock.settimeout(None)  # a stream may be quiet for as long as the apps are
        yield first
        while True:
            try:
                frame: Any = read_frame(self.sock)
            except (OSError, ProtocolError):
                return
            yield frame

    def close(self) -> None:
        self.sock.close()

    def wait_daemon_exit(self, timeout_s: float = 10.0) -> bool:
        """After `kill`: wait until the daemon has released its lock (it is gone)."""
        import fcntl

        fd = os.open(self.home.daemon_lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        deadline = time.monotonic() + timeout_s
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    return True
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        return False
                    time.sleep(0.01)
        finally:
            os.close(fd)
