"""uvicorn.run with LOOP=asyncio or uvloop, one process."""
import os

import uvicorn


async def app(scope, receive, send):  # type: ignore[no-untyped-def]
    if scope["type"] != "http":
        return
    body = f"hello world, start with cluster {os.getpid()}\n".encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body})


uvicorn.run(app, host=os.environ.get("HOST", "127.0.0.1"), port=int(os.environ["PORT"]),
            loop=os.environ.get("LOOP", "asyncio"), http="h11", log_level="warning",
            access_log=False, lifespan="off")
