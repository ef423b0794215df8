"""Faults and hostile inputs corral must survive (issue 12): each test names the point."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from conftest import Corral, wait_for

NOBODY = 65534
as_root = pytest.mark.skipif(os.getuid() != 0, reason="needs root: it makes folders and "
                             "files owned by another user (nobody)")


def planted_state(marker: Path) -> dict[str, object]:
    """A process list with one shell app that would leave `marker` if it ever ran."""
    spec = {"name": "evil", "script": f"touch {marker}", "kind": "shell", "exec_path": "",
            "cwd": "/", "env": {}, "autorestart": False}
    return {"version": 1, "next_id": 1,
            "instances": [{"pm_id": 0, "spec": spec, "status": "online", "pid": 0}]}


@as_root
def test_1_a_home_another_user_controls_is_refused(corral: Corral) -> None:
    home = corral.tmp / "shared-home"
    home.mkdir()
    os.chmod(home, 0o777)
    os.chown(home, NOBODY, NOBODY)
    victim = corral.tmp / "victim"
    victim.write_text("precious\n")
    marker = corral.tmp / "pwned"
    # what user nobody left there: a link over the pid file, and a list with a command
    os.symlink(victim, home / "corral.pid")
    os.lchown(home / "corral.pid", NOBODY, NOBODY)
    (home / "state.json").write_text(json.dumps(planted_state(marker)))
    os.chown(home / "state.json", NOBODY, NOBODY)
    env = dict(corral.env, CORRAL_HOME=str(home))
    done = corral.run("ping", check=False, env=env)
    assert done.returncode == 1
    assert f"belongs to uid {NOBODY}, not to you (uid 0)" in done.stderr, done.stderr
    assert "chown" in done.stderr  # and what to do
    assert victim.read_text() == "precious\n"
    assert not marker.exists()
    assert not (home / "corral.log").exists()  # no daemon was started there
    # the same folder, ours now but still writable by everybody: refused with the fix
    os.chown(home, 0, 0)
    done = corral.run("ping", check=False, env=env)
    assert done.returncode == 1 and "writable by other users" in done.stderr, done.stderr
    assert f"chmod 700 {home}" in done.stderr
    assert victim.read_text() == "precious\n" and not marker.exists()


@as_root
def test_1_files_of_another_user_in_our_home_are_not_read(corral: Corral) -> None:
    corral.home.mkdir(mode=0o700)
    marker = corral.tmp / "pwned"
    state = corral.home / "state.json"
    state.write_text(json.dumps(planted_state(marker)))
    os.chown(state, NOBODY, NOBODY)
    dump = corral.home / "dump.json"
    dump.write_text(json.dumps({"apps": [{"spec": planted_state(marker)["instances"][0]
                                          ["spec"], "instances": 1}]}))  # type: ignore[index]
    os.chown(dump, NOBODY, NOBODY)
    assert json.loads(corral.run("ping").stdout)["msg"] == "pong"
    assert corral.jlist() == []
    log = corral.home / "corral.log"
    wait_for(lambda: "refusing the process list" in log.read_text(), what="the refusal logged")
    done = corral.run("resurrect", check=False)
    assert done.returncode != 0 and f"belongs to uid {NOBODY}" in done.stderr, done.stderr
    assert not marker.exists()


def test_1_a_link_at_the_state_file_is_not_followed(corral: Corral) -> None:
    corral.home.mkdir(mode=0o700)
    target = corral.tmp / "elsewhere.json"
    marker = corral.tmp / "pwned"
    target.write_text(json.dumps(planted_state(marker)))
    os.symlink(target, corral.home / "state.json")
    corral.run("ping")
    assert corral.jlist() == [] and not marker.exists()
    app = corral.script("a.py", "import time\ntime.sleep(600)\n")
    corral.run("start", str(app))  # writing the list replaces the link, never its target
    assert json.loads(target.read_text())["instances"][0]["spec"]["name"] == "evil"
    assert not (corral.home / "state.json").is_symlink()
