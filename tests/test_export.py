"""`corral export kubernetes|systemd`: the YAML passes kubernetes-validate (the API
schemas it ships, offline) and the units pass `systemd-analyze verify`, for the examples
and for representative ecosystem files of the test suite; a bad file gives the errors of
`corral start`; only what the file sets is exported."""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import yaml

from corral.client import startup
from corral.config import export

from conftest import ROOT, Corral, free_port, wait_for

VALIDATE = shutil.which("kubernetes-validate") or str(
    Path(sys.executable).parent / "kubernetes-validate")
ANALYZE = shutil.which("systemd-analyze")
SYSTEMD_VERSION = 0
if ANALYZE:
    found = re.search(r"systemd (\d+)", subprocess.run(
        [ANALYZE, "--version"], capture_output=True, text=True).stdout)
    SYSTEMD_VERSION = int(found.group(1)) if found else 0

needs_validate = pytest.mark.skipif(not os.path.exists(VALIDATE),
                                    reason="kubernetes-validate is not installed "
                                    "(pip install -e '.[test]')")
needs_systemd = pytest.mark.skipif(ANALYZE is None,
                                   reason="systemd-analyze is not installed here")

SLEEPER = "import time\nwhile True:\n    time.sleep(1)\n"

# representative files, as the suite writes them (test_ecosystem.py, test_triggers.py, ...)
FILES: dict[str, str] = {
    # PM2's classic file in its relaxed JSON (test_ecosystem.JSONISH)
    "ecosystem.json": """// PM2 reads JSON as a JavaScript object literal
{
  apps: [{
    name: "nodejs-column", script: "./app.py", instances: 2, exec_mode: "cluster",
    env_development: { NODE_ENV: "development", watch: true },
    env_production:  { NODE_ENV: "production",  watch: false },
    log_date_format: "YYYY-MM-DD HH:mm Z",
    error_file: "~/data/err.log", out_file: "~/data/info.log",
    max_restarts: 10,
  }],
}
""",
    # depends_on with a tcp health check (test_ecosystem.test_depends_on_orders_...)
    "ecosystem.config.yaml": """
apps:
  - name: worker
    script: app.py
    depends_on: web
  - name: web
    script: app.py
    args: [--verbose]
    depends_on: [db]
  - name: db
    script: app.py
    health_check: {tcp: 5432, interval: 200ms, timeout: 1s, retries: 2, start_period: 2s}
""",
    # memory, http health, kill timeout, secrets, increment_var (test_triggers-like)
    "ecosystem.config.toml": """
[[apps]]
name = "api"
script = "app.py"
instances = 3
exec_mode = "fork"
increment_var = "PORT"
max_memory_restart = "150M"
kill_timeout = 4000
kill_signal = "SIGTERM"
exp_backoff_restart_delay = 100
stop_exit_codes = [0, 3]
health_check = { http = "http://localhost:8080/healthz?deep=1", interval = "3s", timeout = "1500ms", retries = 4, start_period = "5s" }
[apps.env]
PORT = "8080"
GREETING = "50% off, $5 \\"deal\\""
[apps.env_staging]
DB_PASSWORD = "hunter2"
""",
    # Python file: a shell command, no autorestart, cron, a log file
    "ecosystem.config.py": """
apps = [
    {"name": "report", "script": "echo report; sleep 60", "autorestart": False,
     "cron_restart": "0 3 * * *", "log_file": "logs/report.log"},
    {"name": "Queue_Worker", "script": "app.py", "watch": False, "namespace": "jobs",
     "min_uptime": 2000, "max_restarts": 5, "restart_delay": 250},
]
""",
    # [tool.corral] in pyproject.toml, a module
    "pyproject.toml": """
[project]
name = "demo"

[[tool.corral.apps]]
name = "mod"
script = "http.server"
module = true
args = ["8123"]
port = 8123
""",
}


def project(corral: Corral, name: str, text: str) -> Path:
    folder = corral.tmp / "shop"
    folder.mkdir(exist_ok=True)
    (folder / "app.py").write_text(SLEEPER)
    path = folder / name
    path.write_text(text)
    return path


def run_export(corral: Corral, *args: str, check: bool = True,
               env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    # HOME in the test's folder: files such as ~/data/err.log are created on load
    return corral.run("export", *args, check=check,
                      env={**corral.env, "HOME": str(corral.tmp), **(env or {})})


def validate(path: Path) -> None:
    done = subprocess.run([VALIDATE, "--strict", str(path)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "did not validate" not in done.stdout + done.stderr


def verify(folder: Path) -> None:
    """systemd-analyze verify every unit, and every instance of a template (which reads
    the instance's drop-ins); a warning fails it too, except the backoff keys that
    systemd before 254 does not know."""
    targets = []
    for unit in sorted(folder.glob("*.service")):
        targets.append(str(unit))
        if unit.name.endswith("@.service"):
            drop_ins = sorted(folder.glob(unit.name.replace("@.", "@*.") + ".d"))
            targets += [str(folder / d.name[:-2]) for d in drop_ins] or [
                str(folder / unit.name.replace("@.", "@0."))]
    assert targets
    for target in targets:
        done = subprocess.run([ANALYZE, "verify", target], capture_output=True, text=True,
                              timeout=120)
        noise = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()
                 and not (SYSTEMD_VERSION < 254 and re.search(
                     r"Unknown key '(RestartSteps|RestartMaxDelaySec)'", line))]
        assert done.returncode == 0 and noise == [], (target, noise)


@needs_validate
@pytest.mark.parametrize("name", sorted(FILES))
def test_kubernetes_export_of_the_suites_files_validates(corral: Corral, name: str) -> None:
    path = project(corral, name, FILES[name])
    for env in ([], ["--env", "production"] if "production" in FILES[name] else [],
                ["--secrets"]):
        out = run_export(corral, "kubernetes", str(path), *env, "--namespace", "shop").stdout
        target = corral.tmp / "k8s.yaml"
        target.write_text(out)
        validate(target)
        documents = [d for d in yaml.safe_load_all(out) if d]
        assert documents and all(d["metadata"]["namespace"] == "shop" for d in documents)


@needs_validate
def test_kubernetes_export_of_the_examples_validates(corral: Corral) -> None:
    examples = [ROOT / "examples" / "ecosystem.config.toml"]
    if shutil.which("node"):
        examples.append(ROOT / "examples" / "node" / "pm2.config.js")
    for example in examples:
        folder = corral.tmp / example.parent.name
        shutil.copytree(example.parent, folder, dirs_exist_ok=True)
        out = run_export(corral, "kubernetes", str(folder / example.name),
                         "--env", "production", "-o", str(corral.tmp / "out")).stdout
        assert out.strip() == f"corral: wrote {corral.tmp / 'out' / 'kubernetes.yaml'}"
        validate(corral.tmp / "out" / "kubernetes.yaml")


def test_kubernetes_objects(corral: Corral) -> None:
    path = project(corral, "ecosystem.config.toml", FILES["ecosystem.config.toml"] + """
[[apps]]
name = "web"
script = "app.py"
instances = 4
exec_mode = "cluster"
port = 3000
[apps.env]
SESSION_SECRET = "s"
DATABASE_URL = "postgres://u:pw@db/x"
PLAIN = "p"
""")
    done = run_export(corral, "kubernetes", str(path), "--env", "staging", "--secrets",
                      "--image", "registry.example/shop:1.2", env={"SHELL_ONLY": "leak"})
    assert "SHELL_ONLY" not in done.stdout and "leak" not in done.stdout
    docs = {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(done.stdout)}
    api = docs[("Deployment", "api")]["spec"]
    pod = api["template"]["spec"]
    container = pod["containers"][0]
    assert api["replicas"] == 3
    assert container["image"] == "registry.example/shop:1.2"
    assert container["command"] == ["corral-runtime", "start", "ecosystem.config.toml",
                                    "--only", "api", "--env", "staging", "--raw", "-i", "1"]
    assert pod["terminationGracePeriodSeconds"] == 4 + export.STOP_MARGIN_S
    assert container["resources"] == {"limits": {"memory": "214Mi"}}  # 150M + the runtime
    env = {e["name"]: e for e in container["env"]}
    assert env["GREETING"] == {"name": "GREETING", "value": '50% off, $5 "deal"'}
    assert env["DB_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "api-env",
                                                               "key": "DB_PASSWORD"}
    assert docs[("Secret", "api-env")]["stringData"] == {"DB_PASSWORD": "hunter2"}
    assert container["readinessProbe"] == {
        "httpGet": {"path": "/healthz?deep=1", "port": 8080}, "initialDelaySeconds": 5,
        "periodSeconds": 3, "timeoutSeconds": 2, "failureThreshold": 4}
    assert container["livenessProbe"]["failureThreshold"] == 8
    assert docs[("Service", "api")]["spec"]["ports"][0]["port"] == 8080
    # a cluster app: N pods of one worker each, behind a Service
    web = docs[("Deployment", "web")]["spec"]
    assert web["replicas"] == 4 and web["template"]["spec"]["containers"][0]["command"][-2:] \
        == ["-i", "1"]
    assert docs[("Secret", "web-env")]["stringData"] == {
        "SESSION_SECRET": "s", "DATABASE_URL": "postgres://u:pw@db/x"}
    assert docs[("Service", "web")]["spec"]["selector"] == web["selector"]["matchLabels"]
    assert "# web: cluster mode, 4 workers: 4 pods of one worker each" in done.stdout
    # a named list instead
    named = run_export(corral, "kubernetes", str(path), "--secrets", "PLAIN").stdout
    assert {d["metadata"]["name"]: d["stringData"] for d in yaml.safe_load_all(named)
            if d["kind"] == "Secret"} == {"web-env": {"PLAIN": "p"}}


def test_the_deployments_command_runs_that_app_alone(corral: Corral) -> None:
    """What a pod runs, run here: `corral-runtime start FILE --only web --raw -i 1` starts
    one worker of web and nothing else, and SIGTERM ends it with 0."""
    port = free_port()
    folder = corral.tmp / "shop"
    shutil.copytree(ROOT / "examples", folder, ignore=shutil.ignore_patterns("node"))
    config = folder / "ecosystem.config.toml"
    config.write_text(config.read_text().replace("3000", str(port)))
    out = run_export(corral, "kubernetes", str(config)).stdout
    deployment = next(d for d in yaml.safe_load_all(out) if d["kind"] == "Deployment")
    command = deployment["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[0] == "corral-runtime" and command[-2:] == ["-i", "1"]
    runtime = str(Path(sys.executable).parent / "corral-runtime")
    proc = subprocess.Popen([runtime, *command[1:]], cwd=folder, env=corral.env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: (corral.home / "rpc.sock").exists(), 20, what="the runtime's socket")
        rows = wait_for(lambda: [r for r in corral.jlist() if r["pm2_env"]["status"]
                                 == "online"], 20, interval=0.2)
        assert [r["name"] for r in rows] == ["web"]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as answer:
            assert answer.read().startswith(b"hello world")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


@needs_systemd
@pytest.mark.parametrize("name", sorted(FILES))
def test_systemd_units_of_the_suites_files_verify(corral: Corral, name: str) -> None:
    path = project(corral, name, FILES[name])
    units = corral.tmp / "units"
    run_export(corral, "systemd", str(path), "-o", str(units))
    verify(units)


@needs_systemd
def test_systemd_units_of_the_examples_verify(corral: Corral) -> None:
    folder = corral.tmp / "examples"
    shutil.copytree(ROOT / "examples", folder)
    run_export(corral, "systemd", str(folder / "ecosystem.config.toml"), "--env",
               "production", "-o", str(corral.tmp / "units"))
    assert sorted(p.name for p in (corral.tmp / "units").iterdir()) == [
        "hello@.service", "web.service"]
    verify(corral.tmp / "units")


def test_systemd_units(corral: Corral) -> None:
    path = project(corral, "ecosystem.config.toml", FILES["ecosystem.config.toml"])
    (path.parent / "ecosystem.config.yaml").write_text(FILES["ecosystem.config.yaml"])
    units = corral.tmp / "units"
    run_export(corral, "systemd", str(path), "--env", "staging", "-o", str(units),
               env={"SHELL_ONLY": "leak"})
    api = (units / "api@.service").read_text()
    assert "SHELL_ONLY" not in api
    for line in ["Restart=always", "RestartPreventExitStatus=0 3", "RestartSec=100ms",
                 "RestartMaxDelaySec=15s", "KillSignal=SIGTERM", "TimeoutStopSec=4s",
                 f"MemoryMax={150 * 1024 * 1024}", "Environment=CORRAL_INSTANCE=%i",
                 f"WorkingDirectory={path.parent}", "Environment=DB_PASSWORD=hunter2",
                 # % is a specifier, so %%; $ is literal in Environment= (not a command)
                 'Environment="GREETING=50%% off, $5 \\"deal\\""',
                 "StandardOutput=journal", "SyslogIdentifier=api",
                 f"ExecStart={sys.executable} {path.parent / 'app.py'}",
                 "StartLimitIntervalSec=18s", "StartLimitBurst=16",
                 f"User={pwd.getpwuid(os.getuid()).pw_name}"]:
        assert line in api.splitlines(), (line, api)
    for index in range(3):  # increment_var: a drop-in for each instance
        drop_in = (units / f"api@{index}.service.d" / "increment.conf").read_text()
        assert f"Environment=PORT={8080 + index}" in drop_in
    # depends_on, logs to a file per instance, no autorestart
    run_export(corral, "systemd", str(path.parent / "ecosystem.config.yaml"), "-o",
               str(units))
    web = (units / "web.service").read_text()
    assert "Requires=db.service" in web and "After=db.service" in web
    assert "ExecStart=" in web and "--verbose" in web
    (path.parent / "ecosystem.config.py").write_text(FILES["ecosystem.config.py"])
    done = run_export(corral, "systemd", str(path.parent / "ecosystem.config.py"), "-o",
                      str(units))
    report = (units / "report.service").read_text()
    assert "Restart=no" in report
    assert f"StandardOutput=append:{path.parent / 'logs' / 'report.log'}" in report
    assert "ExecStart=/bin/sh -c \"echo report; sleep 60\" sh" in report
    assert "report: cron_restart: not translated" in done.stderr
    assert (units / "Queue_Worker.service").exists()


def test_systemd_cluster_app_runs_corral_runtime(corral: Corral) -> None:
    path = project(corral, "ecosystem.json", FILES["ecosystem.json"])
    out = run_export(corral, "systemd", str(path), "--env", "production").stdout
    assert "# ---- nodejs-column.service" in out
    exec_start = next(line for line in out.splitlines() if line.startswith("ExecStart="))
    assert exec_start == (f"ExecStart={sys.executable} -m corral.daemon.runtime start {path} "
                          "--only nodejs-column --env production --raw")
    assert "Environment=CORRAL_HOME=%S/corral/nodejs-column" in out  # a home of its own
    assert "KillSignal=SIGTERM" in out and "Restart=on-failure" in out


def test_one_quoting_for_startup_and_export() -> None:
    assert startup._quote is export.unit_word
    assert export.unit_word("a%b$c", command=True) == "a%%b$$c"
    assert export.unit_word("two words") == '"two words"'
    assert export.unit_word('say "hi"\nbye') == '"say \\"hi\\"\\x0abye"'
    unit = startup.unit_text("alice", "/home/alice/.corral 100%", "/usr/bin/python3", "/bin")
    assert 'Environment="CORRAL_HOME=/home/alice/.corral 100%%"' in unit


BAD: dict[str, str] = {
    "missing.yaml": "apps:\n  - name: x\n    script: nowhere.py\n",
    "syntax.json": '{"apps": [{"name": "x", "script": "app.py",,}]}',
    "value.yaml": "apps:\n  - name: x\n    script: app.py\n    instances: many\n",
    "cycle.json": json.dumps({"apps": [
        {"name": "a", "script": "app.py", "depends_on": "b"},
        {"name": "b", "script": "app.py", "depends_on": "a"}]}),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_a_bad_file_gives_the_errors_of_start(corral: Corral, name: str) -> None:
    path = project(corral, name, BAD[name])
    started = corral.run("start", str(path), check=False)
    for target in ("kubernetes", "systemd"):
        exported = run_export(corral, target, str(path), check=False)
        assert exported.returncode == started.returncode != 0
        assert exported.stderr == started.stderr
        assert exported.stdout == ""


def test_warnings_are_those_of_start_and_options_are_checked(corral: Corral) -> None:
    path = project(corral, "eco.yaml", "apps:\n  - name: x\n    script: app.py\n"
                                       "    kill_timout: 100\n")
    exported = run_export(corral, "kubernetes", str(path))
    assert "did you mean 'kill_timeout'" in exported.stderr
    wrong = run_export(corral, "systemd", str(path), "--image", "x", check=False)
    assert wrong.returncode != 0 and "--image: not an option of" in wrong.stderr
    two = project(corral, "two.yaml", "apps:\n  - script: app.py\n  - name: b\n"
                                      "    script: app.py\n")
    unnamed = run_export(corral, "kubernetes", str(two), check=False)
    assert unnamed.returncode != 0 and "has no `name` in the file" in unnamed.stderr


def test_deploy_md_shows_what_export_writes(corral: Corral) -> None:
    text = (ROOT / "docs" / "deploy.md").read_text()
    block = text.split("<!-- kubernetes example")[1].split("```yaml\n")[1].split("```")[0]
    command = block.splitlines()[0]
    assert command.startswith("# corral export kubernetes ecosystem.config.toml")
    folder = corral.tmp / "hello"
    shutil.copytree(ROOT / "examples", folder, ignore=shutil.ignore_patterns("node"))
    args = command.split("corral export ")[1].split()
    done = corral.run("export", *args, cwd=folder)
    shown = "".join(line + "\n" for line in block.splitlines()[2:])
    assert done.stdout == shown
