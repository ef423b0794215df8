"""A quiet stop for Python apps (docs/lifecycle.md, "Stopping an app"): corral stops an app
with SIGINT, as PM2 does, and a plain Python script that does not handle it dies of an
uncaught KeyboardInterrupt, whose traceback would land in its error log at every stop
and restart.

Apps stopped with SIGINT get CORRAL_HOME/pysite first on PYTHONPATH: a folder
holding only a `sitecustomize.py`, which every Python imports at start-up. It sets
sys.excepthook so that an uncaught KeyboardInterrupt prints nothing; the process still
exits by SIGINT (CPython re-raises the signal), and an app that handles SIGINT itself
(uvicorn, gunicorn, asyncio servers, `except KeyboardInterrupt:`) shuts down as before.
The sitecustomize it hides (a venv's, the system's) is still run. CORRAL_QUIET_SIGINT=0
in the app's environment turns it off.
"""

from __future__ import annotations

import os

SITECUSTOMIZE = '''\
"""corral's quiet stop (corral/daemon/quietstop.py): an uncaught KeyboardInterrupt, from
the SIGINT corral stops apps with, prints no traceback; the exit is still by SIGINT."""

import os as _os
import sys as _sys


def _corral_quiet_interrupt():
    if _os.environ.get("CORRAL_QUIET_SIGINT", "1") == "0":
        return
    previous = _sys.excepthook

    def hook(kind, value, traceback):
        if isinstance(kind, type) and issubclass(kind, KeyboardInterrupt):
            return
        previous(kind, value, traceback)

    _sys.excepthook = hook


def _corral_next_sitecustomize():
    """Run the sitecustomize this one hides (a venv's or the system's), if any."""
    import importlib.machinery
    import importlib.util

    here = _os.path.dirname(_os.path.abspath(__file__))
    rest = [p for p in _sys.path if _os.path.abspath(p or ".") != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", rest)
    if spec is None or spec.loader is None:
        return
    module = importlib.util.module_from_spec(spec)
    _sys.modules["sitecustomize"] = module
    spec.loader.exec_module(module)


_corral_quiet_interrupt()
_corral_next_sitecustomize()
'''


def quiet_path(home_root: str) -> str:
    """CORRAL_HOME/pysite, holding the sitecustomize.py above (written if missing or
    different)."""
    folder = os.path.join(home_root, "pysite")
    path = os.path.join(folder, "sitecustomize.py")
    try:
        with open(path) as f:
            if f.read() == SITECUSTOMIZE:
                return folder
    except OSError:
        pass
    os.makedirs(folder, mode=0o700, exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(SITECUSTOMIZE)
    os.replace(tmp, path)
    return folder
