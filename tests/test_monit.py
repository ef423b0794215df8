"""`corral monit` driven through tmux: it shows the apps, a key restarts one, q quits and
gives the terminal back."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys

import pytest

from conftest import Corral, wait_for

TMUX = shutil.which("tmux")


@pytest.mark.skipif(TMUX is None, reason="tmux is not installed")
def test_monit_in_tmux(corral: Corral) -> None:
    app = corral.script("busy.py", "import time\nprint('monit sees me', flush=True)\n"
                        "while True:\n    time.sleep(1)\n")
    corral.run("start", str(app))
    server = f"corral-test-{os.getpid()}"

    def tmux(*args: str) -> str:
        return subprocess.run([str(TMUX), "-L", server, *args], capture_output=True,
                              text=True, timeout=20).stdout

    def screen() -> str:
        return tmux("capture-pane", "-p", "-t", "t")

    tmux("new-session", "-d", "-s", "t", "-x", "130", "-y", "32", "bash --norc --noprofile")
    try:
        command = (f"export CORRAL_HOME={shlex.quote(str(corral.home))}; "
                   f"{shlex.quote(sys.executable)} -m corral monit")
        tmux("send-keys", "-t", "t", command, "Enter")
        wait_for(lambda: "corral monit ·" in screen() and "busy" in screen(), timeout=20,
                 what="the dashboard")
        shown = screen()
        assert "online" in shown and "monit sees me" in shown
        tmux("send-keys", "-t", "t", "r")
        wait_for(lambda: (r := corral.app("busy")) and r["pm2_env"]["restart_time"] == 1,
                 timeout=20, what="a restart from the keyboard")
        wait_for(lambda: "restart: busy" in screen(), what="the dashboard to say so")
        tmux("send-keys", "-t", "t", "q")
        wait_for(lambda: "corral monit ·" not in screen(), what="the dashboard to quit")
        # the shell is back and monit exited 0 (the marker is split so that the echoed
        # command line itself cannot match)
        tmux("send-keys", "-t", "t", 'echo "monit-exit""-status=$?"', "Enter")
        wait_for(lambda: "monit-exit-status=" in screen(), what="the shell to answer")
        assert "monit-exit-status=0" in screen()
    finally:
        tmux("kill-server")
