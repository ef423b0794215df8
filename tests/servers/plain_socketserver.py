"""socketserver.TCPServer, one request at a time; SLOW_MS delays each answer."""
import os
import socketserver
import time

SLOW = int(os.environ.get("SLOW_MS", "0")) / 1000


class Handler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
            pass
        time.sleep(SLOW)
        body = f"hello world, start with cluster {os.getpid()}\n".encode()
        self.wfile.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: "
                         + str(len(body)).encode() + b"\r\n\r\n" + body)


with socketserver.TCPServer((os.environ.get("HOST", "127.0.0.1"), int(os.environ["PORT"])),
                            Handler) as server:
    server.serve_forever()
