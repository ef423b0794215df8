"""Node's classic hello world, in Python: an HTTP server on port 3000 (or $PORT).

Run it alone (`python examples/app.py`), under corral.cluster
(`python examples/cluster_demo.py`) or in corral's cluster mode: the code does
not change.
"""

import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Hello(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
        body = f"hello world, start with cluster {os.getpid()}\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:  # the client asked for Connection: close: say we do
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # quiet, like the Node example


class Server(ThreadingHTTPServer):
    daemon_threads = False  # on Ctrl-C, finish the requests in hand before exiting


def main() -> None:
    host = os.environ.get("HOST", "127.0.0.1")
    port = int(os.environ.get("PORT", "3000"))
    Hello.disable_nagle_algorithm = True  # one packet per response, no 40 ms delayed-ACK stall
    with Server((host, port), Hello) as server:
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
