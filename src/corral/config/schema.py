"""PM2's ecosystem keys: aliases, units, types, and what each becomes in an AppSpec.

normalize_app() turns one app object of an ecosystem file into the keyword
arguments of API.spec(), with warnings for keys it does not know (naming the
closest known one) and for known traps; a value of the wrong type or unit is
an EcosystemError naming the file, the app and the key.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import math
import re
import shlex
import socket
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from corral.model.cron import next_cron_time
from corral.model.errors import CorralError
from corral.model.health import DEFAULTS as HEALTH_DEFAULTS
from corral.model.names import POLICIES
from corral.model.validate import BadValue, check_env, check_name, check_signal


class EcosystemError(CorralError):
    """A problem in an ecosystem file; the message names the file and the app and key or line."""


@dataclass
class Normalized:
    options: dict[str, Any]
    warnings: list[str] = field(default_factory=list)


# BadValue and the rules both sides apply (names, environments, signals, instances) are
# model.validate's: the daemon checks every request with them too

# ---- converters: raise BadValue with what was expected ---------------------

def to_str(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise BadValue("expected a string")
    return str(value)


def to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise BadValue("expected true or false")


def to_int(value: Any) -> int:
    if isinstance(value, bool):
        raise BadValue("expected a whole number")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
        return int(value)
    raise BadValue("expected a whole number")


def to_count(value: Any) -> int:
    number = to_int(value)
    if number < 0:
        raise BadValue("expected a number ≥ 0")
    return number


_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*", re.I)
_DURATION_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000}


def to_ms(value: Any) -> int:
    """A duration: a number of milliseconds, or a string like '500ms', '5s', '2m', '1h'."""
    if isinstance(value, bool):
        raise BadValue("expected milliseconds or a duration like '5s'")
    if isinstance(value, (int, float)):
        if not math.isfinite(value) or value < 0:
            raise BadValue("expected a duration ≥ 0")
        return int(value)
    if isinstance(value, str):
        match = _DURATION.fullmatch(value)
        if match:
            return int(float(match.group(1)) * _DURATION_MS[(match.group(2) or "ms").lower()])
    raise BadValue("expected milliseconds or a duration like '500ms', '5s', '2m', '1h'")


def to_min_uptime(value: Any) -> int:
    # PM2: a bare number is milliseconds, with 100 ms as the floor
    return max(to_ms(value), 100)


_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([KMG])?B?\s*", re.I)
_SIZE_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}


def to_bytes(value: Any) -> int:
    if isinstance(value, bool):
        raise BadValue("expected a size like '200M'")
    if isinstance(value, int) and value >= 0:
        return value
    if isinstance(value, str):
        match = _SIZE.fullmatch(value)
        if match:
            return int(float(match.group(1)) * _SIZE_UNITS[(match.group(2) or "").upper()])
    raise BadValue("expected a size in bytes or like '512K', '200M', '1G'")


def to_args(value: Any) -> list[str]:
    if isinstance(value, str):
        try:
            return shlex.split(value)
        except ValueError as exc:
            raise BadValue(f"cannot split into arguments: {exc}") from None
    if isinstance(value, (list, tuple)):
        return [to_str(v) for v in value]
    raise BadValue("expected a list of strings or one string")


def to_str_list(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, tuple)):
        return [to_str(v) for v in value]
    raise BadValue("expected a string or a list of strings")


def to_int_list(value: Any) -> list[int]:
    if isinstance(value, (list, tuple)):
        return [to_int(v) for v in value]
    return [to_int(value)]


def to_env(value: Any) -> dict[str, str]:
    """PM2: values become strings; objects and lists are JSON-encoded, compact, as
    JSON.stringify writes them ({"a":true})."""
    if not isinstance(value, dict):
        raise BadValue("expected a mapping of variable names to values")
    env = {}
    for key, item in value.items():
        check_env({str(key): item if isinstance(item, str) else ""})
        if isinstance(item, bool):
            env[str(key)] = "true" if item else "false"
        elif item is None:
            env[str(key)] = ""
        elif isinstance(item, (dict, list)):
            env[str(key)] = json.dumps(item, separators=(",", ":"), ensure_ascii=False)
        else:
            env[str(key)] = str(item)
    return env


def to_instances(value: Any) -> str | int:
    if isinstance(value, str) and value.strip().lower() == "max":
        return "max"
    try:
        return to_int(value)
    except BadValue:
        raise BadValue("expected a number, \"max\" (one per CPU) or a negative number "
                       "(CPUs minus that)") from None


def to_exec_mode(value: Any) -> str:
    text = to_str(value).lower()
    if text in ("fork", "fork_mode"):
        return "fork"
    if text in ("cluster", "cluster_mode"):
        return "cluster"
    raise BadValue("expected fork or cluster (or PM2's fork_mode / cluster_mode)")


def to_health(value: Any) -> dict[str, Any]:
    try:
        return validate_health(value)
    except ValueError as exc:
        raise BadValue(str(exc)) from None


def to_policy(value: Any) -> str:
    text = to_str(value).lower()
    if text not in POLICIES:
        raise BadValue(f"expected {', '.join(POLICIES[:-1])} or {POLICIES[-1]}")
    return text


def to_watch(value: Any) -> bool | list[str]:
    if isinstance(value, bool):
        return value
    return to_str_list(value)


def to_signal(value: Any) -> str:
    text = to_str(value).upper()
    return check_signal(text if text.startswith("SIG") else f"SIG{text}")


def to_name(value: Any) -> str:
    return check_name(to_str(value))


def to_namespace(value: Any) -> str:
    return check_name(to_str(value), "namespace")


def to_log_type(value: Any) -> str:
    text = to_str(value).lower()
    if text not in ("json", "raw"):
        raise BadValue("expected json or raw")
    return text


def to_cron(value: Any) -> str | None:
    """5 fields, or 6 with seconds first (PM2's croner); 0 removes it."""
    if value in (0, "0", False, None):
        return None
    text = to_str(value)
    fields = text.split()
    if len(fields) not in (5, 6):
        raise BadValue("expected a cron expression of 5 or 6 fields (seconds first), or 0 "
                       "to remove it")
    try:
        next_cron_time(text, time.time())
    except (ValueError, KeyError) as exc:
        raise BadValue(f"not a valid cron expression ({exc})") from None
    return text


def to_port(value: Any) -> int:
    port = to_int(value)
    if not 0 <= port <= 65535:
        raise BadValue("expected a port number from 0 to 65535")
    return port


# ---- the schema ------------------------------------------------------------

@dataclass(frozen=True)
class Key:
    option: str  # keyword of API.spec (an AppSpec field, or cwd/module/interpreter/...)
    convert: Callable[[Any], Any]
    aliases: tuple[str, ...] = ()


KEYS: dict[str, Key] = {
    "script": Key("script", to_str, ("exec", "cmd", "command")),
    "name": Key("name", to_name),
    "name_prefix": Key("name_prefix", to_str),
    "namespace": Key("namespace", to_namespace),
    "cwd": Key("cwd", to_str),
    "args": Key("args", to_args),
    "interpreter": Key("interpreter", to_str, ("exec_interpreter",)),
    "interpreter_args": Key("interpreter_args", to_args, ("node_args", "interpreterArgs")),
    "module": Key("module", to_bool),
    "instances": Key("instances", to_instances),
    "exec_mode": Key("exec_mode", to_exec_mode),
    "instance_var": Key("instance_var", to_str),
    "increment_var": Key("increment_var", to_str),
    "port": Key("port", to_port),
    "env": Key("env", to_env),
    "filter_env": Key("filter_env", lambda v: v if isinstance(v, bool) else to_str_list(v)),
    "append_env_to_name": Key("append_env_to_name", to_bool),
    "autorestart": Key("autorestart", to_bool),
    "autostart": Key("autostart", to_bool),
    "max_restarts": Key("max_restarts", to_count),
    "min_uptime": Key("min_uptime_ms", to_min_uptime),
    "restart_delay": Key("restart_delay_ms", to_ms),
    "exp_backoff_restart_delay": Key("exp_backoff_restart_delay_ms", to_ms),
    "stop_exit_codes": Key("stop_exit_codes", to_int_list),
    "kill_timeout": Key("kill_timeout_ms", to_ms),
    "kill_signal": Key("kill_signal", to_signal),
    "force": Key("force", to_bool),
    "out_file": Key("out_file", to_str, ("out", "output", "out_log")),
    "error_file": Key("error_file", to_str, ("error", "err", "err_file", "err_log")),
    "log_file": Key("log_file", lambda v: v if isinstance(v, bool) else to_str(v), ("log",)),
    "pid_file": Key("pid_file", to_str, ("pid",)),
    "merge_logs": Key("merge_logs", to_bool, ("combine_logs",)),
    "log_date_format": Key("log_date_format", to_str),
    "time": Key("time", to_bool),
    "log_type": Key("log_type", to_log_type),
    "disable_logs": Key("disable_logs", to_bool),
    "log_max_size": Key("log_max_size_bytes", to_bytes, ("max_log_size",)),
    "log_retain": Key("log_retain", to_count, ("retain",)),
    "log_compress": Key("log_compress", to_bool),
    "log_rotate_daily": Key("log_rotate_daily", to_bool),
    "watch": Key("watch", to_watch),
    "ignore_watch": Key("ignore_watch", to_str_list),
    "watch_delay": Key("watch_delay_ms", to_ms),
    "max_memory_restart": Key("max_memory_restart_bytes", to_bytes),
    "cron_restart": Key("cron_restart", to_cron, ("cron",)),
    "listen_timeout": Key("listen_timeout_ms", to_ms),
    "wait_ready": Key("wait_ready", to_bool),
    "shutdown_with_message": Key("shutdown_with_message", to_bool),
    "cluster_policy": Key("cluster_policy", to_policy, ("instance_policy",)),
    "health_check": Key("health_check", to_health),
    "depends_on": Key("depends_on", to_str_list),
}

ALIASES = {alias: key for key, spec in KEYS.items() for alias in spec.aliases}

# PM2 keys that mean nothing for corral (Node, PM2 Plus, deploy): accepted, noted, dropped
IGNORED = {
    "vizion", "pmx", "automation", "source_map_support", "disable_source_map_support",
    "windowsHide", "trace", "disable_trace", "v8", "event_loop_inspector", "deep_monitoring",
    "io", "km_link", "post_update", "install_url", "write", "execute_command", "treekill",
    "kill_retry_time", "watch_options", "node_version", "uid", "gid",
    "user", "username", "versioning", "version",
}
IGNORED_WHY = {
    "treekill": "corral always stops the whole process tree",
    "uid": "running apps as another user is not supported yet",
    "gid": "running apps as another user is not supported yet",
    "user": "running apps as another user is not supported yet",
}


def _camel_to_snake(key: str) -> str:
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", key).lower()


def canonical(key: str) -> str | None:
    """The schema key a written key stands for (aliases and camelCase included)."""
    if key in KEYS:
        return key
    if key in ALIASES:
        return ALIASES[key]
    snake = _camel_to_snake(key)
    if snake in KEYS:
        return snake
    if snake in ALIASES:
        return ALIASES[snake]
    return None


def closest(key: str) -> str | None:
    known = list(KEYS) + list(ALIASES) + ["env_<name>"]
    found = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    return found[0] if found else None


def app_label(app: dict[str, Any], index: int) -> str:
    name = app.get("name")
    return f"app {name!r}" if isinstance(name, str) and name else f"app #{index + 1}"


def normalize_app(app: Any, index: int, source: str, env_name: str | None) -> Normalized:
    """One app object of a file -> API.spec() keyword arguments (+ warnings)."""
    if not isinstance(app, dict):
        raise EcosystemError(f"{source}: app #{index + 1} must be an object of keys, "
                             f"not {type(app).__name__}")
    label = app_label(app, index)
    options: dict[str, Any] = {}
    envs: dict[str, dict[str, str]] = {}
    warnings: list[str] = []
    for raw_key, value in app.items():
        key = str(raw_key)
        if key.startswith("env_"):
            try:
                envs[key[4:]] = to_env(value)
            except BadValue as exc:
                raise EcosystemError(f"{source}: {label}: key {key!r}: {exc}") from None
            if isinstance(value, dict):
                for trap in ("watch", "ignore_watch", "instances", "exec_mode", "max_memory_restart"):
                    if trap in value:
                        warnings.append(
                            f"{source}: {label}: {key} sets an environment variable named "
                            f"{trap!r}, not the {trap} option; put `{trap}` at the app's top "
                            f"level (next to `script`) to set the option"
                        )
            continue
        name = canonical(key)
        if key in ("node_args", "nodeArgs"):  # node's flags: for an app node runs (_build)
            try:
                options["_node_args"] = to_args(value)
            except BadValue as exc:
                raise EcosystemError(
                    f"{source}: {label}: key {key!r}: {exc} (got {value!r})") from None
            continue
        if name is None:
            if key in IGNORED:
                why = IGNORED_WHY.get(key, "it is specific to Node or PM2 Plus")
                warnings.append(f"{source}: {label}: key {key!r} is ignored: {why}")
                continue
            guess = closest(key)
            hint = f"; did you mean {guess!r}?" if guess else ""
            warnings.append(f"{source}: {label}: unknown key {key!r} is ignored{hint}")
            continue
        spec = KEYS[name]
        if name in options and key != name:
            warnings.append(f"{source}: {label}: {key!r} and {name!r} both given; {key!r} wins")
        try:
            options[spec.option] = spec.convert(value)
        except BadValue as exc:
            raise EcosystemError(
                f"{source}: {label}: key {key!r}: {exc} (got {value!r})") from None
    if "script" not in options:
        raise EcosystemError(f"{source}: {label}: missing key 'script' (the file or command "
                             "to run)")
    if options.get("time"):
        options.setdefault("log_date_format", "YYYY-MM-DDTHH:mm:ss")
    options.pop("time", None)
    options["_envs"] = envs
    return Normalized(options, warnings)


def file_env(options: dict[str, Any], env_name: str | None) -> dict[str, str]:
    """What a file sets, in PM2's precedence: deploy.<name>.env (with --env) <- env <-
    env_<name> <- port (as PORT)."""
    env = dict(options.get("_deploy_env", {}))
    env.update(options.get("env", {}))
    envs = options.get("_envs", {})
    if env_name is not None and env_name in envs:
        env.update(envs[env_name])
    if options.get("port") is not None:
        env["PORT"] = str(options["port"])
    return env


def merge_env(base: dict[str, str], options: dict[str, Any], env_name: str | None
              ) -> dict[str, str]:
    """The environment an app gets: the CLI's (filtered by filter_env) <- file_env().
    Takes filter_env, env, _envs and port out of options."""
    filter_env = options.pop("filter_env", False)
    if filter_env is True:
        env: dict[str, str] = {}
    elif filter_env:
        env = {k: v for k, v in base.items() if not any(f in k for f in filter_env)}
    else:
        env = dict(base)
    env.update(file_env(options, env_name))
    for key in ("env", "_envs", "port", "_deploy_env"):
        options.pop(key, None)
    return env


def validate_health(data: Any) -> dict[str, Any]:
    """An ecosystem health_check value -> HealthCheck fields; ValueError says what is wrong."""
    if not isinstance(data, dict):
        raise ValueError("expected {http: URL | tcp: PORT | cmd: COMMAND, interval, timeout, "
                         "retries, start_period}")
    kinds = [k for k in ("http", "tcp", "cmd") if k in data]
    if len(kinds) != 1:
        raise ValueError("give exactly one of http, tcp or cmd")
    unknown = set(data) - {"http", "tcp", "cmd", *HEALTH_DEFAULTS}
    if unknown:
        raise ValueError(f"unknown health_check keys: {', '.join(sorted(unknown))}")
    kind = kinds[0]
    target = data[kind]
    if kind == "http":
        url = urllib.parse.urlsplit(str(target))
        if url.scheme != "http" or not url.hostname:
            raise ValueError(f"http: {target!r} is not an http:// URL")
        _require_loopback(url.hostname)
        target = str(target)
    elif kind == "tcp":
        text = str(target)
        host, _, port = text.rpartition(":") if ":" in text else ("127.0.0.1", "", text)
        if not port.isdigit():
            raise ValueError(f"tcp: {target!r}: expected a port or HOST:PORT")
        _require_loopback(host.strip("[]") or "127.0.0.1")
        target = f"{host or '127.0.0.1'}:{port}"
    else:
        target = str(target)
    fields: dict[str, Any] = {"kind": kind, "target": target}
    try:
        fields["interval_ms"] = to_ms(data.get("interval", HEALTH_DEFAULTS["interval"]))
        fields["timeout_ms"] = to_ms(data.get("timeout", HEALTH_DEFAULTS["timeout"]))
        fields["retries"] = max(to_count(data.get("retries", HEALTH_DEFAULTS["retries"])), 1)
        fields["start_period_ms"] = to_ms(data.get("start_period",
                                                   HEALTH_DEFAULTS["start_period"]))
    except BadValue as exc:
        raise ValueError(str(exc)) from None
    return fields


def _require_loopback(host: str) -> None:
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except socket.gaierror:
        raise ValueError(f"{host!r} does not resolve") from None
    if not addresses or not all(ipaddress.ip_address(str(a).split("%")[0]).is_loopback
                                for a in addresses):
        raise ValueError(f"{host!r} is not a loopback address; health checks probe the app "
                         "on this machine (127.0.0.1, ::1, localhost)")
