"""Fork-mode lifecycle with real processes: start, list, stop, restart, delete,
crash loops, backoff, stop exit codes, kill timeout and process trees."""

from __future__ import annotations

import time
from pathlib import Path

import psutil

from conftest import ROOT, Corral, alive, pids_running, wait_for

SLEEPER = """
import os, sys, time
with open(sys.argv[1] if len(sys.argv) > 1 else os.devnull, "a") as f:
    f.write(f"{os.getpid()} {os.environ.get('CORRAL_INSTANCE')} {time.time()}\\n")
while True:
    time.sleep(1)
"""


def test_start_list_stop_restart_delete(corral: Corral) -> None:
    hello = ROOT / "examples" / "hello.py"
    corral.run("start", str(hello))
    row = corral.wait_status("hello", "online")
    assert row["pid"] and alive(row["pid"])
    assert psutil.Process(row["pid"]).cmdline()[-1] == str(hello)
    listing = corral.run("list").stdout
    assert "hello" in listing and "online" in listing and str(row["pid"]) in listing
    env = row["pm2_env"]
    for key in ("status", "restart_time", "unstable_restarts", "pm_uptime", "created_at",
                "exec_mode", "instances", "pm_exec_path", "pm_cwd", "pm_out_log_path",
                "pm_err_log_path", "namespace"):
        assert key in env, key
    assert env["exec_mode"] == "fork_mode" and env["pm_exec_path"] == str(hello)
    assert set(row["monit"]) == {"memory", "cpu"} and row["monit"]["memory"] > 1_000_000
    first_pid = row["pid"]

    corral.run("stop", "hello")
    row = corral.app("hello")
    assert row and row["pm2_env"]["status"] == "stopped" and row["pid"] == 0
    assert not alive(first_pid)

    corral.run("restart", "hello")  # of a stopped app: not counted, as in PM2
    row = corral.wait_status("hello", "online")
    assert row["pm2_env"]["restart_time"] == 0 and row["pid"] != first_pid

    corral.run("restart", "0")
    row = corral.wait_status("hello", "online")
    assert row["pm2_env"]["restart_time"] == 1
    second_pid = row["pid"]

    corral.run("delete", "hello")
    assert corral.jlist() == []
    assert not alive(second_pid)


def test_output_reaches_log_files(corral: Corral) -> None:
    app = corral.script("talk.py", """
        import sys
        print("to stdout")
        print("to stderr", file=sys.stderr)
        sys.stdout.buffer.write(b"binary \\xff\\xfe ok\\n")
    """)
    corral.run("start", str(app), "--no-autorestart")
    row = corral.wait_status("talk", "stopped")
    out = Path(row["pm2_env"]["pm_out_log_path"])
    err = Path(row["pm2_env"]["pm_err_log_path"])
    assert out.name == f"talk-out-{row['pm_id']}.log" and out.parent == corral.home / "logs"
    wait_for(lambda: out.read_bytes() == b"to stdout\nbinary \xff\xfe ok\n", what="stdout log")
    assert err.read_text() == "to stderr\n"


def test_fast_writer_loses_nothing(corral: Corral) -> None:
    app = corral.script("flood.py", """
        import sys
        w = sys.stdout.write
        for i in range(200_000):
            w(f"line {i:07d} " + "x" * 80 + "\\n")
    """)
    corral.run("start", str(app), "--no-autorestart")
    row = corral.wait_status("flood", "stopped", timeout=60)
    out = Path(row["pm2_env"]["pm_out_log_path"])
    lines = out.read_text().splitlines()
    assert len(lines) == 200_000
    assert all(line.startswith(f"line {i:07d} ") for i, line in enumerate(lines))


def test_exit_zero_restarts_like_pm2(corral: Corral) -> None:
    app = corral.script("once.py", "import time; time.sleep(0.3)\n")
    corral.run("start", str(app), "--no-wait")  # (without: start fails, test_first_hour)
    wait_for(lambda: (r := corral.app("once")) and r["pm2_env"]["restart_time"] >= 2,
             what="two restarts of an app that exits 0")


def test_stop_exit_codes(corral: Corral) -> None:
    app = corral.script("done.py", "raise SystemExit(0)\n")
    corral.run("start", str(app), "--stop-exit-codes", "0")
    row = corral.wait_status("done", "stopped")
    assert row["pm2_env"]["restart_time"] == 0 and row["pm2_env"]["exit_code"] == 0


def test_no_autorestart(corral: Corral) -> None:
    app = corral.script("fail.py", "raise SystemExit(3)\n")
    corral.run("start", str(app), "--no-autorestart", "--no-wait")
    row = corral.wait_status("fail", "stopped")
    assert row["pm2_env"]["restart_time"] == 0 and row["pm2_env"]["exit_code"] == 3


def test_crash_loop_ends_errored(corral: Corral) -> None:
    app = corral.script("crash.py", "raise SystemExit(1)\n")
    corral.run("start", str(app), "--max-restarts", "3", "--no-wait")
    row = corral.wait_status("crash", "errored")
    # PM2 7.0.4 observed: three unstable exits, two restarts, counter reset, pid 0
    assert row["pm2_env"]["restart_time"] == 2
    assert row["pm2_env"]["unstable_restarts"] == 0
    assert row["pid"] == 0 and row["pm2_env"]["exit_code"] == 1
    described = corral.run("describe", "crash").stdout
    assert "too many unstable restarts" in described


def test_crash_loop_default_max_restarts(corral: Corral) -> None:
    app = corral.script("crash16.py", "raise SystemExit(1)\n")
    corral.run("start", str(app), "--no-wait")
    row = corral.wait_status("crash16", "errored", timeout=40)
    assert row["pm2_env"]["restart_time"] == 15  # 16 unstable exits, PM2's default


def test_exponential_backoff_grows(corral: Corral) -> None:
    stamps = corral.tmp / "stamps"
    app = corral.script("backoff.py", f"""
        import time
        with open({str(stamps)!r}, "a") as f:
            f.write(f"{{time.monotonic()}}\\n")
        raise SystemExit(1)
    """)
    corral.run("start", str(app), "--exp-backoff-restart-delay", "100", "--max-restarts", "100",
               "--no-wait")
    seen_waiting = wait_for(lambda: corral.app("backoff", "waiting restart"),
                            what="status waiting restart")
    assert seen_waiting["pm2_env"]["prev_restart_delay"] >= 100
    wait_for(lambda: stamps.exists() and len(stamps.read_text().split()) >= 6, timeout=20,
             what="six starts")
    corral.run("stop", "backoff")
    times = [float(x) for x in stamps.read_text().split()]
    gaps = [b - a for a, b in zip(times, times[1:])]
    # configured delays 100, 150, 225, 337, 506 ms (+ the interpreter's start-up each time)
    assert gaps[0] >= 0.1
    for earlier, later in zip(gaps, gaps[1:5]):
        assert later > earlier * 1.15, gaps
    assert gaps[4] >= 0.506


def test_restart_delay(corral: Corral) -> None:
    stamps = corral.tmp / "stamps"
    app = corral.script("slow.py", f"""
        import time
        with open({str(stamps)!r}, "a") as f:
            f.write(f"{{time.monotonic()}}\\n")
        raise SystemExit(1)
    """)
    corral.run("start", str(app), "--restart-delay", "600", "--no-wait")
    wait_for(lambda: stamps.exists() and len(stamps.read_text().split()) >= 3, timeout=20,
             what="three starts")
    corral.run("stop", "slow")
    times = [float(x) for x in stamps.read_text().split()]
    assert all(b - a >= 0.6 for a, b in zip(times, times[1:]))


def test_sigint_ignored_killed_after_timeout_with_children(corral: Corral) -> None:
    pids_file = corral.tmp / "pids"
    app = corral.script("stubborn.py", f"""
        import os, signal, subprocess, sys, time
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        ignore = "import signal, time; signal.signal(signal.SIGINT, signal.SIG_IGN); time.sleep(600)"
        child = subprocess.Popen([sys.executable, "-c", ignore])
        # a grandchild in its own session escapes the process group: the tree walk finds it
        escaped = subprocess.Popen([sys.executable, "-c", ignore], start_new_session=True)
        with open({str(pids_file)!r}, "w") as f:
            f.write(f"{{child.pid}} {{escaped.pid}}")
        while True:
            time.sleep(1)
    """)
    corral.run("start", str(app), "-k", "700")
    row = corral.wait_status("stubborn", "online")
    wait_for(lambda: pids_file.exists() and len(pids_file.read_text().split()) == 2,
             what="children started")
    children = [int(p) for p in pids_file.read_text().split()]
    assert all(alive(p) for p in children)
    started = time.monotonic()
    corral.run("stop", "stubborn")
    elapsed = time.monotonic() - started
    assert elapsed >= 0.7, "SIGKILL came before kill_timeout"
    assert not alive(row["pid"])
    wait_for(lambda: not any(alive(p) for p in children), timeout=5, what="children gone")
    assert corral.app("stubborn", "stopped")


def test_graceful_app_stops_before_timeout(corral: Corral) -> None:
    marker = corral.tmp / "cleaned"
    app = corral.script("graceful.py", f"""
        import signal, sys, time
        def bye(*_):
            open({str(marker)!r}, "w").write("clean")
            sys.exit(0)
        signal.signal(signal.SIGINT, bye)
        while True:
            time.sleep(1)
    """)
    corral.run("start", str(app), "-k", "5000")
    corral.wait_status("graceful", "online")
    started = time.monotonic()
    corral.run("stop", "graceful")
    assert time.monotonic() - started < 3
    assert marker.read_text() == "clean"


def test_instances_and_instance_var(corral: Corral) -> None:
    record = corral.tmp / "record"
    app = corral.script("multi.py", SLEEPER)
    corral.run("start", str(app), "-i", "3", "--", str(record))
    wait_for(lambda: record.exists() and len(record.read_text().splitlines()) == 3,
             what="3 instances")
    indexes = sorted(line.split()[1] for line in record.read_text().splitlines())
    assert indexes == ["0", "1", "2"]
    rows = corral.jlist()
    assert [r["pm2_env"]["CORRAL_INSTANCE"] for r in rows] == [0, 1, 2]
    assert len({r["pid"] for r in rows}) == 3
    corral.run("delete", "multi")
    record.unlink()
    corral.run("start", str(app), "-i", "2", "--instance-var", "WORKER", "--", str(record))
    wait_for(lambda: record.exists() and len(record.read_text().splitlines()) == 2,
             what="2 instances")
    row = corral.jlist()[0]
    assert row["pm2_env"]["instance_var"] == "WORKER" and "WORKER" in row["pm2_env"]


def test_instances_max(corral: Corral) -> None:
    import os

    app = corral.script("many.py", SLEEPER)
    corral.run("start", str(app), "-i", "max")
    assert len(corral.jlist()) == (os.cpu_count() or 1)


def test_sigkill_of_app_restarts_it(corral: Corral) -> None:
    app = corral.script("victim.py", SLEEPER)
    corral.run("start", str(app))
    row = corral.wait_status("victim", "online")
    psutil.Process(row["pid"]).kill()
    new = wait_for(lambda: (r := corral.app("victim", "online")) and r["pid"] != row["pid"]
                   and r, what="a replacement")
    assert new["pm2_env"]["restart_time"] == 1
    assert pids_running(app) == [new["pid"]]


def test_reset_and_signal(corral: Corral) -> None:
    got = corral.tmp / "got"
    app = corral.script("usr1.py", f"""
        import signal, time
        def on_usr1(*_):
            open({str(got)!r}, "w").write("usr1")
        signal.signal(signal.SIGUSR1, on_usr1)
        open({str(got)!r} + ".ready", "a").write("ready\\n")
        while True:
            time.sleep(1)
    """)
    corral.run("start", str(app))
    corral.wait_status("usr1", "online")
    corral.run("restart", "usr1")
    assert corral.wait_status("usr1", "online")["pm2_env"]["restart_time"] == 1
    corral.run("reset", "usr1")
    assert corral.app("usr1")["pm2_env"]["restart_time"] == 0  # type: ignore[index]
    ready = Path(f"{got}.ready")
    wait_for(lambda: ready.exists() and len(ready.read_text().split()) == 2,
             what="the restarted app's handler")
    corral.run("sendSignal", "SIGUSR1", "usr1")
    wait_for(lambda: got.exists() and got.read_text() == "usr1", what="SIGUSR1 handled")


def test_crash_loop_after_a_long_stable_run_still_ends_errored(corral: Corral) -> None:
    """PM2 counts unstable runs only within min_uptime × max_restarts of the start; a loop
    that begins later restarts forever there. corral counts consecutive short runs."""
    flag = corral.tmp / "crash-now"
    app = corral.script("late.py", f"""
        import os, time
        if os.path.exists({str(flag)!r}):
            raise SystemExit(2)
        while True:
            time.sleep(0.05)
    """)
    corral.run("start", str(app), "--max-restarts", "3", "--min-uptime", "300")
    row = corral.wait_status("late", "online")
    started = psutil.Process(row["pid"]).create_time()
    # past PM2's window (300 ms × 3) before the loop begins
    wait_for(lambda: time.time() - started > 1.0, what="a long stable run")
    flag.write_text("")
    psutil.Process(row["pid"]).kill()  # its next runs crash at once
    errored = corral.wait_status("late", "errored")
    assert errored["pm2_env"]["restart_time"] == 3
