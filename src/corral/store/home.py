"""Where corral keeps its files: CORRAL_HOME and its layout."""

from __future__ import annotations

import os
import stat

from corral.model.errors import CorralError

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing and json cost ~15 ms at import: not on `corral list`'s path
    from typing import Any


class Home:
    """The folder of one daemon: socket, locks, state, logs, pipes."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.socket = os.path.join(root, "rpc.sock")
        # where cluster workers that outlived their daemon knock (corral.cluster.child)
        self.cluster_socket = os.path.join(root, "cluster.sock")
        self.daemon_lock = os.path.join(root, "daemon.lock")
        self.spawn_lock = os.path.join(root, "spawn.lock")
        self.pid_file = os.path.join(root, "corral.pid")
        # the same pid under PM2's name, for scripts that know PM2's files (docs/daemon.md)
        self.pm2_pid_file = os.path.join(root, "pm2.pid")
        self.daemon_log = os.path.join(root, "corral.log")
        self.state_file = os.path.join(root, "state.json")
        self.logs = os.path.join(root, "logs")
        self.pipes = os.path.join(root, "pipes")

    def __repr__(self) -> str:
        return f"Home({self.root!r})"

    def check_owner(self) -> None:
        """Refuse a home another user controls, as ssh refuses such a ~/.ssh: it must be
        ours and writable by nobody else, or a planted state.json would run its commands
        as us and a planted link would make us overwrite a file of ours."""
        try:
            st = os.stat(self.root)
        except OSError:  # none yet, or not reachable: ensure() makes it or says why
            return
        uid = os.getuid()
        if st.st_uid != uid:
            raise CorralError(
                f"CORRAL_HOME {self.root} belongs to uid {st.st_uid}, not to you (uid {uid}): "
                "corral refuses a home another user controls; use a folder of your own "
                "(set CORRAL_HOME), or give this one to yourself (chown)")
        if st.st_mode & 0o022:
            raise CorralError(
                f"CORRAL_HOME {self.root} is writable by other users (mode "
                f"{st.st_mode & 0o777:o}): they could plant files in it; "
                f"`chmod 700 {self.root}`, or use another folder")

    def ensure(self) -> None:
        """Create the home (0700) and its folders; fail clearly when that is impossible or
        when the home is not ours alone (check_owner)."""
        self.check_owner()
        try:
            os.makedirs(self.root, mode=0o700, exist_ok=True)
            st = os.stat(self.root)
            if st.st_mode & 0o777 != 0o700:
                os.chmod(self.root, 0o700)
            for sub in (self.logs, self.pipes):
                os.makedirs(sub, mode=0o700, exist_ok=True)
                inner = os.lstat(sub)
                if not stat.S_ISDIR(inner.st_mode) or inner.st_uid != os.getuid():
                    raise CorralError(f"{sub} is not a folder of yours (a link, or another "
                                      "user's): remove it, corral makes it again")
            probe = os.path.join(self.root, f".probe-{os.getpid()}")
            os.close(os.open(probe, os.O_WRONLY | os.O_CREAT, 0o600))
            os.unlink(probe)
        except OSError as exc:
            raise CorralError(
                f"cannot use CORRAL_HOME {self.root}: {exc.strerror or exc}; "
                "set CORRAL_HOME to a folder you can write to"
            ) from None


def open_own(path: str) -> int:
    """Open a file of the home for reading without following a link, and only if it is
    ours (a file another user planted is refused: PermissionError)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    st = os.fstat(fd)
    if st.st_uid != os.getuid():
        os.close(fd)
        raise PermissionError(f"{path} belongs to uid {st.st_uid}, not to you "
                              f"(uid {os.getuid()}); refusing to read it")
    return fd


SUN_PATH_MAX = 107  # bytes of an AF_UNIX socket path (Linux's sun_path is 108, NUL included)


def unix_address(path: str) -> tuple[str, int | None]:
    """Where to bind or connect the AF_UNIX socket `path`, whatever its length: the path
    itself, or past SUN_PATH_MAX its folder opened (O_PATH) and reached through
    /proc/self/fd/N/NAME, so that a CORRAL_HOME of any length works. The caller closes
    the fd (the second item, None for a short path) once bind() or connect() returned.
    corral.cluster.child has its own copy (it imports nothing of corral)."""
    if len(os.fsencode(path)) <= SUN_PATH_MAX:
        return path, None
    fd = os.open(os.path.dirname(path) or ".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    return f"/proc/self/fd/{fd}/{os.path.basename(path)}", fd


def home_from_env(environ: dict[str, str] | None = None) -> Home:
    env = os.environ if environ is None else environ
    root = env.get("CORRAL_HOME") or os.path.join(os.path.expanduser("~"), ".corral")
    return Home(os.path.abspath(os.path.expanduser(root)))


def write_json_atomically(path: str, data: Any, backup: str | None = None,
                          **dump_options: Any) -> None:
    """Write data as JSON so that a reader finds the old file or the new one, never a part
    of it: a temp file (0600), fsync, rename. backup: where the old file goes first.
    OSError is the caller's to report."""
    import json

    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        os.unlink(tmp)  # left by a writer that died; never followed if it is a link
    except FileNotFoundError:
        pass
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, **dump_options)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        if backup is not None and os.path.exists(path):
            os.replace(path, backup)
        os.replace(tmp, path)
    except BaseException:  # a full disk: no half-written temp file is left behind
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
