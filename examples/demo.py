"""The quick-start demo: Node's classic cluster example under corral.

    python examples/demo.py

starts examples/app.py (a hello-world HTTP server) in cluster mode with 2
workers on port 3000, asks it six times who answers, and shows the process
table. The app keeps running: `corral stop app`, or `corral kill`.
"""

import os
import socket
import subprocess
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
PORT = int(os.environ.get("PORT", "3000"))


def corral(*args: str, quiet: bool = False) -> int:
    return subprocess.run([sys.executable, "-m", "corral", *args],
                          env=dict(os.environ, PORT=str(PORT)),
                          stdout=subprocess.DEVNULL if quiet else None).returncode


def registered() -> bool:
    """Is the demo's app (named `app`) in corral's list already (a second run)?"""
    out = subprocess.run([sys.executable, "-m", "corral", "jlist"], capture_output=True,
                         text=True)
    return out.returncode == 0 and '"name":"app"' in out.stdout.replace(" ", "")


def port_taken() -> bool:
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex(("127.0.0.1", PORT)) == 0


def main() -> int:
    if registered():
        print("corral: the demo's app runs already (`corral list` shows it); it is asked "
              "again below.\n`corral delete app` removes it, `corral kill` stops "
              "everything.\n")
    elif port_taken():
        print(f"corral: port {PORT} is in use by another program: the demo cannot use "
              f"it.\nRun the demo on another port: PORT={PORT + 1} python "
              "examples/demo.py", file=sys.stderr)
        return 1
    else:
        print(f"$ corral start examples/app.py -i 2 --cluster-policy rr   (port {PORT})")
        if corral("start", os.path.join(HERE, "app.py"), "-i", "2", "--cluster-policy",
                  "rr", "-n", "app", quiet=True) != 0:
            corral("delete", "app", quiet=True)
            print(f"\nThe demo could not start (corral said why, above); its app was "
                  f"removed again. If port {PORT} is taken: PORT={PORT + 1} python "
                  "examples/demo.py", file=sys.stderr)
            return 1
    print(f"\n$ curl 127.0.0.1:{PORT}/   (six times: the two workers take turns)")
    for _ in range(6):
        for attempt in range(50):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{PORT}/", timeout=5) as reply:
                    print(reply.read().decode().rstrip())
                break
            except OSError:
                time.sleep(0.1)
    print("\n$ corral list")
    corral("list")
    print("\nThe app keeps running; `corral reload app` replaces its workers without\n"
          "dropping a request, `corral kill` stops everything.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
