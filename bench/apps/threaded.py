"""http.server ThreadingHTTPServer hello world: HTTP/1.1 keep-alive, TCP_NODELAY.

disable_nagle_algorithm = True avoids the 40 ms Nagle/delayed-ACK stall of
HTTP/1.1 keep-alive (headers and body go out in two send()s). A request with
`Connection: close` gets `Connection: close` back. request_queue_size is 511
(socketserver's default is 5) so that a plain process and a cluster get the
same accept backlog. HOST / PORT from the environment.
"""

import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import benchcount


class Hello(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
        benchcount.hit_locked()
        body = f"hello world, start with cluster {os.getpid()}\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:  # the request said Connection: close
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 511

    def handle_error(self, request, client_address):  # type: ignore[no-untyped-def]
        if not isinstance(sys.exc_info()[1], ConnectionError):  # wrk hangs up at the end
            super().handle_error(request, client_address)


with Server((os.environ.get("HOST", "127.0.0.1"), int(os.environ["PORT"])), Hello) as server:
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
