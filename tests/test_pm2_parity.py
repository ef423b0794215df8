"""PM2 parity (issue 13): the commands, flags and semantics PM2 users' scripts rely on.

One test per numbered behaviour of the issue, with real processes; the shell scripts
in tests/pm2_scripts/ are PM2 scripts with `pm2` replaced by `corral`, run as written.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from conftest import ROOT, Corral, alive, wait_for

NODE = shutil.which("node")
needs_node = pytest.mark.skipif(NODE is None, reason="node is not on PATH")
SCRIPTS = ROOT / "tests" / "pm2_scripts"

SLEEPER = """
import sys, time
print("up", sys.argv[1:], flush=True)
while True:
    time.sleep(1)
"""

# writes its argv and a few variables to <name>.seen, then sleeps
RECORDER = """
import json, os, sys, time
with open(os.path.join({folder!r}, os.path.basename(sys.argv[0]) + ".seen"), "a") as f:
    f.write(json.dumps({{"args": sys.argv[1:], "env": {{k: os.environ.get(k) for k in
        ("FOO", "CFG", "WHERE", "PORT", "FROM_DEPLOY")}}}}) + "\\n")
while True:
    time.sleep(1)
"""

NODE_APP = """
require('fs').appendFileSync(__filename + '.seen',
  JSON.stringify({args: process.argv.slice(2), execArgv: process.execArgv}) + '\\n');
setInterval(() => {}, 1000);
"""


def run_input(corral: Corral, text: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "corral", *args], input=text, text=True,
                          env=corral.env, cwd=corral.tmp, capture_output=True, timeout=60)


def seen(path: Path, count: int = 1) -> list[dict]:  # type: ignore[type-arg]
    wait_for(lambda: path.exists() and len(path.read_text().splitlines()) >= count,
             what=f"{count} line(s) in {path.name}")
    return [json.loads(line) for line in path.read_text().splitlines()]


def pm2_env(corral: Corral, name: str) -> dict:  # type: ignore[type-arg]
    row = corral.app(name)
    assert row is not None, name
    return row["pm2_env"]  # type: ignore[no-any-return]


# ---- 1. several scripts in one start ------------------------------------------------

@needs_node
def test_01_several_scripts_in_one_start(corral: Corral) -> None:
    folder = str(corral.tmp)
    corral.script("a.js", NODE_APP)
    corral.script("b.py", RECORDER.format(folder=folder))
    corral.script("c.sh", f'echo "{{\\"args\\": [\\"$1\\", \\"$2\\"]}}" >> {folder}/c.sh.seen\n'
                  "exec sleep 600\n")
    corral.run("start", "a.js", "b.py", "c.sh", "--", "--port", "3001")
    assert sorted(r["name"] for r in corral.jlist()) == ["a", "b", "c"]
    for name in ("a.js", "b.py", "c.sh"):
        assert seen(corral.tmp / f"{name}.seen")[0]["args"] == ["--port", "3001"], name
    # every word is resolved before anything starts: a bad one starts nothing
    bad = corral.run("start", "b.py", "-n", "x", "nope.py", check=False)
    assert bad.returncode == 1 and "--name with several scripts" in bad.stderr
    bad = corral.run("start", "c.sh", "-f", "nope.py", check=False)
    assert bad.returncode == 1 and "script not found" in bad.stderr
    assert len(corral.jlist()) == 3


# ---- 2. PM2's flags that mean nothing here: accepted ----------------------------------

PM2_START_FLAGS = [
    "-s", "--silent", "--ext", "-n", "--name", "--interpreter", "--interpreter-args",
    "--node-args", "-o", "--output", "-e", "--error", "-l", "--log", "--filter-env",
    "--log-type", "--log-date-format", "--time", "--disable-logs", "--env", "-a",
    "--update-env", "-f", "--force", "-i", "--instances", "--parallel",
    "--shutdown-with-message", "-p", "--pid", "-k", "--kill-timeout", "--listen-timeout",
    "--max-memory-restart", "--restart-delay", "--exp-backoff-restart-delay", "-x",
    "--execute-command", "--max-restarts", "-u", "--user", "--uid", "--gid", "--namespace",
    "--cwd", "--hp", "--wait-ip", "--service-name", "-c", "--cron", "--cron-restart", "-w",
    "--write", "--no-daemon", "--source-map-support", "--only",
    "--disable-source-map-support", "--wait-ready", "--merge-logs", "--watch",
    "--ignore-watch", "--watch-delay", "--no-color", "--no-vizion", "--no-autostart",
    "--no-autorestart", "--stop-exit-codes", "--no-treekill", "--no-pmx", "--no-automation",
    "--trace", "--disable-trace", "--sort", "--attach", "--v8", "--event-loop-inspector",
    "--deep-monitoring", "--fresh", "--daemon", "--container", "--dist", "--image-name",
    "--node-version", "--dockerdaemon",
]


def test_02_pm2_flags_without_meaning_are_accepted(corral: Corral) -> None:
    shown = corral.run("start", "--help").stdout
    for flag in PM2_START_FLAGS:
        assert re.search(rf"(^|[\s,\[]){re.escape(flag)}\b", shown), flag
    assert "PM2 flags accepted for compatibility" in shown
    corral.script("app.py", SLEEPER)
    proc = corral.run(
        "start", "app.py", "-x", "--no-vizion", "--no-automation", "--no-pmx",
        "--disable-trace", "--source-map-support", "--deep-monitoring", "--trace", "--v8",
        "--event-loop-inspector", "--disable-source-map-support", "--no-treekill", "--uid",
        "1000", "--gid", "1000", "--ext", "js,json", "--sort", "name", "-w", "--no-daemon",
        "--hp", "/home/x", "--service-name", "s", "--wait-ip", "--fresh", "--daemon",
        "--image-name", "img", "--node-version", "20", "--dockerdaemon", "--parallel", "2",
        "-u", "someone", "--node-args=--max-old-space-size=100", "--no-color")
    notes = [line for line in proc.stderr.splitlines() if "no effect in corral" in line]
    assert len(notes) == 1, proc.stderr  # one line for all of them
    assert "--node-args" in proc.stderr and "node does not run this app" in proc.stderr
    env = pm2_env(corral, "app")
    assert env["status"] == "online" and env["exec_mode"] == "fork_mode"
    assert env["interpreter_args"] == []  # --node-args were not passed to python
    silent = corral.run("restart", "app", "-s")
    assert silent.stdout == ""
    refused = corral.run("start", "app.py", "-n", "boxed", "--container", check=False)
    assert refused.returncode == 1 and "Docker mode" in refused.stderr
    assert [r["name"] for r in corral.jlist()] == ["app"]


# ---- 3. pid files and the combined log ----------------------------------------------

def test_03_pid_file_and_combined_log(corral: Corral) -> None:
    corral.script("talk.py", """
        import sys, time
        print("to stdout", flush=True)
        print("to stderr", file=sys.stderr, flush=True)
        while True:
            time.sleep(1)
    """)
    corral.run("start", "talk.py", "-p", "run/talk.pid", "-l", "logs/all.log")
    row = corral.wait_status("talk", "online")
    pid_file = corral.tmp / "run" / "talk.pid"
    assert pid_file.read_text() == str(row["pid"])
    assert row["pm2_env"]["pm_pid_path"] == str(pid_file)
    combined = Path(row["pm2_env"]["pm_log_path"])
    assert combined == corral.tmp / "logs" / "all.log"
    wait_for(lambda: "to stderr" in combined.read_text() and "to stdout" in combined.read_text(),
             what="both streams in the combined log")
    corral.run("restart", "talk")
    new = corral.wait_status("talk", "online")
    wait_for(lambda: pid_file.read_text() == str(new["pid"]), what="the new pid in the file")
    corral.run("stop", "talk")
    assert not pid_file.exists()  # PM2 removes it when the app exits
    # the ecosystem keys, with several instances: one file per instance
    (corral.tmp / "eco.json").write_text(json.dumps({"apps": [{
        "name": "two", "script": "talk.py", "instances": 2, "exec_mode": "fork",
        "pid_file": "run/two.pid", "log_file": "logs/two.log"}]}))
    corral.run("start", "eco.json")
    rows = [r for r in corral.jlist() if r["name"] == "two"]
    for r in rows:
        path = Path(r["pm2_env"]["pm_pid_path"])
        assert path.name == f"two-{r['pm_id']}.pid" and path.read_text() == str(r["pid"])
        assert Path(r["pm2_env"]["pm_log_path"]).name == f"two-{r['pm_id']}.log"
    assert "pid file" in corral.run("describe", "two").stdout


# ---- 4. commands: start - / delete -, /regex/, prettylist, env, updatePM2, init,
#         list --sort / -m, logs --format / --highlight / --raw ------------------------

def test_04_start_and_delete_read_an_ecosystem_on_stdin(corral: Corral) -> None:
    corral.script("app.py", SLEEPER)
    text = '{apps: [{name: "piped", script: "app.py", args: "--a 1"}]}'  # PM2's relaxed JSON
    started = run_input(corral, text, "start", "-")
    assert started.returncode == 0, started.stderr
    row = corral.wait_status("piped", "online")
    assert row["pm2_env"]["args"] == ["--a", "1"]
    again = run_input(corral, text, "start", "-")  # as `start FILE`: restarts the apps
    assert again.returncode == 0 and pm2_env(corral, "piped")["restart_time"] == 1
    deleted = run_input(corral, text, "delete", "-")
    assert deleted.returncode == 0, deleted.stderr
    assert corral.jlist() == []


def test_04_regex_targets(corral: Corral) -> None:
    corral.script("app.py", SLEEPER)
    for name in ("api-1", "api-2", "web"):
        corral.run("start", "app.py", "-n", name)
    corral.run("stop", "/^api-/")
    assert {r["name"]: r["pm2_env"]["status"] for r in corral.jlist()} == {
        "api-1": "stopped", "api-2": "stopped", "web": "online"}
    corral.run("restart", "/-\\d$/")
    assert {r["pm2_env"]["status"] for r in corral.jlist()} == {"online"}
    assert corral.run("id", "/^api/").stdout.strip() == "[ 0, 1 ]"
    nothing = corral.run("stop", "/^nope/", check=False)
    assert nothing.returncode == 1 and "no process found" in nothing.stderr
    broken = corral.run("stop", "/(/", check=False)
    assert broken.returncode == 1 and "not a valid regular expression" in broken.stderr
    corral.run("delete", "/./")
    assert corral.jlist() == []


def test_04_prettylist_env_and_updatepm2(corral: Corral) -> None:
    corral.script("app.py", SLEEPER)
    corral.run("start", "app.py", env=dict(corral.env, FOO="bar"))
    row = corral.wait_status("app", "online")
    pretty = corral.run("prettylist").stdout
    assert "status: 'online'" in pretty and "name: 'app'" in pretty
    assert f"pid: {row['pid']}," in pretty
    shown = corral.run("env", "0").stdout
    assert "FOO: bar" in shown and "status: online" in shown
    assert "FOO" not in corral.run("describe", "app").stdout  # still hidden elsewhere
    old_daemon = corral.daemon_pid()
    corral.run("updatePM2")
    assert corral.daemon_pid() != old_daemon
    assert corral.app("app")["pid"] == row["pid"]  # type: ignore[index]  # not restarted


def test_04_init_simple_and_full(corral: Corral) -> None:
    folder = corral.tmp / "proj"
    folder.mkdir()
    corral.run("init", "simple", cwd=folder)
    simple = (folder / "ecosystem.config.py").read_text()
    assert "apps" in simple and "#" not in simple
    corral.run("ecosystem", "--format", "json", cwd=folder)  # full, PM2's other name
    assert "env_production" in (folder / "ecosystem.config.json").read_text()
    (folder / "app.py").write_text(SLEEPER)
    corral.run("start", cwd=folder)  # the simple file starts as it is
    assert corral.wait_status("app", "online")


def test_04_list_sort_mini_and_log_formats(corral: Corral) -> None:
    corral.script("app.py", SLEEPER)
    for name in ("bb", "aa", "cc"):
        corral.run("start", "app.py", "-n", name)
        corral.wait_status(name, "online")
    corral.run("restart", "cc")
    names = [line.split()[1] for line in
             corral.run("list", "--sort", "name:desc").stdout.splitlines()[1:]]
    assert names == ["cc", "bb", "aa"]
    names = [line.split()[1] for line in
             corral.run("ls", "--sort", "restarts:desc").stdout.splitlines()[1:]]
    assert names[0] == "cc"
    assert corral.run("ls", "--sort", "size", check=False).returncode == 1
    mini = corral.run("ls", "-m").stdout
    assert "+--- aa" in mini and "status : online" in mini
    wait_for(lambda: "up" in (corral.home / "logs" / "aa-out-1.log").read_text(),
             what="aa's first line")
    formatted = corral.run("logs", "aa", "--nostream", "--format", "--out").stdout
    assert re.search(r"^timestamp=\S+ app=aa id=1 type=out message=up \[\]$", formatted,
                     re.M), formatted
    raw = corral.run("logs", "aa", "--nostream", "--raw", "--out").stdout
    assert raw.strip() == "up []"
    highlighted = corral.run("logs", "aa", "--nostream", "--out", "--highlight", "up").stdout
    assert "up []" in highlighted  # no colour here (not a terminal): the text as it is


# ---- 5. restart and reload take start options ---------------------------------------

@needs_node
def test_05_restart_and_reload_apply_start_options(corral: Corral) -> None:
    corral.script("app.js", NODE_APP)
    corral.script("app.py", SLEEPER)
    corral.run("start", "app.js", "--name", "api", "--cron-restart", "0 3 * * *")
    assert pm2_env(corral, "api")["cron_restart"] == "0 3 * * *"
    corral.run("restart", "api", "--name", "api2", "--node-args=--max-old-space-size=128",
               "--cron-restart", "0", "--max-memory-restart", "300M", "--", "--port", "9")
    env = pm2_env(corral, "api2")
    assert "cron_restart" not in env and env["max_memory_restart"] == 300 * 1024 * 1024
    assert env["node_args"] == ["--max-old-space-size=128"] and env["args"] == ["--port", "9"]
    last = seen(corral.tmp / "app.js.seen", 2)[-1]
    assert last == {"args": ["--port", "9"], "execArgv": ["--max-old-space-size=128"]}
    assert corral.app("api") is None
    corral.run("reload", "api2", "--watch")  # PM2: on when it was off
    assert pm2_env(corral, "api2")["watch"] is True
    corral.run("reload", "api2", "--no-watch", "--kill-timeout", "500")
    env = pm2_env(corral, "api2")
    assert env["watch"] is False and env["kill_timeout"] == 500
    # --node-args on a Python app: a warning, nothing passed
    corral.run("start", "app.py", "-n", "py")
    proc = corral.run("restart", "py", "--node-args=--inspect")
    assert "node does not run this app" in proc.stderr
    assert pm2_env(corral, "py")["interpreter_args"] == []
    # --env takes the file's env_<name>, --update-env this shell's environment
    (corral.tmp / "eco.yaml").write_text(
        "apps:\n  - name: py\n    script: app.py\n    env: {WHERE: dev}\n"
        "    env_production: {WHERE: prod}\n")
    corral.run("restart", "eco.yaml", "--env", "production")
    shown = corral.run("describe", "py", "--env").stdout
    assert "WHERE=prod" in shown
    corral.run("restart", "py", "--update-env", env=dict(corral.env, ADDED="1"))
    assert "ADDED=1" in corral.run("describe", "py", "--env").stdout
    taken = corral.run("restart", "py", "--name", "api2", check=False)
    assert taken.returncode == 1 and "an app of that name exists" in taken.stderr


# ---- 6. smart start ----------------------------------------------------------------

def test_06_smart_start(corral: Corral) -> None:
    corral.script("app.py", SLEEPER)
    corral.run("start", "app.py")
    first = corral.wait_status("app", "online")
    corral.run("start", "app", "--max-memory-restart", "100M")  # a name: a restart, options applied
    row = corral.wait_status("app", "online")
    assert row["pid"] != first["pid"] and row["pm2_env"]["restart_time"] == 1
    assert row["pm2_env"]["max_memory_restart"] == 100 * 1024 * 1024
    corral.run("start", "0")  # an id
    assert pm2_env(corral, "app")["restart_time"] == 2
    again = corral.run("start", "app.py", check=False)  # running: a duplicate
    assert again.returncode == 1 and "already managed as 'app'" in again.stderr
    corral.run("stop", "app")
    corral.run("start", "app.py")  # stopped, same script and name: restarted, not added
    rows = corral.jlist()
    assert len(rows) == 1 and rows[0]["pm2_env"]["status"] == "online"
    corral.run("start", "app.py", "--name", "app-2")  # another name: a second app
    assert sorted(r["name"] for r in corral.jlist()) == ["app", "app-2"]
    # a registered name wins over a program of that name in PATH
    corral.run("start", "app.py", "--name", "sleep", "--namespace", "tools")
    corral.run("start", "sleep")
    assert [r["name"] for r in corral.jlist()] == ["app", "app-2", "sleep"]
    assert pm2_env(corral, "sleep")["restart_time"] == 1
    corral.run("start", "tools")  # a namespace
    assert pm2_env(corral, "sleep")["restart_time"] == 2


# ---- 7. start FILE again restarts its apps and adds the missing ones -----------------

def test_07_start_file_again_restarts_and_adds(corral: Corral) -> None:
    corral.script("app.py", SLEEPER)
    config = corral.tmp / "ecosystem.config.json"
    config.write_text(json.dumps({"apps": [{"name": "one", "script": "app.py"}]}))
    corral.run("start", str(config))
    first = corral.wait_status("one", "online")
    config.write_text(json.dumps({"apps": [{"name": "one", "script": "app.py", "args": "x"},
                                           {"name": "two", "script": "app.py"}]}))
    corral.run("start", str(config))
    one = corral.wait_status("one", "online")
    assert one["pid"] != first["pid"] and one["pm2_env"]["restart_time"] == 1
    assert one["pm2_env"]["args"] == ["x"]  # the file's settings
    assert pm2_env(corral, "two")["status"] == "online"
    assert len(corral.jlist()) == 2


# ---- 8. restart counters ------------------------------------------------------------

def test_08_restart_counters_as_pm2_keeps_them(corral: Corral) -> None:
    corral.script("app.py", SLEEPER)
    corral.run("start", "app.py")
    corral.run("stop", "app")
    corral.run("restart", "app")  # a stopped app: a start, not counted
    assert pm2_env(corral, "app")["restart_time"] == 0
    corral.run("restart", "app")
    assert pm2_env(corral, "app")["restart_time"] == 1
    corral.run("reset", "app")
    assert pm2_env(corral, "app")["restart_time"] == 0
    # an automatic restart counts when it happens, not while it waits
    flag = corral.tmp / "crash"
    corral.script("slow.py", f"""
        import os, time
        if not os.path.exists({str(flag)!r}):
            open({str(flag)!r}, "w").close()
            raise SystemExit(3)
        while True:
            time.sleep(1)
    """)
    corral.run("start", "slow.py", "--restart-delay", "1500", "--no-wait")
    waiting = corral.wait_status("slow", "waiting restart")
    assert waiting["pm2_env"]["restart_time"] == 0
    back = corral.wait_status("slow", "online")
    assert back["pm2_env"]["restart_time"] == 1 and back["pid"]
    # errored, then a manual restart: not counted either
    corral.script("crash.py", "raise SystemExit(1)\n")
    corral.run("start", "crash.py", "--max-restarts", "2", "--no-wait")
    before = corral.wait_status("crash", "errored")["pm2_env"]["restart_time"]
    corral.run("restart", "crash", "--no-wait")
    wait_for(lambda: pm2_env(corral, "crash")["status"] == "errored"
             and pm2_env(corral, "crash")["restart_time"] > before, what="errored again")
    assert pm2_env(corral, "crash")["restart_time"] == before + 1  # its own crash, not ours


# ---- 9. nothing matched: "no process found", exit 1 ---------------------------------

def test_09_nothing_matched_is_an_error(corral: Corral) -> None:
    for verb in ("stop", "restart", "reload", "delete"):
        proc = corral.run(verb, "all", check=False)
        assert proc.returncode == 1 and "no process found" in proc.stderr, (verb, proc.stderr)
        proc = corral.run(verb, "ghost", check=False)
        assert proc.returncode == 1 and "no process found" in proc.stderr, (verb, proc.stderr)
    corral.script("usr.py", SLEEPER)
    corral.run("start", "usr.py")
    corral.run("stop", "usr")
    proc = corral.run("sendSignal", "SIGUSR1", "usr", check=False)
    assert proc.returncode == 1 and "usr (id 0) is stopped" in proc.stderr
    assert corral.run("flush", "all").returncode == 0  # reading commands stay quiet


# ---- 10. environment ----------------------------------------------------------------

def test_10_environment_values_as_pm2_passes_them(corral: Corral) -> None:
    corral.script("rec.py", RECORDER.format(folder=str(corral.tmp)))
    config = corral.tmp / "eco.json"
    config.write_text(json.dumps({
        "apps": [{"name": "rec", "script": "rec.py", "instances": 2, "exec_mode": "fork",
                  "increment_var": "PORT",
                  "env": {"PORT": 3000, "CFG": {"a": True, "b": [1, "x"]}, "WHERE": "env"},
                  "env_production": {"WHERE": "production"}}],
        "deploy": {"production": {"env": {"FROM_DEPLOY": "yes", "WHERE": "deploy"}}}}))
    corral.run("start", str(config), "--env", "production")
    records = seen(corral.tmp / "rec.py.seen", 2)
    assert {r["env"]["CFG"] for r in records} == {'{"a":true,"b":[1,"x"]}'}
    assert {r["env"]["WHERE"] for r in records} == {"production"}  # env_production wins
    assert {r["env"]["FROM_DEPLOY"] for r in records} == {"yes"}
    assert sorted(r["env"]["PORT"] for r in records) == ["3000", "3001"]
    rows = corral.jlist()  # no --env: the values stay hidden, but not the per-instance ones
    assert sorted(r["pm2_env"]["PORT"] for r in rows) == [3000, 3001]
    assert [r["pm2_env"]["CORRAL_INSTANCE"] for r in rows] == [0, 1]
    assert all(r["pm2_env"]["env"] == {} for r in rows)
    assert "PORT=3001" in corral.run("describe", "1").stdout
    with_env = json.loads(corral.run("jlist", "--env").stdout)
    assert sorted(r["pm2_env"]["env"]["PORT"] for r in with_env) == ["3000", "3001"]
    missing = corral.run("restart", str(config), "--env", "staging")
    assert missing.returncode == 0 and "warning" in missing.stderr
    assert "no app defines env_staging" in missing.stderr


# ---- 11. logs: PM2's JSON lines, log settings applied on restart FILE ----------------

def test_11_json_log_lines_and_log_settings_from_a_file(corral: Corral) -> None:
    corral.script("talk.py", """
        import time
        n = 0
        while True:
            print("line", n, flush=True)
            n += 1
            time.sleep(0.2)
    """)
    config = corral.tmp / "eco.yaml"
    config.write_text("apps:\n  - name: talk\n    script: talk.py\n    log_type: json\n")
    corral.run("start", str(config))
    out = corral.home / "logs" / "talk-out-0.log"
    wait_for(lambda: out.exists() and out.read_text().count("\n") >= 1, what="a JSON line")
    first = out.read_text().splitlines()[0]
    data = json.loads(first)
    assert list(data) == ["message", "timestamp", "type", "process_id", "app_name"]
    assert first == json.dumps(data, separators=(",", ":"))  # compact, as JSON.stringify
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", data["timestamp"])
    config.write_text("apps:\n  - name: talk\n    script: talk.py\n"
                      "    out_file: elsewhere.log\n    log_date_format: '[at] YYYY'\n")
    corral.run("restart", str(config))
    moved = corral.tmp / "elsewhere.log"
    wait_for(lambda: moved.exists() and moved.read_text().count("\n") >= 1,
             what="lines in the new file")
    assert re.match(r"at \d{4}: line \d+$", moved.read_text().splitlines()[0])
    assert pm2_env(corral, "talk")["pm_out_log_path"] == str(moved)
    config.write_text("apps:\n  - name: talk\n    script: talk.py\n    out_file: third.log\n")
    corral.run("reload", str(config))
    wait_for(lambda: (corral.tmp / "third.log").exists()
             and "line" in (corral.tmp / "third.log").read_text(), what="reload FILE")


# ---- 12. scale down -----------------------------------------------------------------

def test_12_scale_down_keeps_the_lowest_instance_indexes(corral: Corral) -> None:
    """PM2 removes the oldest instances (the lowest ids); corral removes the highest
    instance indexes, so instance 0 (the one that runs `if NODE_APP_INSTANCE == 0` jobs)
    and the first increment_var ports stay (docs/differences-from-pm2.md)."""
    corral.script("app.py", SLEEPER)
    corral.run("start", "app.py", "-i", "3", "--exec-mode", "fork")
    corral.run("scale", "app", "1")
    rows = corral.jlist()
    assert [(r["pm_id"], r["pm2_env"]["CORRAL_INSTANCE"]) for r in rows] == [(0, 0)]


# ---- 13. a .json ecosystem that is a JS object literal --------------------------------

@needs_node
def test_13_json_file_that_is_a_js_literal(corral: Corral) -> None:
    corral.script("rec.py", RECORDER.format(folder=str(corral.tmp)))
    config = corral.tmp / "process.json"
    config.write_text("// PM2 evaluates this file\n{ apps: [{ name: 'lit', script: 'rec.py',\n"
                      "  env: { PORT: 3000 + 1, FOO: `a${1 + 1}` } }] }\n")
    corral.run("start", str(config))
    assert seen(corral.tmp / "rec.py.seen")[0]["env"] == {
        "FOO": "a2", "CFG": None, "WHERE": None, "PORT": "3001", "FROM_DEPLOY": None}
    no_node = dict(corral.env, PATH=str(Path(sys.executable).parent.parent / "nothing"))
    proc = corral.run("start", str(config), env=no_node, check=False)
    assert proc.returncode == 1 and "process.json:3:21: syntax error" in proc.stderr


# ---- 14. pm2.pid --------------------------------------------------------------------

def test_14_pm2_pid_beside_corral_pid(corral: Corral) -> None:
    corral.run("ping")
    pid = corral.daemon_pid()
    assert (corral.home / "pm2.pid").read_text() == str(pid)
    corral.script("app.py", SLEEPER)
    corral.run("start", "app.py")
    app_pid = corral.wait_status("app", "online")["pid"]
    os.kill(int((corral.home / "pm2.pid").read_text()), 15)  # `kill $(cat pm2.pid)`
    wait_for(lambda: not alive(pid) and not alive(app_pid), what="daemon and app gone")
    assert not (corral.home / "pm2.pid").exists()


# ---- PM2 scripts, run as written --------------------------------------------------------

@pytest.mark.parametrize("script", sorted(p.name for p in SCRIPTS.glob("*.sh")))
def test_pm2_scripts_run_unchanged(corral: Corral, script: str) -> None:
    if NODE is None:
        pytest.skip("node is not on PATH")
    for name in ("app.js", "worker.js"):
        corral.script(name, "console.log(process.argv.slice(2).join(' '));\n"
                            "setInterval(() => {}, 1000);\n")
    corral.script("job.py", SLEEPER)
    bin_dir = str(Path(sys.executable).parent)  # where the `corral` command is
    env = dict(corral.env, PATH=bin_dir + os.pathsep + corral.env.get("PATH", ""))
    proc = subprocess.run(["bash", str(SCRIPTS / script)], cwd=corral.tmp, env=env,
                          capture_output=True, text=True, timeout=240)
    for row in corral.jlist():
        corral.seen_pids.add(row["pid"])
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(
            psutil.pid_exists(p) and alive(p) for p in corral.seen_pids if p):
        time.sleep(0.1)
