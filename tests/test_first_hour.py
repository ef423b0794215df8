"""A user's first hour (issue 14), one test per point, with real daemons and processes:
failed starts that say why, a list that fits 80 columns, every setting visible, help
on typos, completion, names, Python detection, quiet stops, crash loops, log times,
the demo, the saved list, progress and the docs."""

from __future__ import annotations

import calendar
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import ROOT, Corral, free_port, wait_for

TMUX = shutil.which("tmux")
FAILS = 'import os\nif "DATABASE_URL" not in os.environ:\n    raise SystemExit("missing DATABASE_URL")\n'
SLEEPER = "import time\nwhile True:\n    time.sleep(1)\n"


@pytest.fixture
def holder() -> Iterator[int]:
    """A port held by this test process (another server, for corral)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


def console_script(corral: Corral, name: str, body: str) -> Path:
    """A Python console script in a bin folder of the test (as pip installs them)."""
    folder = corral.tmp / "bin"
    folder.mkdir(exist_ok=True)
    path = folder / name
    path.write_text(f"#!{sys.executable}\n{body}")
    path.chmod(0o755)
    return path


def with_path(corral: Corral) -> dict[str, str]:
    return dict(corral.env, PATH=f"{corral.tmp / 'bin'}{os.pathsep}{corral.env['PATH']}")


# ---- 1. start waits for the outcome it can know ---------------------------------------

def test_01_start_fails_with_the_apps_own_error(corral: Corral, holder: int) -> None:
    web = corral.script("web.py", FAILS)
    env = {k: v for k, v in corral.env.items() if k != "DATABASE_URL"}
    began = time.monotonic()
    proc = corral.run("start", str(web), "-i", "2", check=False, env=env)
    assert proc.returncode == 1, proc
    assert time.monotonic() - began < 10
    assert "missing DATABASE_URL" in proc.stderr
    assert "web (id 0, 1) exited with code 1" in proc.stderr
    assert str(corral.home / "logs" / "web-error-0.log") in proc.stderr
    assert "corral keeps restarting it" in proc.stderr
    corral.run("delete", "web")
    # a fork app that exits at once: the same, within min_uptime
    proc = corral.run("start", str(web), "-n", "forked", check=False, env=env)
    assert proc.returncode == 1 and "missing DATABASE_URL" in proc.stderr
    # --no-wait: launched, no verdict
    proc = corral.run("start", str(web), "-n", "nowait", "--no-wait", check=False, env=env)
    assert proc.returncode == 0, proc
    # an app that finishes on purpose is no failure
    done = corral.script("done.py", "print('done')\n")
    assert corral.run("start", str(done), "--no-autorestart").returncode == 0
    # a port in use: the app's line, and who holds the port (this test)
    for mode in (["-i", "2"], []):
        name = f"held{len(mode)}"
        proc = corral.run("start", str(ROOT / "examples" / "app.py"), "-n", name, *mode,
                          check=False, env=dict(corral.env, PORT=str(holder)))
        assert proc.returncode == 1, proc
        assert "Address already in use" in proc.stderr
        assert f"port {holder} is in use by pid {os.getpid()}" in proc.stderr
        corral.run("delete", name)
    # restart and a file's apps are judged the same way
    flag = corral.tmp / "broken"
    app = corral.script("flaky.py", f"import os, time\nif os.path.exists({str(flag)!r}):\n"
                        "    raise SystemExit('broken config')\nwhile True:\n"
                        "    time.sleep(1)\n")
    corral.run("start", str(app))
    flag.write_text("1")
    proc = corral.run("restart", "flaky", check=False)
    assert proc.returncode == 1 and "broken config" in proc.stderr
    (corral.tmp / "eco.json").write_text(json.dumps({"apps": [
        {"name": "fileapp", "script": str(web)}]}))
    proc = corral.run("start", "eco.json", check=False, env=env)
    assert proc.returncode == 1 and "missing DATABASE_URL" in proc.stderr


# ---- 2. describe and jlist show every setting ---------------------------------------

def test_02_describe_and_jlist_show_every_setting(corral: Corral) -> None:
    port = free_port()
    watched = corral.tmp / "src"
    watched.mkdir()
    app = corral.script("svc.py", SLEEPER)
    corral.run("start", str(app), "--max-memory-restart", "200M", "--cron-restart",
               "0 3 * * *", "--watch", str(watched), "--ignore-watch", "*.tmp",
               "--log-date-format", "YYYY-MM-DD HH:mm", "--merge-logs", "--log-max-size",
               "10M", "--log-retain", "3", "--health-tcp", f"127.0.0.1:{port}",
               "--kill-signal", "SIGTERM", "-k", "3000", "--restart-delay", "500")
    shown = corral.run("describe", "svc").stdout
    for expected in ("max memory restart         200.0 MB", "cron restart               0 3 * * *",
                     f"watch                      {watched}", "ignore watch               *.tmp",
                     "log date format            YYYY-MM-DD HH:mm", "merge logs                 yes",
                     "log rotation               at 10.0 MB, keep 3",
                     f"health check               tcp 127.0.0.1:{port}",
                     "kill signal                SIGTERM", "kill timeout               3000 ms",
                     "restart delay              500 ms", "autorestart                yes",
                     "script args                none", "depends on                 none"):
        assert expected in shown, (expected, shown)
    assert "True" not in shown and "None" not in shown and "False" not in shown
    env = corral.app("svc")["pm2_env"]  # type: ignore[index]
    assert env["max_memory_restart"] == 200 * 1024 * 1024 and env["cron_restart"] == "0 3 * * *"
    assert env["watch"] == [str(watched)] and env["ignore_watch"] == ["*.tmp"]
    assert env["log_date_format"] == "YYYY-MM-DD HH:mm" and env["merge_logs"] is True
    assert env["log_max_size"] == 10 * 1024 * 1024 and env["log_retain"] == 3
    assert env["health_check"]["kind"] == "tcp" and env["kill_signal"] == "SIGTERM"
    assert env["kill_timeout"] == 3000 and env["restart_delay"] == 500
    # the interpreter of a console script: its #! line
    console_script(corral, "serve-it", SLEEPER)
    corral.run("start", "serve-it --quiet", env=with_path(corral))
    assert f"{sys.executable} (the #! line of serve-it)" in corral.run(
        "describe", "serve-it").stdout
    # unstable restarts agree with "too many unstable restarts"
    crash = corral.script("crash.py", "raise SystemExit(3)\n")
    corral.run("start", str(crash), "--max-restarts", "2", check=False)
    corral.wait_status("crash", "errored")
    shown = corral.run("describe", "crash").stdout
    assert "too many unstable restarts" in shown
    assert "unstable restarts          2 in a row: the limit (max_restarts), errored" in shown


# ---- 3. a CORRAL_HOME of any length -----------------------------------------------------

def test_03_a_long_corral_home_works(corral: Corral) -> None:
    long_home = corral.tmp / ("h" * 70) / ("o" * 70)
    assert len(str(long_home / "cluster.sock")) > 108
    corral.home = long_home
    corral.env["CORRAL_HOME"] = str(long_home)
    port = free_port()
    corral.run("start", str(ROOT / "examples" / "app.py"), "-i", "2", "-n", "app",
               env=dict(corral.env, PORT=str(port)))
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as reply:
        assert b"hello world" in reply.read()
    # the daemon dies; the workers come back to the next one through cluster.sock
    os.kill(corral.daemon_pid(), signal.SIGKILL)
    assert len(corral.jlist()) == 2
    wait_for(lambda: (long_home / "corral.log").read_text().count("is back with its "
                                                                   "listeners") == 2,
             what="the workers to reattach through the long path")


# ---- 4. the list fits 80 columns ---------------------------------------------------------

@pytest.mark.skipif(TMUX is None, reason="tmux is not installed")
def test_04_list_fits_80_columns_in_tmux_with_100_apps(corral: Corral) -> None:
    corral.run("start", "sleep 1000", "-n", "an-application-with-a-rather-long-name",
               "-i", "60", "--no-wait")
    corral.run("start", "sleep 999", "-i", "40", "--no-wait")
    server = f"corral-fh-{os.getpid()}"

    def tmux(*args: str) -> str:
        return subprocess.run([str(TMUX), "-L", server, *args], capture_output=True,
                              text=True, timeout=20).stdout

    tmux("new-session", "-d", "-s", "t", "-x", "80", "-y", "24", "bash --norc --noprofile")
    try:
        tmux("set-option", "-t", "t", "history-limit", "5000")
        command = (f"export CORRAL_HOME={shlex.quote(str(corral.home))}; "
                   f"{shlex.quote(sys.executable)} -m corral list; echo \"list-\"done")
        tmux("send-keys", "-t", "t", command, "Enter")
        wait_for(lambda: "\nlist-done" in "\n" + tmux("capture-pane", "-p", "-t", "t"),
                 timeout=30, what="the list")
        screen = tmux("capture-pane", "-p", "-J", "-S", "-400", "-t", "t")
    finally:
        tmux("kill-server")
    table = [line for line in screen.splitlines() if line[:1] in "┌│├└"]
    assert len(table) == 100 + 4, screen
    assert all(len(line) <= 80 for line in table)
    assert all(line.endswith(("│", "┐", "┤", "┘")) for line in table), screen
    rows = [line for line in table if line.startswith("│ ") and "online" in line]
    assert len(rows) == 100 and all("an-applicati" in r and "…" in r or "sleep" in r
                                    for r in rows)


def test_04_list_narrow_layouts(corral: Corral) -> None:
    corral.run("start", "sleep 1000", "-n", "x" * 40, "--no-wait")
    for width in (120, 80, 60, 40):
        out = corral.run("list", env=dict(corral.env, COLUMNS=str(width))).stdout
        assert max(len(line) for line in out.splitlines()) <= width, out
        assert "online" in out
    # `list` stays fast: nothing heavy on its path
    script = Path(sys.executable).parent / "corral"
    command = [str(script)] if script.exists() else ["-m", "corral"]
    proc = subprocess.run([sys.executable, "-X", "importtime", *command, "list"],
                          env=dict(corral.env, COLUMNS="80"), capture_output=True,
                          text=True, timeout=60)
    loaded = set(re.findall(r"\|\s+([\w.]+)\s*$", proc.stderr, re.M))
    heavy = loaded & {"typing", "json", "re", "argparse", "psutil", "textwrap", "difflib",
                      "shutil", "socket", "corral.client.api"}
    assert not heavy, sorted(heavy)


# ---- 5. typos -----------------------------------------------------------------------------

def test_05_typos_get_suggestions(corral: Corral) -> None:
    app = corral.script("app.py", SLEEPER)
    proc = corral.run("strat", str(app), check=False)
    assert proc.returncode == 2 and "unknown command 'strat'; did you mean start?" in proc.stderr
    proc = corral.run("start", "--instanses", "2", str(app), check=False)
    assert proc.returncode == 2
    assert "usage: corral start" in proc.stderr and "did you mean --instances?" in proc.stderr
    assert "usage: corral [-h]" not in proc.stderr
    proc = corral.run("start", "--inst", "2", str(app), check=False)  # no abbreviations
    assert proc.returncode == 2 and "--instances" in proc.stderr
    proc = corral.run("describe", "0", "--evn", check=False)
    assert "usage: corral describe" in proc.stderr and "did you mean --env?" in proc.stderr
    # `start --watch app.py`: the script is started (and said so), its folder watched
    proc = corral.run("start", "--watch", str(app))
    assert "taken as the app to start" in proc.stderr
    row = corral.wait_status("app", "online")
    assert row["pm2_env"]["watch"] is True


# ---- 6. completion --------------------------------------------------------------------------

def test_06_completion_scripts(corral: Corral) -> None:
    assert corral.run("completion", "--names").stdout == ""
    assert not corral.home.exists()  # completing never starts a daemon
    corral.run("start", str(corral.script("web.py", SLEEPER)))
    script = corral.tmp / "corral.bash"
    script.write_text(corral.run("completion", "bash").stdout)
    runner = (f"source {shlex.quote(str(script))}; corral() {{ {shlex.quote(sys.executable)} "
              "-m corral \"$@\"; }; "
              "COMP_WORDS=(corral sta); COMP_CWORD=1; _corral; echo \"1:${COMPREPLY[*]}\"; "
              "COMP_WORDS=(corral stop w); COMP_CWORD=2; _corral; echo \"2:${COMPREPLY[*]}\"; "
              "COMP_WORDS=(corral start --insta); COMP_CWORD=2; _corral; "
              "echo \"3:${COMPREPLY[*]}\"")
    out = subprocess.run(["bash", "--norc", "-c", runner], env=corral.env, cwd=corral.tmp,
                         capture_output=True, text=True, timeout=60).stdout
    assert "1:start startOrReload startOrRestart startup status" in out, out
    assert "web" in out.split("2:")[1].splitlines()[0], out
    assert "3:--instance-var --instances" in out, out
    fish = corral.run("completion", "fish").stdout
    assert "__fish_use_subcommand" in fish and "completion --names" in fish
    zsh = corral.run("completion", "zsh").stdout
    assert "bashcompinit" in zsh and "complete -o filenames -F _corral corral" in zsh


# ---- 7. a quoted command is named after its program -------------------------------------------

def test_07_quoted_command_named_after_its_program(corral: Corral) -> None:
    console_script(corral, "myserver", SLEEPER)
    corral.run("start", "myserver main:app --port 8000", env=with_path(corral))
    row = corral.wait_status("myserver", "online")
    assert row["pm2_env"]["pm_out_log_path"].endswith("/myserver-out-0.log")
    corral.run("start", f"{sys.executable} -u {corral.script('job.py', SLEEPER)} --x 1")
    corral.wait_status("job", "online")


# ---- 8. Python detection ----------------------------------------------------------------------

def test_08_python_commands_run_in_cluster_mode(corral: Corral) -> None:
    port = free_port()
    corral.run("start", f"{sys.executable} -m http.server {port} --bind 127.0.0.1", "-i", "2")
    rows = corral.jlist()
    assert [r["pm2_env"]["exec_mode"] for r in rows] == ["cluster_mode"] * 2
    assert rows[0]["name"] == "http.server"
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as reply:
        assert b"Directory listing" in reply.read()
    # a program that cannot be clustered: what to do instead
    proc = corral.run("start", "sleep 100", "-i", "2")
    assert "sleep is neither" in proc.stderr and "$CORRAL_INSTANCE" in proc.stderr
    # gunicorn has its own workers
    console_script(corral, "gunicorn", SLEEPER)
    proc = corral.run("start", "gunicorn app:app", "-i", "2", "--listen-timeout", "500",
                      env=with_path(corral))
    assert "gunicorn runs its own workers" in proc.stderr
    # node_args in a file on a Python app: a warning, nothing passed to python
    (corral.tmp / "eco.json").write_text(json.dumps({"apps": [{
        "name": "py", "script": str(corral.script("py.py", SLEEPER)),
        "node_args": "--max-old-space-size=100"}]}))
    proc = corral.run("start", "eco.json")
    assert "node_args '--max-old-space-size=100' ignored" in proc.stderr
    assert corral.wait_status("py", "online")["pm2_env"]["interpreter_args"] == []
    # describe lists a fork-mode server's real address
    other = free_port()
    corral.run("start", f"{sys.executable} -m http.server {other} --bind 127.0.0.1", "-n",
               "forked")
    wait_for(lambda: f"127.0.0.1:{other}" in corral.run("describe", "forked").stdout,
             what="the listening address")


# ---- 9. the init template: a plain worker is not a cluster app ------------------------------

def test_09_init_template_starts_a_worker_in_fork_mode(corral: Corral) -> None:
    folder = corral.tmp / "proj"
    folder.mkdir()
    (folder / "app.py").write_text(SLEEPER)
    corral.run("init", cwd=folder)
    began = time.monotonic()
    proc = corral.run("start", cwd=folder)
    assert time.monotonic() - began < 2.9  # no listen_timeout for a worker
    assert "no worker listened" not in proc.stderr
    assert corral.wait_status("web", "online")["pm2_env"]["exec_mode"] == "fork_mode"


# ---- 10. a quiet stop for plain Python scripts -----------------------------------------------

def test_10_stopping_a_python_script_leaves_no_traceback(corral: Corral) -> None:
    plain = corral.script("plain.py", SLEEPER)
    graceful = corral.script("graceful.py", "import time\ntry:\n    while True:\n"
                             "        time.sleep(1)\nexcept KeyboardInterrupt:\n"
                             "    print('graceful shutdown', flush=True)\n")
    corral.run("start", str(plain))
    corral.run("start", str(graceful))
    corral.run("restart", "all")
    corral.run("stop", "all")
    logs = corral.home / "logs"
    assert (logs / "plain-error-0.log").read_text() == ""
    assert corral.app("plain")["pm2_env"]["exit_code"] is None  # type: ignore[index]
    assert "graceful shutdown" in (logs / "graceful-out-1.log").read_text()
    corral.run("start", str(plain), "-n", "loud", env=dict(corral.env, CORRAL_QUIET_SIGINT="0"))
    corral.run("stop", "loud")
    assert "KeyboardInterrupt" in (logs / "loud-error-2.log").read_text()


# ---- 11. a crash loop is visible where it happens --------------------------------------------

def test_11_crash_loop_shows_its_last_error(corral: Corral) -> None:
    loop = corral.script("loop.py", "import time\ntime.sleep(0.3)\n"
                         "raise SystemExit('port 8000 is taken by the autoreloader')\n")
    proc = corral.run("start", str(loop), "--restart-delay", "300", check=False)
    assert proc.returncode == 1 and "autoreloader" in proc.stderr
    listing = wait_for(lambda: (out := corral.run("list").stdout) and "crash loop" in out
                       and out, what="the list to show the loop")
    assert "loop: crash loop (↺" in listing and "autoreloader" in listing
    assert "last error line            port 8000 is taken by the autoreloader" in \
        corral.run("describe", "loop").stdout
    corral.run("start", str(corral.script("dies.py", "raise SystemExit('bad')\n")),
               "--max-restarts", "2", check=False)
    corral.wait_status("dies", "errored")
    assert "dies: errored after too many unstable restarts: bad" in corral.run("list").stdout


# ---- 12. logs --json / --timestamp use the time a line was written -----------------------------

def test_12_logs_use_the_time_lines_were_written(corral: Corral) -> None:
    code = "import time\nprint('first line', flush=True)\nwhile True:\n    time.sleep(1)\n"
    spans = {}
    for name, options in (("stamped", ["--log-date-format", "YYYY-MM-DD HH:mm:ss.SSS Z"]),
                          ("jsony", ["--log-type", "json"]), ("bare", [])):
        began = time.time()
        corral.run("start", str(corral.script(f"{name}.py", code)), *options)
        spans[name] = (began - 1, time.time() + 1)
    time.sleep(2.5)
    for name in ("stamped", "jsony"):
        proc = corral.run("logs", name, "--json", "--nostream", "--out", "--lines", "5")
        line = json.loads(proc.stdout.splitlines()[-1])
        assert line["message"] == "first line"
        stamp = calendar.timegm(time.strptime(line["timestamp"][:19], "%Y-%m-%dT%H:%M:%S"))
        assert spans[name][0] <= stamp <= spans[name][1] < time.time() - 1.5, (line, spans)
        assert "carry no time" not in proc.stderr
    proc = corral.run("logs", "bare", "--timestamp", "--nostream", "--out")
    assert "first line" in proc.stdout and "carry no time of their own" in proc.stderr


# ---- 13. the demo, twice, and with its port taken -----------------------------------------

def test_13_demo_twice_and_with_its_port_taken(corral: Corral, holder: int) -> None:
    demo = [sys.executable, str(ROOT / "examples" / "demo.py")]
    env = dict(corral.env, PORT=str(free_port()))
    first = subprocess.run(demo, env=env, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0 and "hello world" in first.stdout, first
    again = subprocess.run(demo, env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and "runs already" in again.stdout, again
    corral.run("kill")
    taken = subprocess.run(demo, env=dict(corral.env, PORT=str(holder)), capture_output=True,
                           text=True, timeout=120)
    assert taken.returncode == 1 and "Traceback" not in taken.stderr
    assert f"port {holder} is in use" in taken.stderr and f"PORT={holder + 1}" in taken.stderr


# ---- 14. the saved list out of date ---------------------------------------------------------

def test_14_list_says_when_the_saved_list_is_out_of_date(corral: Corral) -> None:
    corral.run("start", str(corral.script("a.py", SLEEPER)))
    assert "corral save" not in corral.run("list").stderr  # nothing saved: nothing said
    corral.run("save")
    assert "corral save" not in corral.run("list").stderr
    corral.run("start", str(corral.script("b.py", SLEEPER)))
    proc = corral.run("list")
    assert proc.stderr.count("run `corral save` to keep them") == 1
    corral.run("save")
    assert "corral save" not in corral.run("list").stderr


# ---- 15. progress on long operations ---------------------------------------------------------

@pytest.mark.skipif(TMUX is None, reason="tmux is not installed")
def test_15_progress_one_line_per_step_on_a_terminal(corral: Corral) -> None:
    port = free_port()
    (corral.tmp / "three.json").write_text(json.dumps({"apps": [
        {"name": name, "script": str(corral.script(f"{name}.py", SLEEPER))}
        for name in ("one", "two", "three")]}))
    server = f"corral-fh15-{os.getpid()}"

    def tmux(*args: str) -> str:
        return subprocess.run([str(TMUX), "-L", server, *args], capture_output=True,
                              text=True, timeout=20).stdout

    def run(command: str, marker: str) -> str:
        tmux("send-keys", "-t", "t", "clear", "Enter")
        tmux("clear-history", "-t", "t")
        tmux("send-keys", "-t", "t", f'{command}; echo "{marker}-""done"', "Enter")
        wait_for(lambda: f"\n{marker}-done" in "\n" + tmux("capture-pane", "-p", "-t", "t"),
                 timeout=60, what=command)
        return tmux("capture-pane", "-p", "-J", "-S", "-200", "-t", "t")

    tmux("new-session", "-d", "-s", "t", "-x", "100", "-y", "40", "bash --norc --noprofile")
    corral_cmd = shlex.quote(sys.executable) + " -m corral"
    try:
        tmux("send-keys", "-t", "t", f"cd {shlex.quote(str(corral.tmp))}; export "
             f"CORRAL_HOME={shlex.quote(str(corral.home))} PORT={port}", "Enter")
        shown = run(f"{corral_cmd} start three.json", "file")
        assert all(f"corral: [{n}/3] {name}: started" in shown
                   for n, name in ((1, "one"), (2, "two"), (3, "three"))), shown
        run(f"{corral_cmd} start {shlex.quote(str(ROOT / 'examples' / 'app.py'))} -i 3 -n srv",
            "srv")
        shown = run(f"{corral_cmd} reload srv", "reload")
        assert all(f"corral: reload srv [{n}/3]: id" in shown for n in (1, 2, 3)), shown
        shown = run(f"{corral_cmd} reload srv --silent", "silent")
        assert "corral: reload" not in shown, shown
        run(f"{corral_cmd} save && {corral_cmd} kill", "kill")
        shown = run(f"{corral_cmd} resurrect", "resurrect")
        assert "corral: [4/4] srv: started (id 3, 4, 5)" in shown, shown
    finally:
        tmux("kill-server")
    # into a pipe: no progress lines
    assert "corral: reload" not in corral.run("reload", "srv").stdout


# ---- 16. the docs --------------------------------------------------------------------------

def test_16_cluster_workers_need_no_corral_in_the_apps_venv(corral: Corral) -> None:
    venv = corral.tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=120)
    python = venv / "bin" / "python"
    assert subprocess.run([str(python), "-c", "import corral"], capture_output=True,
                          env={"PATH": "/usr/bin:/bin"}).returncode != 0
    port = free_port()
    corral.run("start", str(ROOT / "examples" / "app.py"), "--interpreter", str(python),
               "-i", "2", env=dict(corral.env, PORT=str(port)))
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as reply:
        assert b"hello world" in reply.read()
    wrong = re.compile(r"No module named 'corral'.*unless|must be able to\s+`import corral`|"
                       r"corral must be importable", re.S)
    for doc in ("cluster-mode.md", "cli.md", "ecosystem.md", "differences-from-pm2.md",
                "getting-started.md"):
        assert not wrong.search((ROOT / "docs" / doc).read_text()), doc


def test_16_getting_started_outputs_fit_80_columns() -> None:
    text = (ROOT / "docs" / "getting-started.md").read_text()
    fence: str | None = None  # the info string of the block we are in
    outputs = 0
    for line in text.splitlines():
        if line.startswith("```"):
            fence = line[3:].strip() if fence is None else None
            outputs += fence in ("", "text", "console")
        elif fence in ("", "text", "console"):  # what a terminal shows
            assert len(line) <= 80, line
    assert outputs >= 5
