"""What an app is (AppSpec) and what one running instance of it is (InstanceRecord).

Both are plain dataclasses that travel as JSON between the CLI, the daemon and
the persisted process list. Defaults are PM2's (docs/lifecycle.md,
docs/ecosystem.md).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from corral.model import states

DEFAULT_KILL_TIMEOUT_MS = 1600
DEFAULT_MIN_UPTIME_MS = 1000
DEFAULT_MAX_RESTARTS = 16
DEFAULT_LISTEN_TIMEOUT_MS = 3000
EXP_BACKOFF_CAP_MS = 15000
EXP_BACKOFF_RESET_MS = 30000
DEFAULT_INSTANCE_VAR = "CORRAL_INSTANCE"


@dataclass
class AppSpec:
    """Everything needed to launch one instance of an app; resolved by the API."""

    name: str
    script: str  # as the user gave it
    kind: str = "script"  # script | binary | shell | module
    exec_path: str = ""  # absolute script or binary path ("" for shell commands)
    interpreter: str | None = None  # absolute interpreter path, None = run directly
    interpreter_args: list[str] = field(default_factory=list)
    args: list[str] = field(default_factory=list)
    cwd: str = ""
    namespace: str = "default"
    env: dict[str, str] = field(default_factory=dict)
    exec_mode: str = "fork"
    instances: int = 1
    instance_var: str = DEFAULT_INSTANCE_VAR
    increment_var: str | None = None
    autorestart: bool = True
    max_restarts: int = DEFAULT_MAX_RESTARTS
    min_uptime_ms: int = DEFAULT_MIN_UPTIME_MS
    restart_delay_ms: int = 0
    exp_backoff_restart_delay_ms: int = 0
    stop_exit_codes: list[int] = field(default_factory=list)
    kill_timeout_ms: int = DEFAULT_KILL_TIMEOUT_MS
    kill_signal: str = "SIGINT"
    out_file: str | None = None  # None = CORRAL_HOME/logs/<name>-out-<id>.log
    error_file: str | None = None
    force: bool = False
    is_python: bool = False
    autostart: bool = True
    env_name: str | None = None  # the --env applied at the last start / update
    # the variables the app's config sets (env, env_<name>, port): kept when the shell
    # environment is replaced by `--update-env`
    env_overrides: dict[str, str] = field(default_factory=dict)
    cluster_policy: str | None = None  # shared | rr | reuseport (None: corral's default)
    health_check: dict[str, Any] | None = None  # corral.model.health.HealthCheck fields
    depends_on: list[str] = field(default_factory=list)  # apps of its file to start first
    # read from ecosystem files now; acted on by the watch, logs and cluster features
    watch: bool | list[str] = False
    ignore_watch: list[str] = field(default_factory=list)
    watch_delay_ms: int = 0
    max_memory_restart_bytes: int = 0
    cron_restart: str | None = None
    log_date_format: str | None = None
    log_type: str | None = None
    merge_logs: bool = False
    log_file: str | None = None  # the combined out+err file ("" or None: none)
    pid_file: str | None = None  # write the main pid here (PM2's -p / pid_file)
    disable_logs: bool = False
    log_max_size_bytes: int = 0  # rotate when a file reaches this size (0: never)
    log_retain: int = 0  # rotated files kept (0: all)
    log_compress: bool = False  # gzip rotated files
    log_rotate_daily: bool = False
    listen_timeout_ms: int = DEFAULT_LISTEN_TIMEOUT_MS
    wait_ready: bool = False
    shutdown_with_message: bool = False

    def argv(self) -> list[str]:
        """The command line that launches one instance."""
        if self.kind == "shell":
            # "sh" is $0, so the app's arguments are $1, $2, ...
            return ["/bin/sh", "-c", self.script, "sh", *self.args]
        if self.kind == "module":
            assert self.interpreter
            return [self.interpreter, *self.interpreter_args, "-m", self.script, *self.args]
        if self.interpreter:
            return [self.interpreter, *self.interpreter_args, self.exec_path, *self.args]
        return [self.exec_path, *self.args]

    def to_dict(self) -> dict[str, Any]:
        # shallow copies: dataclasses.asdict deep-copies and costs ~0.5 ms an app per `list`
        data = dict(self.__dict__)
        for key, value in data.items():
            if isinstance(value, (list, dict)):
                data[key] = value.copy()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AppSpec:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class InstanceRecord:
    """The persisted state of one process entry (PM2's pm_id)."""

    pm_id: int
    spec: AppSpec
    instance_index: int = 0  # 0..N-1 among the app's instances (spec.instances is N)
    status: str = states.STOPPED
    pid: int = 0
    pid_create_time: float = 0.0
    restart_time: int = 0
    unstable_restarts: int = 0
    created_at: int | None = None  # epoch ms
    pm_uptime: int = 0  # epoch ms of the last (re)start
    exit_code: int | None = None
    exit_signal: str | None = None
    prev_restart_delay_ms: int = 0
    reason: str | None = None  # why the last stop / error happened
    out_log_path: str = ""
    err_log_path: str = ""
    log_path: str = ""  # the combined file, if any
    pid_path: str = ""  # the pid file, if the app asked for one
    adopted: bool = False
    listening: list[str] = field(default_factory=list)  # cluster mode: addresses served
    last_error: str | None = None  # cluster mode: the last listener the app could not get
    health: str | None = None  # "healthy" / "unhealthy" with a health check, else None
    # `corral update`: where each stream's line stood when the old daemon handed over
    # ({"out": {"partial": latin-1 text, "mid_line": bool}, "err": ...}); used once
    handover: dict[str, Any] | None = None
    # the instance's other processes while a reload replaces it ({"pid", "create_time"}):
    # the new worker until it takes over, then the old one until it has stopped; a daemon
    # that dies meanwhile leaves them to the next one, which stops them
    others: list[dict[str, Any]] = field(default_factory=list)

    def instance_values(self) -> dict[str, str]:
        """The variables that differ from one instance to the next and hold no secret:
        the instance index (instance_var) and the increment_var (its base value plus the
        index), shown per instance by jlist and describe even when env values are not."""
        spec = self.spec
        values = {spec.instance_var: str(self.instance_index)}
        if spec.increment_var:
            base = spec.env.get(spec.increment_var, "")
            if base.lstrip("-").isdigit():
                values[spec.increment_var] = str(int(base) + self.instance_index)
        return values

    def to_dict(self, spec_keys: tuple[str, ...] | None = None) -> dict[str, Any]:
        """spec_keys: only these settings of the spec (the CLI's table: `list` brief)."""
        data = dict(self.__dict__)
        data["spec"] = self.spec.to_dict() if spec_keys is None else {
            key: getattr(self.spec, key) for key in spec_keys}
        data["listening"] = list(self.listening)
        data["others"] = [dict(o) for o in self.others]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> InstanceRecord:
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        if "instance" in data and "instance_index" not in data:  # written by corral 0.1.0
            values["instance_index"] = data["instance"]
        values["spec"] = AppSpec.from_dict(data["spec"])
        return cls(**values)
