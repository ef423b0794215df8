"""`corral init`: a commented ecosystem file to start from."""

from __future__ import annotations

import os

from corral.model.errors import CorralError

PY = '''\
"""corral ecosystem file: `corral start` in this folder starts these apps.

Keys are PM2's (https://pm2.keymetrics.io/docs/usage/application-declaration/),
durations are milliseconds or strings like "5s", sizes like "200M".
`corral start --env production` applies env_production over env.
"""

apps = [
    {
        "name": "web",
        "script": "app.py",              # a script, a binary, or a "shell command"
        # "interpreter": ".venv/bin/python",  # default: the Python that runs corral
        "args": [],                       # arguments for the script
        # "instances": 4,                 # a web app on 4 cores, one port: cluster mode
        # "exec_mode": "fork",            # with instances: N separate processes, for a
        #                                 # worker that serves no port (a queue consumer)
        "env": {"APP_ENV": "development"},
        "env_production": {"APP_ENV": "production"},
        "autorestart": True,
        "max_restarts": 16,               # unstable restarts before "errored"
        "min_uptime": "1s",               # shorter runs are unstable
        "exp_backoff_restart_delay": 100, # ms, ×1.5 per restart, at most 15 s
        "kill_timeout": 1600,             # ms between SIGINT and SIGKILL on stop
        # "out_file": "~/logs/web-out.log",
        # "error_file": "~/logs/web-error.log",
    },
]
'''

TOML = '''\
# corral ecosystem file: `corral start` in this folder starts these apps.
# Keys are PM2's; durations are milliseconds or strings like "5s", sizes like "200M".
# `corral start --env production` applies env_production over env.

[[apps]]
name = "web"
script = "app.py"               # a script, a binary, or a "shell command"
# interpreter = ".venv/bin/python"   # default: the Python that runs corral
args = []
# instances = 4                 # a web app on 4 cores, one port: cluster mode
# exec_mode = "fork"            # with instances: N separate processes (a worker)
autorestart = true
max_restarts = 16               # unstable restarts before "errored"
min_uptime = "1s"
exp_backoff_restart_delay = 100 # ms, x1.5 per restart, at most 15 s
kill_timeout = 1600             # ms between SIGINT and SIGKILL on stop
# out_file = "~/logs/web-out.log"
# error_file = "~/logs/web-error.log"

[apps.env]
APP_ENV = "development"

[apps.env_production]
APP_ENV = "production"
'''

YAML = '''\
# corral ecosystem file: `corral start` in this folder starts these apps.
# Keys are PM2's; durations are milliseconds or strings like "5s", sizes like "200M".
apps:
  - name: web
    script: app.py              # a script, a binary, or a "shell command"
    # interpreter: .venv/bin/python
    # instances: 4              # a web app on 4 cores, one port: cluster mode
    # exec_mode: fork           # with instances: N separate processes (a worker)
    autorestart: true
    max_restarts: 16
    min_uptime: 1s
    exp_backoff_restart_delay: 100
    kill_timeout: 1600
    env:
      APP_ENV: development
    env_production:
      APP_ENV: production
'''

JSON = '''\
// corral ecosystem file (JSON as PM2 reads it: comments and trailing commas are fine)
{
  apps: [
    {
      name: "web",
      script: "app.py",
      // instances: 4,          // a web app on 4 cores, one port: cluster mode
      // exec_mode: "fork",     // with instances: N separate processes (a worker)
      autorestart: true,
      max_restarts: 16,
      min_uptime: "1s",
      exp_backoff_restart_delay: 100,
      kill_timeout: 1600,
      env: { APP_ENV: "development" },
      env_production: { APP_ENV: "production" },
    },
  ],
}
'''

# `corral init simple`: one app, the keys to get going (PM2's ecosystem-simple)
SIMPLE = {
    "py": 'apps = [{"name": "app", "script": "app.py"}]\n',
    "toml": '[[apps]]\nname = "app"\nscript = "app.py"\n',
    "yaml": "apps:\n  - name: app\n    script: app.py\n",
    "json": '{\n  "apps": [{ "name": "app", "script": "app.py" }]\n}\n',
}

TEMPLATES = {
    "py": ("ecosystem.config.py", PY),
    "toml": ("ecosystem.config.toml", TOML),
    "yaml": ("ecosystem.config.yaml", YAML),
    "json": ("ecosystem.config.json", JSON),
}


def write_template(fmt: str, force: bool = False, folder: str | None = None,
                   simple: bool = False) -> str:
    """Write ecosystem.config.<fmt>: the commented template, or with simple the shortest
    file that works (PM2's `ecosystem simple`)."""
    name, text = TEMPLATES[fmt]
    if simple:
        text = SIMPLE[fmt]
    path = os.path.join(folder or os.getcwd(), name)
    if os.path.exists(path) and not force:
        raise CorralError(f"{path} already exists; -f overwrites it")
    with open(path, "w") as f:
        f.write(text)
    return path
