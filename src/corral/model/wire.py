"""The wire format between client and daemon: length-prefixed JSON frames.

A frame is a 4-byte big-endian length followed by that many bytes of UTF-8 JSON.
Requests are {"id", "method", "params"}; responses {"id", "result"} or
{"id", "error": {"message", "code"}}. The first request on a connection is
"hello", which carries the client's version and returns the daemon's.

The JSON codec is the C one under the json module, driven directly: `import
json` pulls in `re` and `enum` (about 12 ms), which would be a quarter of
`corral list`'s budget. Output is byte-for-byte what json.dumps/loads give.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs ~10 ms at import: not on `corral list`'s path
    from typing import Any

try:
    import _json

    class _DecodeContext:
        strict = True
        object_hook = None
        object_pairs_hook = None
        parse_float = float
        parse_int = int
        parse_constant = {
            "NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf"),
        }.__getitem__
        memo: dict[str, str] = {}

    _scan = _json.make_scanner(_DecodeContext())  # type: ignore[arg-type]
    _compact = _json.make_encoder(
        None, None, _json.encode_basestring, None, ":", ",", False, False, True  # type: ignore[arg-type]
    )

    def loads(text: str) -> object:
        start = len(text) - len(text.lstrip(" \t\n\r"))  # json.loads skips it too
        try:
            value, end = _scan(text, start)
        except StopIteration as exc:  # the raw scanner's "no value here"
            raise ValueError(f"expecting a value at {exc.value}") from None
        if end != len(text) and text[end:].strip(" \t\n\r"):
            raise ValueError(f"extra data at {end}")
        return value

    def dumps(value: object) -> str:
        return "".join(_compact(value, 0))

except (ImportError, AttributeError):  # pragma: no cover - interpreters without _json
    import json

    def loads(text: str) -> object:
        return json.loads(text)

    def dumps(value: object) -> str:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


class _Header:
    """A frame's length: 4 bytes, big-endian. struct.Struct(">I")'s size, pack() and
    unpack(), without importing struct (a shared library: ~0.5 ms of `corral list`)."""

    size = 4

    @staticmethod
    def pack(length: int) -> bytes:
        return length.to_bytes(4, "big")

    @staticmethod
    def unpack(data: bytes) -> tuple[int]:
        return (int.from_bytes(data, "big"),)


HEADER = _Header()
MAX_FRAME = 64 * 1024 * 1024


class ProtocolError(Exception):
    pass


def error_frame(request_id: Any, message: str, code: int = 1) -> dict[str, Any]:
    """The one shape of an error reply: code 1 for the user's mistake, 2 for corral's."""
    return {"id": request_id, "error": {"message": message, "code": code}}


def encode(message: object) -> bytes:
    text = dumps(message)
    try:
        body = text.encode()
    except UnicodeEncodeError:
        # a name, path or argument that is not UTF-8 (a file name's bytes, as Python
        # keeps them): refused, naming it, rather than a traceback
        from corral.model.errors import CorralError

        bad = _not_utf8(message)
        shown = bad.encode("utf-8", "surrogateescape")[:200] if bad is not None else b"?"
        raise CorralError(f"{shown!r} is not valid UTF-8 (a file name's bytes?): corral "
                          "keeps names, paths and arguments as UTF-8 text; rename it"
                          ) from None
    return HEADER.pack(len(body)) + body


def _not_utf8(value: object) -> str | None:
    """The first string in value that cannot be encoded as UTF-8 (lone surrogates)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode()
            except UnicodeEncodeError:
                return item
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
    return None


def _recv_exact(sock: object, size: int) -> bytes:
    chunks = []
    while size:
        chunk = sock.recv(size)  # type: ignore[attr-defined]
        if not chunk:
            raise ProtocolError("connection closed by the daemon")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def read_frame(sock: object) -> object:
    (size,) = HEADER.unpack(_recv_exact(sock, HEADER.size))
    if size > MAX_FRAME:
        raise ProtocolError(f"frame of {size} bytes is too large")
    return loads(_recv_exact(sock, size).decode())
