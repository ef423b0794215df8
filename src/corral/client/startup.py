"""`corral startup` / `unstartup`: bring the saved apps back at boot (systemd).

The unit is a oneshot service that stays active after its start command:
`ExecStart` runs `corral resurrect` (which starts the daemon if none runs, then the
saved apps that are missing) and `ExecStop` runs `corral kill`. So the unit never
has to track the daemon's pid: a daemon started by hand before the unit starts is
simply used (PM2's Type=forking unit fails there, #3924), and boot brings back what
`corral save` saved, as with PM2.
"""

from __future__ import annotations

import os
import pwd
import shlex
import shutil
import subprocess
import sys

from corral.config.export import unit_word
from corral.model.errors import CorralError

SYSTEM_UNIT_DIR = "/etc/systemd/system"


_quote = unit_word  # one word of a unit file (% and $ escaped), as `corral export systemd`


def unit_text(user: str, corral_home: str, python: str, path_env: str) -> str:
    corral = f"{_quote(python, command=True)} -m corral"
    return "\n".join([
        "# written by `corral startup`; `corral unstartup` removes it",
        "[Unit]",
        f"Description=corral: the apps {user} saved with `corral save`",
        "After=network-online.target",
        "Wants=network-online.target",
        "",
        "[Service]",
        "Type=oneshot",
        "RemainAfterExit=yes",
        f"User={user}",
        f"Environment={_quote('CORRAL_HOME=' + corral_home)}",
        f"Environment={_quote('PATH=' + path_env)}",
        "LimitNOFILE=infinity",
        f"ExecStart={corral} resurrect",
        f"ExecReload={corral} reload all",
        f"ExecStop={corral} kill",
        "TimeoutStartSec=120",
        "TimeoutStopSec=120",
        "",
        "[Install]",
        "WantedBy=multi-user.target",
        "",
    ])


def detect(platform: str | None) -> str:
    if platform in (None, "systemd"):
        if platform is None and shutil.which("systemctl") is None:
            raise CorralError("no init system found that corral supports: `corral startup` "
                              "writes systemd units, and systemctl is not on PATH; have your "
                              "init system run `corral resurrect` at boot instead")
        return "systemd"
    raise CorralError(f"corral startup supports systemd, not {platform!r}; have {platform} "
                      f"run `{sys.executable} -m corral resurrect` at boot as your user")


def _systemd_running() -> bool:
    return os.path.isdir("/run/systemd/system") and shutil.which("systemctl") is not None


def _systemctl(*args: str) -> str:
    done = subprocess.run(["systemctl", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise CorralError(f"`systemctl {' '.join(args)}` failed: "
                          f"{(done.stderr or done.stdout).strip()}")
    return done.stdout


def _user_and_unit(user: str | None, service_name: str | None) -> tuple[str, str]:
    """-u (default: you) and the unit's name (default corral-USER)."""
    user = user or pwd.getpwuid(os.getuid()).pw_name
    return user, service_name or f"corral-{user}"


def install(platform: str | None, user: str | None, home_dir: str | None,
            service_name: str | None, unit_dir: str | None, print_only: bool,
            corral_home: str) -> tuple[str, list[str]]:
    """Write (and enable) the unit; returns (what to print, notes)."""
    detect(platform)
    user, name = _user_and_unit(user, service_name)
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        raise CorralError(f"unknown user {user!r} (-u): no such account here") from None
    if "CORRAL_HOME" not in os.environ and (home_dir or entry.pw_uid != os.getuid()):
        # --hp, or the other user's own home (`sudo corral startup -u alice`)
        corral_home = os.path.join(os.path.abspath(home_dir or entry.pw_dir), ".corral")
    text = unit_text(user, corral_home, sys.executable, os.environ.get("PATH", "/usr/bin:/bin"))
    if print_only:
        return text, []
    notes = []
    if not os.path.exists(os.path.join(corral_home, "dump.json")):
        notes.append(f"nothing is saved in {corral_home} yet: run `corral save` once your "
                     "apps run, or boot will start none")
    target_dir = unit_dir or SYSTEM_UNIT_DIR
    if unit_dir is None and os.getuid() != 0:
        command = (f"sudo env PATH={shlex.quote(os.environ.get('PATH', ''))} "
                   f"CORRAL_HOME={shlex.quote(corral_home)} {shlex.quote(sys.executable)} "
                   f"-m corral startup systemd -u {shlex.quote(user)} "
                   f"--hp {shlex.quote(entry.pw_dir)}")
        return ("[corral] writing a boot unit needs root; copy and run this command:\n"
                + command, notes)
    path = os.path.join(target_dir, f"{name}.service")
    try:
        os.makedirs(target_dir, exist_ok=True)
        with open(path, "w") as f:
            f.write(text)
    except OSError as exc:
        raise CorralError(f"cannot write {path}: {exc.strerror or exc}") from None
    message = f"corral: wrote {path}"
    if unit_dir is None and _systemd_running():
        _systemctl("daemon-reload")
        _systemctl("enable", f"{name}.service")
        message += f"\ncorral: enabled {name}.service; at boot it runs `corral resurrect`"
    else:
        notes.append(f"systemd is not running here: enable it where it runs with "
                     f"`systemctl enable {name}.service`")
    return message, notes


def uninstall(platform: str | None, user: str | None, service_name: str | None,
              unit_dir: str | None) -> str:
    detect(platform)
    _, name = _user_and_unit(user, service_name)
    path = os.path.join(unit_dir or SYSTEM_UNIT_DIR, f"{name}.service")
    if not os.path.exists(path):
        raise CorralError(f"no boot unit at {path}: nothing to remove (-u and --service-name "
                          "must match those given to `corral startup`)")
    if unit_dir is None and _systemd_running():
        _systemctl("disable", f"{name}.service")
    try:
        os.unlink(path)
    except OSError as exc:
        raise CorralError(f"cannot remove {path}: {exc.strerror or exc}") from None
    if unit_dir is None and _systemd_running():
        _systemctl("daemon-reload")
    return f"corral: removed {path}"
