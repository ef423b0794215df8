"""The plainest server: a blocking accept() in a loop, no select (so the accept waits
inside the kernel on the listening socket itself); answers each connection with an
HTTP response naming its pid."""
import os
import socket

sock = socket.socket()
sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
sock.bind(("127.0.0.1", int(os.environ["PORT"])))
sock.listen(64)
while True:
    conn, _ = sock.accept()
    with conn:
        conn.recv(65536)
        body = f"hello world, start with cluster {os.getpid()}\n".encode()
        conn.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: "
                     + str(len(body)).encode() + b"\r\n\r\n" + body)
