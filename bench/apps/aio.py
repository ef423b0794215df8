"""asyncio.start_server hello world: keep-alive, fixed response, no HTTP parsing.

Like the reference baselines' aio.py: read, split on the blank line that ends a
request head, write a fixed response per request. A request head that says
`Connection: close` gets `Connection: close` back and the connection is closed.
HOST / PORT from the environment.
"""

import asyncio
import os

import benchcount

BODY = f"hello world, start with cluster {os.getpid()}\n".encode()
HEAD = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: "
        + str(len(BODY)).encode())
KEEP = HEAD + b"\r\n\r\n" + BODY
CLOSE = HEAD + b"\r\nConnection: close\r\n\r\n" + BODY


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    buf = b""
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            buf += data
            if b"\r\n\r\n" not in buf:
                continue
            *heads, buf = buf.split(b"\r\n\r\n")
            for head in heads:
                benchcount.hit()
                if b"Connection: close" in head or b"connection: close" in head.lower():
                    writer.write(CLOSE)
                    await writer.drain()
                    return
                writer.write(KEEP)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def main() -> None:
    server = await asyncio.start_server(handle, os.environ.get("HOST", "127.0.0.1"),
                                        int(os.environ["PORT"]))
    async with server:
        await server.serve_forever()


try:
    asyncio.run(main())
except KeyboardInterrupt:
    pass
