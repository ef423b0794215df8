"""save / resurrect / cleardump / startup: the saved list and the boot unit, for real."""

from __future__ import annotations

import json
import os
import pwd
import shlex
import shutil
import stat
import subprocess
import sys

from conftest import Corral, alive, wait_for

SLEEPER = "import os, time\nprint('up', os.environ.get('GREETING'), flush=True)\n" \
          "while True:\n    time.sleep(1)\n"


def start_three(corral: Corral) -> None:
    """web: fork, 2 instances, with an env var; job: fork; idle: registered but stopped."""
    for name in ("web", "job", "idle"):
        corral.script(f"{name}.py", SLEEPER)
    corral.run("start", "web.py", "-i", "2", "--exec-mode", "fork",
               env=dict(corral.env, GREETING="hello-from-save"))
    corral.run("start", "job.py")
    corral.run("start", "idle.py")
    corral.run("stop", "idle")


def by_name(corral: Corral) -> dict[str, list[dict]]:
    rows: dict[str, list[dict]] = {}
    for row in corral.jlist():
        rows.setdefault(row["name"], []).append(row)
    return rows


def test_save_kill_resurrect(corral: Corral) -> None:
    start_three(corral)
    before = by_name(corral)
    saved = corral.run("save")
    assert "saved 3 app(s)" in saved.stdout
    dump = corral.home / "dump.json"
    assert stat.S_IMODE(dump.stat().st_mode) == 0o600  # the environment may hold secrets
    assert [a["spec"]["name"] for a in json.loads(dump.read_text())["apps"]] == \
        ["web", "job", "idle"]
    corral.run("kill")
    old_pids = [r["pid"] for rows in before.values() for r in rows if r["pid"]]
    assert len(old_pids) == 3 and not any(alive(p) for p in old_pids)

    out = corral.run("resurrect")
    assert "resurrected 3 app(s)" in out.stdout
    after = by_name(corral)
    assert sorted(after) == ["idle", "job", "web"]
    assert [r["pm2_env"]["status"] for r in after["web"]] == ["online", "online"]
    assert after["job"][0]["pm2_env"]["status"] == "online"
    assert [r["pm2_env"]["status"] for r in after["idle"]] == ["stopped"]  # PM2 #1090
    assert after["web"][0]["pm2_env"]["exec_mode"] == "fork_mode"
    # the saved environment came back with the app
    log = after["web"][0]["pm2_env"]["pm_out_log_path"]
    wait_for(lambda: "up hello-from-save" in open(log).read(), what="the saved env in use")
    # a second resurrect starts nothing twice
    again = corral.run("resurrect")
    assert "already registered, left as they are: web, job, idle" in again.stdout
    assert "resurrected 0 app(s)" in again.stdout
    assert {n: len(r) for n, r in by_name(corral).items()} == {"web": 2, "job": 1, "idle": 1}


def test_resurrect_only_missing_names(corral: Corral) -> None:
    start_three(corral)
    corral.run("save")
    corral.run("delete", "job")
    web_pids = {r["pid"] for r in by_name(corral)["web"]}
    out = corral.run("resurrect")
    assert "resurrected 1 app(s)" in out.stdout and ": job" in out.stdout
    rows = by_name(corral)
    assert {r["pid"] for r in rows["web"]} == web_pids  # untouched
    assert rows["job"][0]["pm2_env"]["status"] == "online"


def test_save_empty_bak_and_broken_dumps(corral: Corral) -> None:
    empty = corral.run("save", check=False)
    assert empty.returncode == 1 and "nothing to save" in empty.stderr and "--force" in empty.stderr
    assert not (corral.home / "dump.json").exists()
    missing = corral.run("resurrect", check=False)
    assert missing.returncode == 1 and "corral save" in missing.stderr

    corral.script("one.py", SLEEPER)
    corral.run("start", "one.py")
    corral.run("save")
    corral.run("save")  # the first save becomes the .bak
    dump, bak = corral.home / "dump.json", corral.home / "dump.json.bak"
    assert json.loads(bak.read_text())["apps"][0]["spec"]["name"] == "one"
    dump.write_text('{"apps": [ {"spec": ')  # a dump cut short (a full disk, a crash)
    corral.run("delete", "all")
    out = corral.run("resurrect")
    assert f"{dump} is unusable (not valid JSON at line 1" in out.stderr
    assert f"using the previous save, {bak}" in out.stderr
    assert by_name(corral)["one"][0]["pm2_env"]["status"] == "online"
    assert dump.read_text() == '{"apps": [ {"spec": '  # left for the user to see

    bak.write_text(json.dumps({"apps": [{"spec": {"name": "x"}, "instances": 0}]}))
    both = corral.run("resurrect", check=False)
    assert both.returncode == 1
    assert "no usable saved list" in both.stderr and str(bak) in both.stderr
    assert 'apps[0] is not a saved app' in both.stderr

    corral.run("save", "--force")  # replaces the broken dump
    cleared = corral.run("cleardump")
    assert "emptied" in cleared.stdout
    assert json.loads(dump.read_text())["apps"] == []
    assert json.loads(bak.read_text())["apps"][0]["spec"]["name"] == "one"


def test_resurrect_reports_a_vanished_script(corral: Corral) -> None:
    gone = corral.script("gone.py", SLEEPER)
    corral.script("stays.py", SLEEPER)
    corral.run("start", "gone.py")
    corral.run("start", "stays.py")
    corral.run("save")
    corral.run("kill")
    gone.unlink()
    out = corral.run("resurrect", check=False)
    assert out.returncode == 1
    assert f"not resurrected: gone: its script {gone} no longer exists" in out.stderr
    assert [r["name"] for r in corral.jlist()] == ["stays"]


def unit_values(text: str, key: str) -> list[str]:
    return [line.split("=", 1)[1] for line in text.splitlines() if line.startswith(key + "=")]


def test_startup_unit_brings_the_saved_apps_back(corral: Corral) -> None:
    units = corral.tmp / "units"
    unsupported = corral.run("startup", "launchd", check=False)
    assert unsupported.returncode == 1 and "supports systemd" in unsupported.stderr

    nothing_saved = corral.run("startup", "systemd", "--unit-dir", str(units))
    assert "corral save" in nothing_saved.stderr  # boot would start nothing: say so
    unit = units / f"corral-{pwd.getpwuid(os.getuid()).pw_name}.service"
    text = unit.read_text()
    assert "Type=oneshot" in text and "RemainAfterExit=yes" in text
    if shutil.which("systemd-analyze"):
        checked = subprocess.run(["systemd-analyze", "verify", str(unit)],
                                 capture_output=True, text=True, timeout=30)
        assert checked.returncode == 0, checked.stderr
    env = dict(corral.env)
    for value in unit_values(text, "Environment"):
        name, _, content = value.strip('"').partition("=")
        env[name] = content
    assert env["CORRAL_HOME"] == str(corral.home)
    [start_line] = unit_values(text, "ExecStart")
    [stop_line] = unit_values(text, "ExecStop")
    assert shlex.split(start_line)[:3] == [sys.executable, "-m", "corral"]

    corral.script("svc.py", SLEEPER)
    corral.run("start", "svc.py")
    corral.run("save")
    corral.run("kill")  # the machine goes down
    booted = subprocess.run(shlex.split(start_line), env=env, capture_output=True, text=True,
                            timeout=60, cwd="/")
    assert booted.returncode == 0, booted.stderr
    row = corral.app("svc", "online")
    assert row is not None
    stopped = subprocess.run(shlex.split(stop_line), env=env, capture_output=True, text=True,
                             timeout=60, cwd="/")
    assert stopped.returncode == 0, stopped.stderr
    assert not alive(row["pid"])
    assert not (corral.home / "rpc.sock").exists()

    removed = corral.run("unstartup", "--unit-dir", str(units))
    assert str(unit) in removed.stdout and not unit.exists()
    again = corral.run("unstartup", "--unit-dir", str(units), check=False)
    assert again.returncode == 1 and "nothing to remove" in again.stderr


def test_startup_as_a_user_prints_the_sudo_command(corral: Corral) -> None:
    """Not root: nothing is written, the command to run as root is printed. (As root, the
    test runs corral's startup code as `nobody`.)"""
    home = corral.tmp / "nobody-home"
    code = ("import os, sys\n"
            f"sys.path[:0] = {sys.path!r}\n"
            # import first: the interpreter's own files may be unreadable to nobody
            "from corral.client import startup\n"
            "if os.getuid() == 0:\n"
            "    os.setgid(65534); os.setuid(65534)\n"
            f"text, notes = startup.install(None, None, None, None, None, False, {str(home)!r})\n"
            "print(text)\n"
            "print(*notes, file=sys.stderr)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=30, env=dict(corral.env, CORRAL_HOME=str(home)))
    assert done.returncode == 0, done.stderr
    assert "needs root" in done.stdout
    assert "sudo env PATH=" in done.stdout and "-m corral startup systemd -u" in done.stdout
    assert f"CORRAL_HOME={home}" in done.stdout
    assert "corral save" in done.stderr  # nothing saved yet: said


def test_list_into_a_closed_pipe_has_no_traceback(corral: Corral) -> None:
    for name in ("p1", "p2", "p3"):
        corral.script(f"{name}.py", SLEEPER)
        corral.run("start", f"{name}.py")
    piped = subprocess.run(f"{shlex.quote(sys.executable)} -m corral list | head -c 1",
                           shell=True, env=corral.env, capture_output=True, text=True,
                           timeout=30)
    assert "Traceback" not in piped.stderr and piped.stderr == ""
