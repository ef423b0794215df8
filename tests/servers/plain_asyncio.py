"""asyncio.start_server with keep-alive; also reports its sockets' properties at /info."""
import asyncio
import json
import os
import socket


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    while True:
        head = await reader.readuntil(b"\r\n\r\n") if not reader.at_eof() else b""
        if not head:
            break
        if head.startswith(b"GET /info"):
            info = {"family": int(sock.family), "nodelay": sock.getsockopt(
                socket.IPPROTO_TCP, socket.TCP_NODELAY), "pid": os.getpid()}
            body = json.dumps(info).encode()
        else:
            body = f"hello world, start with cluster {os.getpid()}\n".encode()
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: " + str(len(body)).encode()
                     + b"\r\n\r\n" + body)
        await writer.drain()
    writer.close()


async def main() -> None:
    server = await asyncio.start_server(handle, os.environ.get("HOST", "127.0.0.1"),
                                        int(os.environ["PORT"]))
    async with server:
        await server.serve_forever()


try:
    asyncio.run(main())
except (KeyboardInterrupt, asyncio.IncompleteReadError):
    pass
