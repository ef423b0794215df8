"""`corral logs` following: log lines and daemon events streamed to whoever asks.

A follower has a bounded queue: a slow follower loses lines (counted and told),
the files never do.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from corral.model.errors import CorralError
from corral.model.wire import encode, error_frame

if TYPE_CHECKING:
    from corral.daemon.supervisor import Instance


class Following:
    """A part of the Daemon (a mixin): the followers and the `follow` request."""

    followers: list[Follower]

    def resolve(self, targets: list[dict[str, Any]]) -> list[Instance]:
        raise NotImplementedError  # the Daemon's (rpc.Rpc)

    def following(self) -> bool:
        return bool(self.followers)

    def publish(self, event: dict[str, Any]) -> None:
        """A log line for whoever follows (bounded queues: a slow follower loses lines,
        counted and told; the files never do)."""
        for follower in self.followers:
            if follower.wants(event):
                follower.offer(event)

    async def stream_logs(self, request: dict[str, Any], reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
        """The `follow` request turns the connection into a stream of log events."""
        params = request.get("params", {})
        try:
            ids = ({i.record.pm_id for i in self.resolve(params["targets"])}
                   if params.get("targets") else None)
        except CorralError as exc:
            writer.write(encode(error_frame(request.get("id"), exc.message, exc.code)))
            await writer.drain()
            return
        follower = Follower(ids, set(params.get("types") or ("out", "err", "daemon")))
        self.followers.append(follower)
        writer.write(encode({"id": request.get("id"), "result": "following"}))
        gone = asyncio.ensure_future(reader.read())  # the client closing ends the stream
        try:
            while not gone.done():
                getter = asyncio.ensure_future(follower.queue.get())
                await asyncio.wait({getter, gone}, return_when=asyncio.FIRST_COMPLETED)
                if not getter.done():
                    getter.cancel()
                    break
                batch = [getter.result()]
                while not follower.queue.empty() and len(batch) < 512:
                    batch.append(follower.queue.get_nowait())
                if follower.dropped:
                    batch.append({"dropped": follower.dropped})
                    follower.dropped = 0
                writer.write(encode({"events": batch}))
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self.followers.remove(follower)
            gone.cancel()


class Follower:
    QUEUE_SIZE = 10_000

    def __init__(self, ids: set[int] | None, types: set[str]) -> None:
        self.ids = ids
        self.types = types
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(self.QUEUE_SIZE)
        self.dropped = 0

    def wants(self, event: dict[str, Any]) -> bool:
        if event["type"] not in self.types:
            return False
        return self.ids is None or event["pm_id"] in self.ids

    def offer(self, event: dict[str, Any]) -> None:
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.dropped += 1


class FollowHandler(logging.Handler):
    """The daemon's own log lines, for `corral logs` without a target."""

    def __init__(self, daemon: Following) -> None:
        super().__init__(logging.INFO)
        self.daemon = daemon

    def emit(self, record: logging.LogRecord) -> None:
        if self.daemon.followers:
            self.daemon.publish({"pm_id": -1, "name": "corral", "type": "daemon",
                                 "at": record.created, "line": self.format(record)})
