"""The quick-start demo: Node's classic cluster example under corral.

    python examples/demo.py

starts examples/app.py (a hello-world HTTP server) in cluster mode with 2
workers on port 3000, asks it six times who answers, and shows the process
table. The app keeps running: `corral stop app`, or `corral kill`.
"""

import os
import subprocess
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
PORT = int(os.environ.get("PORT", "3000"))


def corral(*args: str, quiet: bool = False) -> None:
    subprocess.run([sys.executable, "-m", "corral", *args], check=True,
                   env=dict(os.environ, PORT=str(PORT)),
                   stdout=subprocess.DEVNULL if quiet else None)


def main() -> None:
    print(f"$ corral start examples/app.py -i 2 --cluster-policy rr   (port {PORT})")
    corral("start", os.path.join(HERE, "app.py"), "-i", "2", "--cluster-policy", "rr", "-n",
           "app", quiet=True)
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
    print("\nThe app keeps running; `corral reload app` replaces its workers without "
          "dropping a request, `corral kill` stops everything.")


if __name__ == "__main__":
    main()
