"""Logs: every line once and in order, stamped, rotated, followed, flushed."""

from __future__ import annotations

import gzip
import json
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from conftest import Corral, wait_for

BURST = """
import os, sys
n = int(sys.argv[1])
tag = os.environ["CORRAL_INSTANCE"]
w = sys.stdout.write
for i in range(n):
    w(f"{tag} {i:07d} " + "x" * 80 + "\\n")
"""


def all_lines(path: Path) -> list[str]:
    """A log file and its rotations (.N and .N.gz), oldest first."""
    wait_for(lambda: not list(path.parent.glob(path.name + ".rotating-*")),
             what="rotations to finish")
    parts = []
    for rotated in sorted(path.parent.glob(path.name + ".*"),
                          key=lambda p: -int(p.name[len(path.name) + 1:].split(".")[0])):
        data = gzip.decompress(rotated.read_bytes()) if rotated.suffix == ".gz" \
            else rotated.read_bytes()
        parts.append(data.decode())
    parts.append(path.read_text() if path.exists() else "")
    return "".join(parts).splitlines()


def test_burst_every_line_once_in_order_across_rotations(corral: Corral) -> None:
    app = corral.script("burst.py", BURST)
    for fmt_args, name in (([], "plain"), (["--log-date-format", "YYYY-MM-DD HH:mm:ss.SSS"],
                                           "dated")):
        corral.run("start", str(app), "-n", name, "-i", "4", "--exec-mode", "fork", "-f",
                   "--no-autorestart", "--log-max-size", "4M", *fmt_args, "--", "200000")
        latencies = []
        while True:  # `list` during the flood answers promptly
            started = time.perf_counter()
            rows = [r for r in corral.jlist() if r["name"] == name]
            latencies.append(time.perf_counter() - started)
            if all(r["pm2_env"]["status"] == "stopped" for r in rows):
                break
        print(f"{name}: corral jlist during the burst: median "
              f"{sorted(latencies)[len(latencies) // 2] * 1000:.0f} ms, "
              f"max {max(latencies) * 1000:.0f} ms over {len(latencies)} calls")
        for row in rows:
            out = Path(row["pm2_env"]["pm_out_log_path"])
            assert list(out.parent.glob(out.name + ".1")), "no rotation happened"
            lines = all_lines(out)
            assert len(lines) == 200_000
            tag = str(row["pm2_env"]["CORRAL_INSTANCE"])
            for i, line in enumerate(lines):
                body = line.split(": ", 1)[1] if fmt_args else line
                assert body == f"{tag} {i:07d} " + "x" * 80, (i, line)


def test_partial_line_reaches_the_file_and_is_completed_at_exit(corral: Corral) -> None:
    gate = corral.tmp / "gate"
    app = corral.script("abc.py", f"""
        import os, sys, time
        sys.stdout.write("abc"); sys.stdout.flush()
        while not os.path.exists({str(gate)!r}):
            time.sleep(0.05)
        sys.stdout.write("def")
    """)
    corral.run("start", str(app), "--no-autorestart", "--time")
    out = Path(corral.app("abc")["pm2_env"]["pm_out_log_path"])  # type: ignore[index]
    started = time.monotonic()
    wait_for(lambda: out.exists() and out.read_text().endswith("abc"), timeout=1.0,
             interval=0.01, what="abc in the file within a second")
    assert time.monotonic() - started < 1.0
    gate.write_text("")
    corral.wait_status("abc", "stopped")
    text = out.read_text()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d: abcdef\n", text), text


def test_long_lines_binary_and_streams(corral: Corral) -> None:
    app = corral.script("odd.py", """
        import sys
        sys.stdout.buffer.write(b"y" * 1_000_000 + b"\\n")
        sys.stdout.buffer.write(b"bad \\xff\\xfe utf8\\n")
        for i in range(1000):
            print(f"out {i}")
            print(f"err {i}", file=sys.stderr)
    """)
    corral.run("start", str(app), "--no-autorestart")
    row = corral.wait_status("odd", "stopped")
    out = Path(row["pm2_env"]["pm_out_log_path"]).read_bytes().split(b"\n")
    assert out[0] == b"y" * 1_000_000 and out[1] == b"bad \xff\xfe utf8"
    assert out[2:-1] == [f"out {i}".encode() for i in range(1000)]
    err = Path(row["pm2_env"]["pm_err_log_path"]).read_text().splitlines()
    assert err == [f"err {i}" for i in range(1000)]


def test_files_options(corral: Corral) -> None:
    app = corral.script("two.py", "import sys\nprint('o')\nprint('e', file=sys.stderr)\n")
    corral.run("start", str(app), "-n", "merged", "-i", "2", "--exec-mode", "fork",
               "--merge-logs", "--no-autorestart", "-l", "-o", str(corral.tmp / "o.log"))
    wait_for(lambda: all(r["pm2_env"]["status"] == "stopped" for r in corral.jlist()),
             what="both done")
    assert (corral.tmp / "o.log").read_text() == "o\no\n"
    assert (corral.home / "logs" / "merged-error.log").read_text() == "e\ne\n"
    combined = (corral.home / "logs" / "merged.log").read_text().splitlines()
    assert sorted(combined) == ["e", "e", "o", "o"]
    corral.run("start", str(app), "-n", "quiet", "-o", "NULL", "--no-autorestart", "-f")
    row = corral.wait_status("quiet", "stopped")
    assert row["pm2_env"]["pm_out_log_path"] == "/dev/null"
    assert Path(row["pm2_env"]["pm_err_log_path"]).read_text() == "e\n"
    corral.run("start", str(app), "-n", "none", "--disable-logs", "--no-autorestart", "-f")
    row = corral.wait_status("none", "stopped")
    assert row["pm2_env"]["pm_err_log_path"] == "/dev/null"


def test_json_log_type(corral: Corral) -> None:
    app = corral.script("j.py", "import sys\nprint('hello')\nprint('oops', file=sys.stderr)\n")
    corral.run("start", str(app), "--log-type", "json", "--no-autorestart")
    row = corral.wait_status("j", "stopped")
    line = json.loads(Path(row["pm2_env"]["pm_out_log_path"]).read_text())
    assert line["message"] == "hello" and line["type"] == "out"
    assert line["process_id"] == row["pm_id"] and line["app_name"] == "j"
    assert re.match(r"\d{4}-\d\d-\d\dT", line["timestamp"])
    err = json.loads(Path(row["pm2_env"]["pm_err_log_path"]).read_text())
    assert err["type"] == "err" and err["message"] == "oops"


def test_logs_command_tail_and_follow(corral: Corral) -> None:
    gate = corral.tmp / "gate"
    app = corral.script("talk.py", f"""
        import os, sys, time
        for i in range(30):
            print(f"before {{i}}")
        sys.stdout.flush()
        while not os.path.exists({str(gate)!r}):
            time.sleep(0.05)
        for i in range(5):
            print(f"live {{i}}")
            print(f"live-err {{i}}", file=sys.stderr)
        time.sleep(600)
    """)
    corral.run("start", str(app))
    out = Path(corral.app("talk")["pm2_env"]["pm_out_log_path"])  # type: ignore[index]
    wait_for(lambda: out.exists() and "before 29" in out.read_text(), what="the first lines")
    shown = corral.run("logs", "talk", "--nostream", "--lines", "3", "--out").stdout
    assert [ln for ln in shown.splitlines() if "before" in ln] == [
        "0|talk | before 27", "0|talk | before 28", "0|talk | before 29"]
    follower = subprocess.Popen(
        [sys.executable, "-m", "corral", "logs", "talk", "--raw", "--lines", "0"],
        env=corral.env, stdout=subprocess.PIPE, text=True)
    try:
        assert follower.stdout is not None
        seen: list[str] = []
        reader = threading.Thread(target=lambda: [seen.append(x.rstrip("\n"))
                                                  for x in follower.stdout])  # type: ignore
        reader.daemon = True
        reader.start()
        time.sleep(0.5)  # the follower connects before the app goes on
        gate.write_text("")
        wait_for(lambda: len([s for s in seen if s.startswith("live")]) == 10,
                 what="ten live lines")
        assert [s for s in seen if s.startswith("live ")] == [f"live {i}" for i in range(5)]
    finally:
        follower.terminate()
        follower.wait(10)
    as_json = corral.run("logs", "talk", "--nostream", "--lines", "1", "--json", "--err").stdout
    assert json.loads(as_json.splitlines()[-1])["message"] == "live-err 4"
    everything = corral.run("logs", "--nostream", "--lines", "50").stdout
    assert "PM|corral" in everything and "0|talk" in everything


def test_flush_and_reload_logs(corral: Corral) -> None:
    app = corral.script("f.py", "import time\nprint('x', flush=True)\ntime.sleep(600)\n")
    corral.run("start", str(app))
    out = Path(corral.app("f")["pm2_env"]["pm_out_log_path"])  # type: ignore[index]
    wait_for(lambda: out.exists() and out.read_text() == "x\n", what="a line")
    assert "emptied" in corral.run("flush", "f").stdout
    assert out.read_text() == ""
    out.rename(out.with_suffix(".old"))
    assert "reopened" in corral.run("reloadLogs").stdout
    assert out.exists()


def test_log_disk_errors_are_reported_and_the_app_runs_on(corral: Corral) -> None:
    app = corral.script("full.py", "import time\nwhile True:\n    print('x' * 100, "
                        "flush=True)\n    time.sleep(0.01)\n")
    corral.run("start", str(app), "-o", "/dev/full")
    wait_for(lambda: "No space left on device" in corral.run("describe", "full").stdout,
             what="ENOSPC in describe")
    row = corral.app("full", "online")
    assert row is not None and row["pm2_env"]["restart_time"] == 0
    assert "cannot write /dev/full" in (corral.home / "corral.log").read_text()


def test_slow_follower_does_not_cost_the_files(corral: Corral) -> None:
    from corral.client.connection import Client
    from corral.store.home import Home

    app = corral.script("flood.py", BURST)
    corral.run("start", str(app), "-n", "flood", "--no-autorestart", "--", "300000")
    client = Client(Home(str(corral.home)))
    frames: Any = client.stream("follow", targets=[], types=["out"])
    next(frames)  # following, and never reading again: a stuck terminal
    row = corral.wait_status("flood", "stopped", timeout=120)
    client.close()
    assert len(all_lines(Path(row["pm2_env"]["pm_out_log_path"]))) == 300_000


def test_rotation_retain_and_gzip(corral: Corral) -> None:
    app = corral.script("rot.py", BURST)
    corral.run("start", str(app), "-n", "rot", "--no-autorestart", "--log-max-size", "200K",
               "--log-retain", "3", "--log-compress", "--", "20000")
    row = corral.wait_status("rot", "stopped", timeout=60)
    out = Path(row["pm2_env"]["pm_out_log_path"])
    wait_for(lambda: sorted(p.name for p in out.parent.glob(out.name + ".*")) == [
        f"{out.name}.{n}.gz" for n in (1, 2, 3)], what="three gzipped rotations")
    newest = all_lines(out)
    assert newest[-1].startswith("0 0019999 ")
    numbers = [int(line.split()[1]) for line in newest]
    assert numbers == list(range(numbers[0], 20000))  # the kept tail is whole and in order


def test_follower_goes_on_with_the_next_daemon(corral: Corral) -> None:
    app = corral.script("count.py", """
        import time
        i = 0
        while True:
            print(f"n {i}", flush=True)
            i += 1
            time.sleep(0.05)
    """)
    corral.run("start", str(app))
    follower = subprocess.Popen(
        [sys.executable, "-m", "corral", "logs", "count", "--raw", "--lines", "0"],
        env=corral.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        seen: list[str] = []
        errors: list[str] = []
        for stream, into in ((follower.stdout, seen), (follower.stderr, errors)):
            threading.Thread(target=lambda s=stream, i=into: [i.append(x.rstrip("\n"))
                                                              for x in s],
                             daemon=True).start()
        wait_for(lambda: len(seen) > 5, what="live lines")
        old = corral.daemon_pid()
        corral.run("update")
        new = corral.daemon_pid()
        assert new != old
        wait_for(lambda: f"corral: following daemon {new}; lines written in between are in "
                 "the files" in errors, what="the follower to find the new daemon")
        count = len(seen)
        wait_for(lambda: len(seen) > count + 5, what="lines from the new daemon")
        numbers = [int(line.split()[1]) for line in seen]
        assert numbers == sorted(set(numbers))  # in order, none twice
        assert follower.poll() is None
    finally:
        follower.terminate()
        follower.wait(10)
