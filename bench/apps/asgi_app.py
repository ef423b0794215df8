"""ASGI hello world for uvicorn (`uvicorn asgi_app:app`, or uvicorn_run.py)."""

import os

import benchcount

HEADERS = [(b"content-type", b"text/plain")]


async def app(scope, receive, send):  # type: ignore[no-untyped-def]
    if scope["type"] != "http":
        return
    benchcount.hit()
    body = f"hello world, start with cluster {os.getpid()}\n".encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": HEADERS + [(b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
