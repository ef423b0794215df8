"""The CLI's verbs, targets, interpreters and its errors on bad input."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from conftest import Corral, wait_for

SLEEPER = """
import time
while True:
    time.sleep(1)
"""


def snapshot(corral: Corral) -> list[tuple[int, int, str, int]]:
    return [(r["pm_id"], r["pid"], r["pm2_env"]["status"], r["pm2_env"]["restart_time"])
            for r in corral.jlist()]


def assert_clean_error(proc, *needles: str) -> None:  # type: ignore[no-untyped-def]
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("corral: error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in proc.stderr, (needle, proc.stderr)


def test_bad_input_changes_nothing(corral: Corral) -> None:
    corral.run("start", str(corral.script("keep.py", SLEEPER)))
    corral.wait_status("keep", "online")
    before = snapshot(corral)

    missing = corral.run("start", "nope.py", check=False)
    assert_clean_error(missing, "script not found", str(corral.tmp / "nope.py"))
    interp = corral.run("start", str(corral.script("x.py", SLEEPER)),
                        "--interpreter", "no-such-python", check=False)
    assert_clean_error(interp, "interpreter 'no-such-python' not found")
    unknown = corral.run("stop", "keep", "ghost", check=False)
    assert_clean_error(unknown, "unknown target 'ghost'")
    for verb in ("restart", "delete", "describe", "reset"):
        assert_clean_error(corral.run(verb, "ghost", check=False), "unknown target")
    bad_i = corral.run("start", str(corral.tmp / "x.py"), "-i", "abc", check=False)
    assert_clean_error(bad_i, "-i/instances takes a number", "'abc'")
    bad_sig = corral.run("start", str(corral.tmp / "x.py"), "--kill-signal", "SIGNOPE",
                         check=False)
    assert_clean_error(bad_sig, "kill_signal 'SIGNOPE'")
    folder = corral.run("start", str(corral.tmp), check=False)
    assert_clean_error(folder, "is a folder")
    no_x = corral.tmp / "noext"
    no_x.write_text("echo hi\n")
    assert_clean_error(corral.run("start", str(no_x), check=False), "not executable")

    assert snapshot(corral) == before  # the stop of keep+ghost did not stop keep


def test_unwritable_home(corral: Corral) -> None:
    blocker = corral.tmp / "file"
    blocker.write_text("")
    env = dict(corral.env, CORRAL_HOME=str(blocker / "home"))
    proc = corral.run("ping", env=env, check=False)
    assert_clean_error(proc, "cannot use CORRAL_HOME", "set CORRAL_HOME")


def test_duplicate_start_refused_unless_force(corral: Corral) -> None:
    app = corral.script("dup.py", SLEEPER)
    corral.run("start", str(app))
    again = corral.run("start", str(app), check=False)
    assert_clean_error(again, "already managed as 'dup'", "-f")
    assert len(corral.jlist()) == 1
    corral.run("start", str(app), "-f")
    rows = corral.jlist()
    assert len(rows) == 2 and {r["name"] for r in rows} == {"dup"}
    assert [r["pm2_env"]["CORRAL_INSTANCE"] for r in rows] == [0, 1]


def test_smart_start_restarts_a_known_app(corral: Corral) -> None:
    corral.run("start", str(corral.script("web.py", SLEEPER)), "-n", "web")
    first = corral.wait_status("web", "online")
    corral.run("start", "web")
    row = corral.wait_status("web", "online")
    assert row["pid"] != first["pid"] and row["pm2_env"]["restart_time"] == 1


def test_targets(corral: Corral) -> None:
    a = corral.script("a.py", SLEEPER)
    b = corral.script("b.py", SLEEPER)
    c = corral.script("c.py", SLEEPER)
    corral.run("start", str(a), "--namespace", "front")
    corral.run("start", str(b), "--namespace", "front")
    # a numeric name (PM2's tests use one) would hide the id it spells: refused
    numeric = corral.run("start", str(c), "-n", "455", check=False)
    assert numeric.returncode == 1 and "is a number" in numeric.stderr
    corral.run("start", str(c), "-n", "c455")

    def statuses() -> dict[str, str]:
        return {r["name"]: r["pm2_env"]["status"] for r in corral.jlist()}

    corral.run("stop", "front")
    assert statuses() == {"a": "stopped", "b": "stopped", "c455": "online"}
    corral.run("restart", "a.py", "b")  # a script path and a name at once
    assert statuses() == {"a": "online", "b": "online", "c455": "online"}
    corral.run("stop", "c455")
    assert statuses()["c455"] == "stopped"
    corral.run("stop", "0")  # an id
    assert statuses()["a"] == "stopped"
    corral.run("stop", "all")
    assert set(statuses().values()) == {"stopped"}
    assert corral.run("id", "a").stdout.strip() == "[ 0 ]"
    corral.run("restart", "all")
    pids = corral.run("pid", "b").stdout.split()
    assert len(pids) == 1 and int(pids[0]) == corral.app("b")["pid"]  # type: ignore[index]
    corral.run("delete", "all")
    assert corral.jlist() == []


def test_interpreters(corral: Corral) -> None:
    out = corral.tmp / "out"
    sh = corral.script("job.sh", f'echo "bash $BASH_VERSION" >> {out}; sleep 600\n')
    binary = corral.script("tool", f"#!/bin/sh\necho binary >> {out}\nexec sleep 600\n")
    binary.chmod(0o755)
    pkg = corral.tmp / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "__main__.py").write_text(
        f"import os, sys, time\nopen({str(out)!r}, 'a').write("
        "f\"module {os.environ.get('PYTHONUNBUFFERED')} {sys.argv[1:]}\\n\")\n"
        "time.sleep(600)\n")
    corral.run("start", str(sh))
    corral.run("start", str(binary))
    corral.run("start", "-m", "pkg", "--", "--flag", "x")
    corral.run("start", f"echo shell-$((40+2)) >> {out}; sleep 600", "-n", "shelly")
    wait_for(lambda: out.exists() and len(out.read_text().splitlines()) == 4, what="4 apps")
    text = out.read_text()
    assert "bash 5" in text or "bash 4" in text
    assert "binary" in text and "shell-42" in text
    assert "module 1 ['--flag', 'x']" in text
    rows = {r["name"]: r for r in corral.jlist()}
    assert set(rows) == {"job", "tool", "pkg", "shelly"}
    assert rows["job"]["pm2_env"]["exec_interpreter"].endswith("bash")
    assert rows["tool"]["pm2_env"]["exec_interpreter"] == "none"
    assert rows["pkg"]["pm2_env"]["exec_interpreter"] == sys.executable


def test_python_interpreter_choice(corral: Corral) -> None:
    out = corral.tmp / "out"
    app = corral.script("which.py", f"import sys, os, time\nopen({str(out)!r}, 'a')"
                        ".write(sys.executable + ' ' + os.environ['PYTHONUNBUFFERED'] + '\\n')\n"
                        "time.sleep(600)\n")
    corral.run("start", str(app))
    wait_for(lambda: out.exists() and out.read_text(), what="the app")
    assert out.read_text().split() == [sys.executable, "1"]
    venv_python = corral.tmp / "venv-python"
    venv_python.symlink_to(sys.executable)
    corral.run("start", str(app), "-n", "other", "-f", "--interpreter", str(venv_python))
    wait_for(lambda: len(out.read_text().splitlines()) == 2, what="the second app")
    assert out.read_text().splitlines()[1].split()[0] == str(venv_python)


def test_list_output(corral: Corral) -> None:
    assert "no apps" in corral.run("list").stdout
    corral.run("start", str(corral.script("t.py", SLEEPER)))
    corral.wait_status("t", "online")
    for verb in ("list", "ls", "status"):
        out = corral.run(verb).stdout
        assert "\x1b[" not in out  # not a terminal: plain
        header = out.splitlines()[0].split()
        assert header == ["id", "name", "namespace", "mode", "pid", "uptime", "↺", "status",
                          "cpu", "mem", "user", "watching"]
        assert out.splitlines()[1].split()[:4] == ["0", "t", "default", "fork"]


def test_help_and_no_command(corral: Corral) -> None:
    proc = corral.run(check=False)
    assert proc.returncode == 1 and "start" in proc.stderr
    help_text = corral.run("start", "--help").stdout
    for flag in ("--name", "--instances", "--interpreter", "--interpreter-args", "--cwd",
                 "--namespace", "--no-autorestart", "--max-restarts", "--restart-delay",
                 "--exp-backoff-restart-delay", "--stop-exit-codes", "--kill-timeout",
                 "--force"):
        assert flag in help_text, flag
    assert corral.run("--version").stdout.startswith("corral ")


@pytest.mark.skipif(not os.path.exists("/bin/sh"), reason="needs /bin/sh")
def test_cwd_option(corral: Corral) -> None:
    work = corral.tmp / "work"
    work.mkdir()
    corral.script("work/w.py", "import os, time\nopen('here', 'w').write(os.getcwd())\n"
                  "time.sleep(600)\n")
    corral.run("start", "w.py", "--cwd", str(work))
    wait_for(lambda: (work / "here").exists(), what="the app in its cwd")
    assert Path((work / "here").read_text()) == work
    bad = corral.run("start", "w.py", "--cwd", str(corral.tmp / "nowhere"), check=False)
    assert_clean_error(bad, "no such folder")


def test_smart_start_does_not_swallow_a_wrong_path(corral: Corral) -> None:
    corral.run("start", str(corral.script("hello.py", SLEEPER)))
    first = corral.wait_status("hello", "online")
    elsewhere = corral.tmp / "elsewhere"
    elsewhere.mkdir()
    proc = corral.run("start", "hello.py", "--cwd", str(elsewhere), "-n", "h3", check=False)
    assert_clean_error(proc, "script not found")
    assert corral.app("hello")["pid"] == first["pid"]  # type: ignore[index]
    assert_clean_error(corral.run("id", "ghost", check=False), "unknown target")
    assert_clean_error(corral.run("pid", "ghost", check=False), "unknown target")


def test_shell_command_arguments(corral: Corral) -> None:
    out = corral.tmp / "args"
    corral.run("start", f'echo "$1 $2" > {out}; sleep 600', "-n", "sh-args", "--", "one",
               "two")
    wait_for(lambda: out.exists() and out.read_text().strip(), what="the shell app")
    assert out.read_text().strip() == "one two"


def test_list_table_rows_and_the_fallback_for_an_older_daemon(
        corral: Corral, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`list` asks for table rows (lists of what the table shows, and the saved-list
    check, in one reply); a daemon that does not know `table` gets `list` with brief
    and `saved`, and the table printed is the same."""
    from corral.client import cli, connection, render
    from corral.store.home import Home

    corral.run("start", str(corral.script("t.py", SLEEPER)), "-i", "2", "--exec-mode", "fork")
    corral.run("start", str(corral.script("u.py", SLEEPER)), "--namespace", "other")
    wait_for(lambda: [r["pm2_env"]["status"] for r in corral.jlist()] == ["online"] * 3,
             what="three instances online")
    corral.run("save")
    client = connection.Client(Home(str(corral.home)))
    reply = client.call("list", table=True)
    assert list(reply["columns"]) == render.TABLE_COLUMNS and reply["saved"] is True
    brief = {r["pm_id"]: r for r in client.call("list", brief=True)}
    for row in reply["rows"]:
        values = dict(zip(render.TABLE_COLUMNS, row))
        them = brief[values["pm_id"]]
        assert (values["name"], values["namespace"], values["exec_mode"]) == (
            them["spec"]["name"], them["spec"]["namespace"], them["spec"]["exec_mode"])
        for key in ("pid", "pm_uptime", "restart_time", "status", "health", "watching"):
            assert values[key] == them[key], key
        assert values["memory"] > 0 and values["last_error_line"] is None
    client.close()

    monkeypatch.setenv("CORRAL_HOME", str(corral.home))
    monkeypatch.delenv("COLUMNS", raising=False)
    corral.run("start", str(corral.script("v.py", SLEEPER)))  # not saved: said on stderr

    def table(text: str) -> list[list[str]]:  # the uptime column may tick between calls
        return [line.split()[:5] + line.split()[6:] for line in text.splitlines()]

    assert cli.main(["list"]) == 0
    new = capsys.readouterr()

    sent: list[tuple[str, list[str]]] = []

    class OlderDaemon(connection.Client):  # sends what a daemon before `table` refuses
        def send(self, method: str, **params: object) -> str:
            if params.pop("table", False):
                params["no_such_flag"] = True
            sent.append((method, sorted(params)))
            return super().send(method, **params)

    monkeypatch.setattr(connection, "Client", OlderDaemon)
    assert cli.main(["list"]) == 0
    old = capsys.readouterr()
    assert sent[1:] == [("list", ["no_such_flag"]), ("list", ["brief"]), ("saved", [])]
    assert table(new.out) == table(old.out) and len(new.out.splitlines()) == 5
    assert new.err == old.err and new.err.count("run `corral save` to keep them") == 1
