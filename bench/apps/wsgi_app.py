"""WSGI hello world for gunicorn (`gunicorn wsgi_app:app`)."""

import os

import benchcount


def app(environ, start_response):  # type: ignore[no-untyped-def]
    benchcount.hit()
    body = f"hello world, start with cluster {os.getpid()}\n".encode()
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]
