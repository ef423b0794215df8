"""The channel between a primary and one worker: an AF_UNIX SOCK_SEQPACKET pair.

One message is a JSON object, optionally with file descriptors (SCM_RIGHTS).
SEQPACKET keeps message boundaries and keeps the fds with their message; a
message larger than one packet is split in packets whose first byte says
whether more follow. Internal messages carry `act`; a request carries `seq`
and its reply `ack` (Node's utils.js: one helper for every exchange).
"""

from __future__ import annotations

import array
import itertools
import json
import os
import socket
import threading
from typing import Any

PACKET = 60 * 1024
MAX_FDS = 16
_ANC = socket.CMSG_SPACE(MAX_FDS * array.array("i").itemsize)


def rights(fds: list[int] | tuple[int, ...]) -> list[tuple[int, int, bytes]]:
    """The ancillary data that passes `fds` with a sendmsg (SCM_RIGHTS)."""
    return [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds).tobytes())]


def close_quietly(fd: int | None) -> None:
    """Close an fd that may be gone already (None: nothing to close)."""
    if fd is not None:
        try:
            os.close(fd)
        except OSError:
            pass
MORE, LAST = b"\x01", b"\x00"


class ChannelClosed(Exception):
    pass


class Channel:
    """A message channel over one end of a SEQPACKET socketpair (thread-safe sends)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._send_lock = threading.Lock()
        self._seq = itertools.count(1)
        self._pending: dict[int, _Pending] = {}
        self._pending_lock = threading.Lock()
        self._partial: list[bytes] = []
        self._partial_fds: list[int] = []
        self.closed = False

    @classmethod
    def pair(cls) -> tuple[socket.socket, socket.socket]:
        return socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)

    def fileno(self) -> int:
        return self.sock.fileno()

    # ---- sending -------------------------------------------------------------

    def send(self, message: dict[str, Any], fds: list[int] | tuple[int, ...] = ()) -> None:
        data = json.dumps(message, separators=(",", ":")).encode()
        chunks = [data[i:i + PACKET] for i in range(0, len(data), PACKET)] or [b""]
        with self._send_lock:
            if self.closed:
                raise ChannelClosed("the channel is closed")
            try:
                for index, chunk in enumerate(chunks):
                    flag = LAST if index == len(chunks) - 1 else MORE
                    if index == 0 and fds:
                        ancillary = rights(fds)
                        self.sock.sendmsg([flag, chunk], ancillary)
                    else:
                        self.sock.sendmsg([flag, chunk])
            except OSError as exc:
                raise ChannelClosed(str(exc)) from None

    def request(self, message: dict[str, Any], fds: list[int] | tuple[int, ...] = (),
                timeout: float | None = 30.0) -> tuple[dict[str, Any], list[int]]:
        """Send a message with a seq and wait for the reply carrying that ack.

        Needs another thread to be reading the channel and calling dispatch_reply().
        """
        seq = next(self._seq)
        pending = _Pending()
        with self._pending_lock:
            self._pending[seq] = pending
        try:
            self.send({**message, "seq": seq}, fds)
            if not pending.event.wait(timeout):
                raise TimeoutError(f"no reply to {message.get('act')} within {timeout}s")
            if pending.reply is None:
                raise ChannelClosed("the channel closed before the reply came")
            return pending.reply, pending.fds
        finally:
            with self._pending_lock:
                self._pending.pop(seq, None)

    def dispatch_reply(self, message: dict[str, Any], fds: list[int]) -> bool:
        """If message answers a request of ours, hand it over and return True."""
        ack = message.get("ack")
        if ack is None or "act" in message:
            return False
        with self._pending_lock:
            pending = self._pending.get(ack)
        if pending is None:
            for fd in fds:
                os.close(fd)
            return True
        pending.reply, pending.fds = message, fds
        pending.event.set()
        return True

    def fail_pending(self) -> None:
        with self._pending_lock:
            for pending in self._pending.values():
                pending.event.set()

    # ---- receiving -----------------------------------------------------------

    def recv(self, block: bool = True) -> tuple[dict[str, Any], list[int]] | None:
        """The next whole message and its fds; None when none is waiting (block=False).

        Raises ChannelClosed at end of stream.
        """
        flags = 0 if block else socket.MSG_DONTWAIT
        while True:
            try:
                data, ancdata, msg_flags, _ = self.sock.recvmsg(PACKET + 1, _ANC, flags)
            except (BlockingIOError, InterruptedError):
                if block:
                    continue
                return None
            except OSError as exc:
                raise ChannelClosed(str(exc)) from None
            if not data:
                raise ChannelClosed("end of stream")
            for level, kind, payload in ancdata:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    fds = array.array("i")
                    fds.frombytes(payload[:len(payload) - len(payload) % fds.itemsize])
                    self._partial_fds.extend(fds)
            self._partial.append(data[1:])
            if data[:1] == MORE:
                continue
            body = b"".join(self._partial)
            fds_out = self._partial_fds
            self._partial, self._partial_fds = [], []
            return json.loads(body), fds_out

    def close(self) -> None:
        with self._send_lock:
            if self.closed:
                return
            self.closed = True
            try:
                self.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self.sock.close()
        self.fail_pending()


class _Pending:
    __slots__ = ("event", "reply", "fds")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.reply: dict[str, Any] | None = None
        self.fds: list[int] = []
