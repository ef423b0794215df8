"""Restart triggers: the memory limit (on the whole process tree) and cron schedules."""

from __future__ import annotations

from conftest import Corral, wait_for

LEAKER = """
import subprocess, sys, time
# the parent stays small; its child grows: only a tree measure sees it (PM2 checks the pid)
child = subprocess.Popen([sys.executable, "-c",
    "import time\\nhoard = []\\nwhile True:\\n    hoard.append(bytearray(4 * 1024 * 1024))\\n"
    "    time.sleep(0.05)"])
while True:
    time.sleep(1)
"""


def test_memory_limit_counts_the_whole_tree(corral: Corral) -> None:
    corral.env["CORRAL_MEMORY_CHECK_INTERVAL"] = "0.3"
    app = corral.script("leaker.py", LEAKER)
    corral.run("start", str(app), "--max-memory-restart", "120M")
    first = corral.wait_status("leaker", "online")
    restarted = wait_for(lambda: (r := corral.app("leaker")) and
                         r["pm2_env"]["restart_time"] >= 1 and r, timeout=30,
                         what="a restart for memory")
    assert restarted["pid"] != first["pid"]
    described = corral.run("describe", "leaker").stdout
    assert "over max_memory_restart 120.0 MB" in described and "process tree" in described
    assert "over max_memory_restart" in (corral.home / "corral.log").read_text()


def test_cron_restart_every_two_seconds_and_stop_keeps_it_stopped(corral: Corral) -> None:
    app = corral.script("tick.py", "import time\nwhile True:\n    time.sleep(1)\n")
    corral.run("start", str(app), "--cron-restart", "*/2 * * * * *")
    wait_for(lambda: (r := corral.app("tick")) and r["pm2_env"]["restart_time"] >= 2,
             timeout=10, what="two cron restarts")
    assert "cron_restart */2 * * * * *" in corral.run("describe", "tick").stdout
    corral.run("stop", "tick")
    stopped = corral.app("tick")
    assert stopped is not None
    count = stopped["pm2_env"]["restart_time"]
    # a tick comes every 2 s; after two more, the stopped app is still stopped
    import time

    deadline = time.monotonic() + 4.5
    while time.monotonic() < deadline:
        row = corral.app("tick")
        assert row is not None and row["pm2_env"]["status"] == "stopped"
        assert row["pm2_env"]["restart_time"] == count
        time.sleep(0.25)


def test_bad_trigger_input(corral: Corral) -> None:
    app = corral.script("x.py", "import time\ntime.sleep(60)\n")
    bad_cron = corral.run("start", str(app), "--cron-restart", "every monday", check=False)
    assert bad_cron.returncode == 1 and "cron_restart 'every monday'" in bad_cron.stderr
    bad_size = corral.run("start", str(app), "--max-memory-restart", "lots", check=False)
    assert bad_size.returncode == 1 and "--max-memory-restart 'lots'" in bad_size.stderr
    (corral.tmp / "eco.yaml").write_text(
        "apps:\n  - name: w\n    script: x.py\n    max_memory_restart: lots\n"
        "    cron_restart: '61 * * * *'\n")
    in_file = corral.run("start", "eco.yaml", check=False)
    assert in_file.returncode == 1 and "key 'max_memory_restart'" in in_file.stderr
    assert corral.jlist() == []
