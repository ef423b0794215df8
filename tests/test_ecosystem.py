"""Ecosystem files in every format, environments, actions on files, and errors
that name the file and the line or the app and the key."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import Corral, free_port, wait_for

RECORDER = """
import json, os, sys, time
with open(os.environ["RECORD"], "a") as f:
    f.write(json.dumps({"pid": os.getpid(), "NODE_ENV": os.environ.get("NODE_ENV"),
                        "watch": os.environ.get("watch"),
                        "instance": os.environ.get("CORRAL_INSTANCE")}) + "\\n")
print("started", file=sys.stderr, flush=True)
while True:
    time.sleep(1)
"""

# PM2's classic file (the ecosystem.config.js of PM2's docs), with a Python script
APP: dict[str, Any] = {
    "name": "nodejs-column",
    "script": "./app.py",
    "instances": 2,
    "exec_mode": "cluster",
    "env_development": {"NODE_ENV": "development", "watch": True},
    "env_testing": {"NODE_ENV": "testing", "watch": False},
    "env_production": {"NODE_ENV": "production", "watch": False},
    "log_date_format": "YYYY-MM-DD HH:mm Z",
    "error_file": "~/data/err.log",
    "out_file": "~/data/info.log",
    "max_restarts": 10,
}

JSONISH = """// PM2 reads JSON as a JavaScript object literal
{
  apps: [{
    name: "nodejs-column", script: "./app.py", instances: 2, exec_mode: "cluster",
    env_development: { NODE_ENV: "development", watch: true },
    env_testing:     { NODE_ENV: "testing",     watch: false },
    env_production:  { NODE_ENV: "production",  watch: false },
    /* dates on every line */
    log_date_format: "YYYY-MM-DD HH:mm Z",
    error_file: "~/data/err.log", out_file: "~/data/info.log",
    max_restarts: 10,
  }],
}
"""

TOML_APP = """
name = "nodejs-column"
script = "./app.py"
instances = 2
exec_mode = "cluster"
log_date_format = "YYYY-MM-DD HH:mm Z"
error_file = "~/data/err.log"
out_file = "~/data/info.log"
max_restarts = 10
[{prefix}apps.env_development]
NODE_ENV = "development"
watch = true
[{prefix}apps.env_testing]
NODE_ENV = "testing"
watch = false
[{prefix}apps.env_production]
NODE_ENV = "production"
watch = false
"""


def write_config(folder: Path, fmt: str) -> Path:
    if fmt == "json":
        path = folder / "ecosystem.json"
        path.write_text(JSONISH)
    elif fmt == "yaml":
        path = folder / "ecosystem.config.yaml"
        path.write_text(yaml.safe_dump({"apps": [APP]}))
    elif fmt == "toml":
        path = folder / "ecosystem.config.toml"
        path.write_text("[[apps]]" + TOML_APP.format(prefix=""))
    elif fmt == "python":
        path = folder / "ecosystem.config.py"
        path.write_text(f"apps = [{APP!r}]\n")
    elif fmt == "pyproject":
        path = folder / "pyproject.toml"
        path.write_text('[project]\nname = "demo"\n\n[[tool.corral.apps]]'
                        + TOML_APP.format(prefix="tool.corral."))
    else:
        path = folder / "ecosystem.config.js"
        path.write_text(f"module.exports = {{ apps: [{json.dumps(APP)}] }};\n")
    return path


def records(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def project(corral: Corral) -> Path:
    folder = corral.tmp / "project"
    folder.mkdir()
    (folder / "app.py").write_text(RECORDER)
    corral.env["HOME"] = str(corral.tmp / "userhome")
    corral.env["RECORD"] = str(corral.tmp / "record")
    return folder


@pytest.mark.parametrize("fmt", ["json", "yaml", "toml", "python", "pyproject", "js"])
def test_pm2_classic_file_in_every_format(corral: Corral, project: Path, fmt: str) -> None:
    if fmt == "js" and shutil.which("node") is None:
        pytest.skip("node is not installed")
    config = write_config(project, fmt)
    record = Path(corral.env["RECORD"])
    for env_name in ("development", "testing", "production"):
        record.unlink(missing_ok=True)
        proc = corral.run("start", config.name, "--env", env_name, cwd=project)
        if env_name == "development":
            assert "env_development sets an environment variable named 'watch'" in proc.stderr
            assert "put `watch` at the app's top level" in proc.stderr
        rows = corral.jlist()
        assert [r["name"] for r in rows] == ["nodejs-column", "nodejs-column"]
        assert all(r["pm2_env"]["max_restarts"] == 10 for r in rows)
        seen = wait_for(lambda: len(records(record)) == 2 and records(record),
                        what=f"2 instances with --env {env_name}")
        assert {r["NODE_ENV"] for r in seen} == {env_name}
        assert sorted(r["instance"] for r in seen) == ["0", "1"]
        assert {r["pid"] for r in seen} == {r["pid"] for r in rows}
        corral.run("delete", config.name, cwd=project)
        assert corral.jlist() == []
    # ~ is the user's home; the missing folder was created and stderr lands there, one file
    # per instance (-<id>, as PM2 does without merge_logs)
    data = corral.tmp / "userhome" / "data"
    wait_for(lambda: sorted(p.name for p in data.glob("err-*.log")) == ["err-0.log", "err-1.log"]
             and all("started" in p.read_text() for p in data.glob("err-*.log")),
             what="stderr logs")
    assert sorted(p.name for p in data.glob("info-*.log")) == ["info-0.log", "info-1.log"]


def test_start_without_argument_uses_the_folders_file(corral: Corral, project: Path) -> None:
    (project / "ecosystem.config.toml").write_text(
        '[[apps]]\nname = "solo"\nscript = "app.py"\n[apps.env]\nNODE_ENV = "plain"\n')
    corral.run("start", cwd=project)
    seen = wait_for(lambda: records(Path(corral.env["RECORD"])), what="the app")
    assert seen[0]["NODE_ENV"] == "plain"
    empty = corral.tmp / "empty"
    empty.mkdir()
    proc = corral.run("start", cwd=empty, check=False)
    assert proc.returncode == 1 and "no ecosystem file in" in proc.stderr
    assert "corral init" in proc.stderr


def test_update_env_adds_changes_and_removes(corral: Corral) -> None:
    seen_file = corral.tmp / "seen"
    app = corral.script("envy.py", f"""
        import json, os, time
        keys = ("FOO", "BAR", "BAZ", "APP_ENV")
        with open({str(seen_file)!r}, "a") as f:
            f.write(json.dumps({{k: os.environ.get(k) for k in keys}}) + "\\n")
        while True:
            time.sleep(1)
    """)
    (corral.tmp / "eco.toml").write_text(
        f'[[apps]]\nname = "envy"\nscript = "{app}"\n[apps.env]\nAPP_ENV = "from-file"\n')
    corral.run("start", "eco.toml", env=dict(corral.env, FOO="1", BAR="2"))
    wait_for(lambda: seen_file.exists(), what="first start")
    first = json.loads(seen_file.read_text().splitlines()[0])
    assert first == {"FOO": "1", "BAR": "2", "BAZ": None, "APP_ENV": "from-file"}
    # a plain restart keeps the environment frozen, as in PM2
    corral.run("restart", "envy", env=dict(corral.env, FOO="changed"))
    wait_for(lambda: len(seen_file.read_text().splitlines()) == 2, what="restart")
    assert json.loads(seen_file.read_text().splitlines()[1])["FOO"] == "1"
    # --update-env: FOO changes, BAR is gone, BAZ appears, the file's APP_ENV stays
    corral.run("restart", "envy", "--update-env", env=dict(corral.env, FOO="3", BAZ="new"))
    wait_for(lambda: len(seen_file.read_text().splitlines()) == 3, what="update-env restart")
    third = json.loads(seen_file.read_text().splitlines()[2])
    assert third == {"FOO": "3", "BAR": None, "BAZ": "new", "APP_ENV": "from-file"}
    # a restart from the file applies the file's (new) env
    (corral.tmp / "eco.toml").write_text(
        f'[[apps]]\nname = "envy"\nscript = "{app}"\n[apps.env]\nAPP_ENV = "edited"\n')
    corral.run("restart", "eco.toml")
    wait_for(lambda: len(seen_file.read_text().splitlines()) == 4, what="restart from file")
    assert json.loads(seen_file.read_text().splitlines()[3])["APP_ENV"] == "edited"


def test_actions_on_files_and_only(corral: Corral, project: Path) -> None:
    (project / "eco.yaml").write_text(yaml.safe_dump({"apps": [
        {"name": "a", "script": "app.py"},
        {"name": "b", "script": "app.py", "force": True},
        {"name": "c", "script": "app.py", "force": True},
    ]}))
    corral.run("start", "eco.yaml", "--only", "a,b", cwd=project)
    assert sorted(r["name"] for r in corral.jlist()) == ["a", "b"]

    def status() -> dict[str, str]:
        return {r["name"]: r["pm2_env"]["status"] for r in corral.jlist()}

    corral.run("stop", "eco.yaml", cwd=project)
    assert status() == {"a": "stopped", "b": "stopped"}
    corral.run("startOrRestart", "eco.yaml", cwd=project)  # starts c, restarts a and b
    assert status() == {"a": "online", "b": "online", "c": "online"}
    restarts = {r["name"]: r["pm2_env"]["restart_time"] for r in corral.jlist()}
    assert restarts == {"a": 0, "b": 0, "c": 0}  # a stopped app's restart is a start (PM2)
    corral.run("startOrReload", "eco.yaml", "--only", "c", cwd=project)
    assert {r["name"]: r["pm2_env"]["restart_time"] for r in corral.jlist()}["c"] == 1
    corral.run("restart", "eco.yaml", "--only", "a", cwd=project)
    assert {r["name"]: r["pm2_env"]["restart_time"] for r in corral.jlist()}["a"] == 1
    corral.run("start", "eco.yaml", cwd=project)  # PM2: start FILE restarts its apps
    restarts = {r["name"]: r["pm2_env"]["restart_time"] for r in corral.jlist()}
    assert restarts == {"a": 2, "b": 1, "c": 2}
    corral.run("delete", "eco.yaml", "--only", "b,c", cwd=project)
    assert list(status()) == ["a"]
    corral.run("delete", "eco.yaml", cwd=project)
    assert corral.jlist() == []


def test_unknown_key_warns_with_closest(corral: Corral, project: Path) -> None:
    (project / "eco.json").write_text('{"apps": [{"name": "w", "script": "app.py", '
                                      '"intances": 2, "vizion": false}]}')
    proc = corral.run("start", "eco.json", cwd=project)
    assert "unknown key 'intances' is ignored; did you mean 'instances'?" in proc.stderr
    assert "key 'vizion' is ignored" in proc.stderr
    assert len(corral.jlist()) == 1


def test_units_and_aliases(corral: Corral, project: Path) -> None:
    (project / "eco.yaml").write_text(yaml.safe_dump({"apps": [{
        "name": "u", "exec": "app.py", "min_uptime": "5s", "kill_timeout": "2s",
        "restart_delay": 250, "max_memory_restart": "200M", "err_file": "logs/e.log",
        "out": "logs/o.log", "interpreterArgs": "-X dev", "args": "--a 1 --b 'x y'",
        "stop_exit_codes": 3, "port": 3000, "namespace": "api",
    }]}))
    corral.run("start", "eco.yaml", cwd=project)
    env = corral.jlist()[0]["pm2_env"]
    assert env["min_uptime"] == 5000 and env["kill_timeout"] == 2000
    assert env["restart_delay"] == 250 and env["stop_exit_codes"] == [3]
    assert env["pm_err_log_path"] == str(project / "logs" / "e.log")
    assert env["pm_out_log_path"] == str(project / "logs" / "o.log")
    assert env["node_args"] == ["-X", "dev"] and env["args"] == ["--a", "1", "--b", "x y"]
    assert env["namespace"] == "api"
    shown = corral.run("describe", "u", "--env").stdout
    assert "PORT=3000" in shown


MALFORMED = {
    "eco.json": ('{apps: [{name: "x", script: "app.py"\n  instances: 2}]}',
                 ["eco.json:2:3", "syntax error"]),
    "eco.yaml": ("apps:\n  - name: x\n    script: app.py\n   bad: [\n",
                 ["eco.yaml:", "YAML syntax error"]),
    "eco.toml": ('[[apps]]\nname = "x"\nscript = app.py\n', ["eco.toml", "TOML syntax error",
                                                             "line 3"]),
    "ecosystem.config.py": ("apps = [\n  {'name': 'x' 'script': }\n]\n",
                            ["ecosystem.config.py:2", "Python syntax error"]),
    "types.yaml": ("apps:\n  - name: web\n    script: app.py\n    instances: lots\n",
                   ["types.yaml", "app 'web'", "key 'instances'", "'lots'"]),
    "units.yaml": ("apps:\n  - name: web\n    script: app.py\n    min_uptime: soon\n",
                   ["app 'web'", "key 'min_uptime'", "duration"]),
    "memory.yaml": ("apps:\n  - name: web\n    script: app.py\n    max_memory_restart: lots\n",
                    ["app 'web'", "key 'max_memory_restart'", "200M"]),
    "noscript.yaml": ("apps:\n  - name: web\n    instances: 2\n",
                      ["noscript.yaml", "app 'web'", "missing key 'script'"]),
    "missing.yaml": ("apps:\n  - name: web\n    script: nope.py\n",
                     ["missing.yaml", "app 'web'", "script not found"]),
    "empty.yaml": ("apps: []\n", ["empty.yaml", "`apps` is empty"]),
    "blank.yaml": ("", ["blank.yaml", "empty"]),
    "dups.yaml": ("apps:\n  - {name: web, script: app.py}\n  - {name: web, script: app.py}\n",
                  ["dups.yaml", "both named 'web'"]),
    "notlist.json": ('{"apps": 3}', ["notlist.json", "must be a list"]),
}


def test_malformed_files_name_the_problem(corral: Corral, project: Path) -> None:
    (project / "ok.yaml").write_text("apps:\n  - name: keep\n    script: app.py\n")
    corral.run("start", "ok.yaml", cwd=project)
    before = [(r["pid"], r["pm2_env"]["status"]) for r in corral.jlist()]
    for name, (text, needles) in MALFORMED.items():
        (project / name).write_text(text)
        proc = corral.run("start", name, cwd=project, check=False)
        assert proc.returncode == 1, (name, proc.stderr)
        assert "Traceback" not in proc.stderr, proc.stderr
        for needle in needles:
            assert needle in proc.stderr, (name, needle, proc.stderr)
    assert [(r["pid"], r["pm2_env"]["status"]) for r in corral.jlist()] == before
    unknown_env = corral.run("start", "ok.yaml", "--env", "staging", cwd=project)
    assert "warning:" in unknown_env.stderr  # PM2 goes on with `env` alone; so does corral
    assert "--env staging: no app defines env_staging" in unknown_env.stderr


def test_js_without_node_is_a_clear_error(corral: Corral, project: Path) -> None:
    (project / "ecosystem.config.js").write_text("module.exports = {apps: []}\n")
    env = dict(corral.env, PATH=str(Path(os.__file__).parent))  # no node on this PATH
    proc = corral.run("start", "ecosystem.config.js", cwd=project, env=env, check=False)
    assert proc.returncode == 1
    assert "evaluated by node, which is not installed" in proc.stderr


def test_log_folder_created_or_clear_failure(corral: Corral, project: Path) -> None:
    blocker = corral.tmp / "blocker"
    blocker.write_text("a file, not a folder")
    (project / "bad.yaml").write_text(yaml.safe_dump({"apps": [
        {"name": "w", "script": "app.py", "error_file": str(blocker / "sub" / "err.log")}]}))
    proc = corral.run("start", "bad.yaml", cwd=project, check=False)
    assert proc.returncode == 1
    assert f"cannot create the folder {blocker / 'sub'}" in proc.stderr
    assert corral.jlist() == []
    if os.getuid() != 0:
        locked = corral.tmp / "locked"
        locked.mkdir(mode=0o500)
        (project / "locked.yaml").write_text(yaml.safe_dump({"apps": [
            {"name": "w", "script": "app.py", "error_file": str(locked / "err.log")}]}))
        proc = corral.run("start", "locked.yaml", cwd=project, check=False)
        assert proc.returncode == 1 and str(locked) in proc.stderr


def test_init_writes_templates_that_load(corral: Corral) -> None:
    for fmt in ("py", "toml", "yaml", "json"):
        folder = corral.tmp / f"init-{fmt}"
        folder.mkdir()
        (folder / "app.py").write_text("import time\nwhile True: time.sleep(1)\n")
        out = corral.run("init", "--format", fmt, cwd=folder).stdout
        written = Path(out.split("wrote ")[1].strip())
        assert written.exists() and "#" in written.read_text() or "//" in written.read_text()
        assert corral.run("init", "--format", fmt, cwd=folder, check=False).returncode == 1
        corral.run("start", "--env", "production", cwd=folder)
        row = corral.app("web")
        assert row is not None
        shown = corral.run("describe", "web", "--env").stdout
        assert "APP_ENV=production" in shown
        corral.run("delete", "web")


DB = """
import socket, time
time.sleep(1.0)  # slow to come up: an app started at once next to it would find nothing
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", PORT))
s.listen(16)
while True:
    s.accept()[0].close()
"""

CLIENT = """
import socket, sys, time
try:
    socket.create_connection(("127.0.0.1", PORT), timeout=2).close()
    seen = "up"
except OSError:
    seen = "down"
open(sys.argv[1], "a").write(f"{seen}\\n")
while True:
    time.sleep(1)
"""


def test_depends_on_orders_start_and_stop(corral: Corral) -> None:
    port = free_port()
    corral.script("db.py", DB.replace("PORT", str(port)))
    corral.script("web.py", CLIENT.replace("PORT", str(port)))
    corral.script("worker.py", "import time\nwhile True:\n    time.sleep(1)\n")
    seen = corral.tmp / "web-saw"
    config = corral.tmp / "ecosystem.config.yaml"
    config.write_text(f"""
apps:
  - name: worker
    script: worker.py
    depends_on: web
  - name: web
    script: web.py
    args: [{seen}]
    depends_on: [db]
  - name: db
    script: db.py
    health_check: {{tcp: {port}, interval: 200ms, timeout: 1s, retries: 2, start_period: 2s}}
""")
    corral.run("start", str(config))
    assert seen.read_text() == "up\n"  # web started once db answered
    assert re.search(r"depends on\s+db\n", corral.run("describe", "web").stdout)
    rows = {r["name"]: r for r in corral.jlist()}
    assert rows["db"]["pm2_env"]["created_at"] < rows["web"]["pm2_env"]["created_at"] \
        < rows["worker"]["pm2_env"]["created_at"]
    corral.run("stop", str(config))
    log = (corral.home / "corral.log").read_text()
    stopped = [name for name in re.findall(r"INFO corral\.supervisor: (\w+) \(id \d+\): "
                                           r"stopping -> stopped", log)]
    assert stopped == ["worker", "web", "db"]  # dependents first


def test_depends_on_errors(corral: Corral) -> None:
    corral.script("a.py", "import time\nwhile True:\n    time.sleep(1)\n")
    corral.script("never.py", "import time\nwhile True:\n    time.sleep(1)\n")
    config = corral.tmp / "ecosystem.config.json"
    config.write_text(json.dumps({"apps": [
        {"name": "api", "script": "a.py", "depends_on": ["databse"]},
        {"name": "database", "script": "a.py"}]}))
    typo = corral.run("start", str(config), check=False)
    assert typo.returncode == 1
    assert "depends_on 'databse': no app of that name" in typo.stderr
    assert "did you mean 'database'?" in typo.stderr
    config.write_text(json.dumps({"apps": [
        {"name": "a", "script": "a.py", "depends_on": "b"},
        {"name": "b", "script": "a.py", "depends_on": "c"},
        {"name": "c", "script": "a.py", "depends_on": "a"}]}))
    cycle = corral.run("start", str(config), check=False)
    assert cycle.returncode == 1 and "depends_on makes a cycle: a -> b -> c -> a" in cycle.stderr
    assert corral.jlist() == []  # nothing was started
    port = free_port()  # nothing listens there
    config.write_text(json.dumps({"apps": [
        {"name": "front", "script": "a.py", "depends_on": ["back"]},
        {"name": "back", "script": "never.py",
         "health_check": {"tcp": port, "interval": "200ms", "timeout": "200ms",
                          "retries": 1}}]}))
    sick = corral.run("start", str(config), check=False)
    assert sick.returncode == 1
    assert "back: not healthy within" in sick.stderr
    assert "not started, as they depend on it: front" in sick.stderr
    assert [r["name"] for r in corral.jlist()] == ["back"]
