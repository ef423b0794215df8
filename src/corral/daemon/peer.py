"""Who is on the other end of a unix socket (SO_PEERCRED): only our own uid is served."""

from __future__ import annotations

import socket
import struct


def peer_uid(sock: socket.socket) -> int:
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return uid
