"""`corral export`: an ecosystem file's apps for the engines that run them beyond one
machine (docs/deploy.md).

- kubernetes(): one Deployment per app (its pods run `corral-runtime start FILE --only
  APP`), a Service where the app's port is known, a Secret for the variables asked for.
- systemd(): one unit per app, a template `name@.service` for several instances, with
  systemd applying the restart policy, the memory limit and the stop signal itself.

Pure functions from AppSpecs to text: the CLI loads the file (config.ecosystem.load, with
the environment the file sets and nothing of the shell's) and writes what they return.
unit_word() is the one quoting of a systemd unit's values (`corral startup` uses it too).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from corral.model.errors import CorralError
from corral.model.health import HealthCheck
from corral.model.names import NULL_LOG_PATHS

if TYPE_CHECKING:
    from corral.model.spec import AppSpec

RUNTIME_MEMORY = 64 * 1024 * 1024  # what corral-runtime itself needs beside the apps
STOP_MARGIN_S = 5  # beyond kill_timeout: cluster quiet, SIGKILL, the runtime's own exit
EXP_BACKOFF_MAX = "15s"  # corral's cap of exp_backoff_restart_delay (model.spec)


@dataclass
class Export:
    """What an export produced: files (relative path -> text; one "" entry for a single
    stream) and notes for the user (what the target cannot express)."""

    files: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


@dataclass
class Source:
    """Where the apps come from: the file, the --env given, each app's name in the file
    (for --only) and whether the file names one app only."""

    path: str
    env_name: str | None
    file_names: dict[str, str]
    single: bool


def runtime_args(spec: AppSpec, source: Source, file_arg: str) -> list[str]:
    """`start FILE --only NAME --env ENV`: what corral-runtime runs for one app."""
    args = ["start", file_arg]
    name = source.file_names.get(spec.name, "")
    if name:
        args += ["--only", name]
    elif not source.single:
        raise CorralError(f"{source.path}: the app {spec.name!r} has no `name` in the file, so "
                          "corral-runtime cannot pick it with --only among the file's apps; "
                          "give it a name")
    if source.env_name:
        args += ["--env", source.env_name]
    return args


# ---- Kubernetes ----------------------------------------------------------------

SECRET_WORDS = frozenset({"PASSWORD", "PASSWD", "PASS", "SECRET", "SECRETS", "TOKEN", "KEY",
                          "APIKEY", "PRIVATE", "CREDENTIAL", "CREDENTIALS", "DSN", "AUTH",
                          "SALT", "CERT", "CERTIFICATE"})


def is_secret(name: str, value: str) -> bool:
    """A variable whose name says it holds a secret (DB_PASSWORD, API_TOKEN, SECRET_KEY,
    ...), or a URL that carries a password (postgres://user:pw@host/db)."""
    words = set(re.split(r"[^A-Z0-9]+", name.upper()))
    if words & SECRET_WORDS:
        return True
    try:
        return bool(urlsplit(value).password)
    except ValueError:
        return False


def k8s_name(name: str, limit: int = 63) -> str:
    """An RFC 1123 label: lowercase letters, digits and '-', at most `limit` characters."""
    text = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")
    return text[:limit].rstrip("-") or "app"


def memory_quantity(size: int) -> str:
    for unit, factor in (("Gi", 1024 ** 3), ("Mi", 1024 ** 2), ("Ki", 1024)):
        if size % factor == 0:
            return f"{size // factor}{unit}"
    return str(size)


def known_ports(spec: AppSpec) -> list[int]:
    """The ports an app serves, as far as the file says: PORT (the `port` key or env) and
    the port of an http / tcp health check."""
    ports: list[int] = []
    text = spec.env.get("PORT", "")
    if text.isdigit() and 0 < int(text) < 65536:
        ports.append(int(text))
    if spec.health_check and spec.health_check.get("kind") in ("http", "tcp"):
        port = _health_port(HealthCheck.from_dict(spec.health_check))
        if port not in ports:
            ports.append(port)
    return ports


def _health_port(check: HealthCheck) -> int:
    if check.kind == "http":
        url = urlsplit(check.target)
        return url.port or 80
    return int(check.target.rsplit(":", 1)[1])


def _probe(check: HealthCheck, liveness: bool) -> dict[str, Any]:
    if check.kind == "http":
        url = urlsplit(check.target)
        path = (url.path or "/") + (f"?{url.query}" if url.query else "")
        probe: dict[str, Any] = {"httpGet": {"path": path, "port": _health_port(check)}}
    elif check.kind == "tcp":
        probe = {"tcpSocket": {"port": _health_port(check)}}
    else:
        probe = {"exec": {"command": ["/bin/sh", "-c", check.target]}}
    probe.update({
        "initialDelaySeconds": math.ceil(check.start_period_ms / 1000),
        "periodSeconds": max(1, round(check.interval_ms / 1000)),
        "timeoutSeconds": max(1, math.ceil(check.timeout_ms / 1000)),
        # corral-runtime restarts the app in place after `retries` failures; the liveness
        # probe gives it that chance before Kubernetes restarts the whole container
        "failureThreshold": check.retries * (2 if liveness else 1),
    })
    return probe


@dataclass
class KubeOptions:
    image: str
    namespace: str | None = None
    secrets: str | None = None  # None: inline; "auto": by name; "all"; or "A,B"
    file_in_image: str = ""  # the file's path in the image (default: its name)


def _secret_names(spec: AppSpec, secrets: str | None) -> set[str]:
    if not secrets:
        return set()
    if secrets == "all":
        return set(spec.env)
    if secrets == "auto":
        return {k for k, v in spec.env.items() if is_secret(k, v)}
    return {n.strip() for n in secrets.split(",") if n.strip()} & set(spec.env)


def kubernetes(specs: Sequence[AppSpec], source: Source, options: KubeOptions) -> Export:
    """One YAML stream: per app a Deployment, a Service when its port is known, a Secret
    when some of its variables go to one."""
    import yaml

    result = Export()
    project = k8s_name(os.path.basename(os.path.dirname(source.path)) or "corral")
    file_arg = options.file_in_image or os.path.basename(source.path)
    taken: set[str] = set()
    documents: list[str] = []
    asked = ({n.strip() for n in options.secrets.split(",")}
             if options.secrets not in (None, "auto", "all") else set())
    for spec in specs:
        name = k8s_name(spec.name)
        while name in taken:
            name = k8s_name(f"{name[:58]}-{len(taken) + 1}")
        taken.add(name)
        labels = {"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": project,
                  "app.kubernetes.io/managed-by": "corral"}
        selector = {k: labels[k] for k in ("app.kubernetes.io/name", "app.kubernetes.io/part-of")}

        def meta(object_name: str, labels: dict[str, str] = labels) -> dict[str, Any]:
            data: dict[str, Any] = {"name": object_name}
            if options.namespace:
                data["namespace"] = options.namespace
            data["labels"] = dict(labels)
            return data

        comments = [f"{spec.name}: {_what(spec)}"]
        secret_keys = _secret_names(spec, options.secrets)
        secret_name = f"{name}-env"
        env: list[dict[str, Any]] = []
        for key, value in spec.env.items():
            if key in secret_keys:
                env.append({"name": key, "valueFrom": {"secretKeyRef": {
                    "name": secret_name, "key": key}}})
            else:
                env.append({"name": key, "value": str(value)})
        command = ["corral-runtime", *runtime_args(spec, source, file_arg), "--raw"]
        if spec.instances > 1:
            command += ["-i", "1"]
        container: dict[str, Any] = {"name": name, "image": options.image, "command": command}
        if env:
            container["env"] = env
        ports = known_ports(spec)
        if ports:
            container["ports"] = [{"containerPort": p, "protocol": "TCP"} for p in ports]
        if spec.max_memory_restart_bytes:
            limit = spec.max_memory_restart_bytes + RUNTIME_MEMORY
            container["resources"] = {"limits": {"memory": memory_quantity(limit)}}
        if spec.health_check:
            check = HealthCheck.from_dict(spec.health_check)
            container["readinessProbe"] = _probe(check, liveness=False)
            container["livenessProbe"] = _probe(check, liveness=True)
        pod_spec: dict[str, Any] = {
            "terminationGracePeriodSeconds": math.ceil(spec.kill_timeout_ms / 1000)
            + STOP_MARGIN_S,
            "containers": [container],
        }
        deployment = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": meta(name),
            "spec": {
                "replicas": spec.instances if spec.autostart else 0,
                "selector": {"matchLabels": selector},
                # as `corral reload`: a new pod is up before an old one goes
                "strategy": {"type": "RollingUpdate",
                             "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
                "template": {"metadata": {"labels": dict(labels)}, "spec": pod_spec},
            },
        }
        for note in _kube_notes(spec):
            comments.append(note)
            result.notes.append(f"{spec.name}: {note}")
        objects: list[dict[str, Any]] = []
        if secret_keys:
            objects.append({"apiVersion": "v1", "kind": "Secret", "metadata": meta(secret_name),
                            "type": "Opaque",
                            "stringData": {k: str(spec.env[k]) for k in spec.env
                                           if k in secret_keys}})
        objects.append(deployment)
        if ports:
            objects.append({"apiVersion": "v1", "kind": "Service", "metadata": meta(name),
                            "spec": {"selector": selector, "ports": [
                                {"name": f"port-{p}", "port": p, "targetPort": p,
                                 "protocol": "TCP"} for p in ports]}})
        head = "".join(f"# {line}\n" for line in comments)
        for number, obj in enumerate(objects):
            documents.append((head if number == 0 else "")
                             + yaml.safe_dump(obj, sort_keys=False, default_flow_style=False))
    missing = asked - {k for s in specs for k in s.env}
    if missing:
        result.notes.append(f"--secrets: no app sets {', '.join(sorted(missing))}")
    result.files[""] = "---\n".join(documents)
    return result


def _what(spec: AppSpec) -> str:
    if spec.exec_mode == "cluster" and spec.instances > 1:
        return (f"cluster mode, {spec.instances} workers: {spec.instances} pods of one worker "
                "each, behind the Service")
    if spec.instances > 1:
        return f"{spec.instances} instances: {spec.instances} pods of one instance each"
    return f"{spec.exec_mode} mode"


def _kube_notes(spec: AppSpec) -> list[str]:
    notes = []
    if spec.depends_on:
        notes.append(f"depends_on {', '.join(spec.depends_on)}: Kubernetes starts pods in no "
                     "order; the app must wait for (retry) its dependencies itself")
    if not spec.autorestart:
        notes.append("autorestart is off, but a Deployment always restarts its container; "
                     "run a one-shot app as a Job instead")
    if not spec.autostart:
        notes.append("autostart is off: replicas 0 (kubectl scale to start it)")
    if spec.increment_var and spec.instances > 1:
        notes.append(f"increment_var {spec.increment_var}: every pod runs instance 0, so "
                     "each gets the base value")
    return notes


# ---- systemd --------------------------------------------------------------------

def unit_word(value: str, command: bool = False) -> str:
    """One word of a unit file: `%` starts a specifier (so %%), `$` a variable in a
    command line (so $$), and a word with other characters is double-quoted (with C
    escapes for a quote, a backslash and control characters)."""
    value = value.replace("%", "%%")
    if command:
        value = value.replace("$", "$$")
    if value and all(c.isalnum() or c in "/._-+:,=@%$" for c in value):
        return value
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    escaped = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in escaped)
    return f'"{escaped}"'


def _path(value: str) -> str:
    """A path setting (WorkingDirectory=, append:): specifiers escaped, never quoted."""
    if "\n" in value:
        raise CorralError(f"{value!r}: a path with a newline cannot go in a systemd unit")
    return value.replace("%", "%%")


def unit_name(name: str) -> str:
    """An app name as a unit name (letters, digits, ':', '_', '.', '-')."""
    return re.sub(r"[^A-Za-z0-9:_.-]", "-", name) or "app"


def _duration_ms(ms: int) -> str:
    return f"{ms}ms" if ms % 1000 else f"{ms // 1000}s"


@dataclass
class SystemdOptions:
    user: str | None = None
    python: str = ""  # the Python that runs corral-runtime for cluster-mode apps


def systemd(specs: Sequence[AppSpec], source: Source, options: SystemdOptions) -> Export:
    """One unit per app: `name.service`, or the template `name@.service` (instance %i)
    for several fork instances; a cluster-mode app's unit runs corral-runtime, which
    holds the port for its workers. increment_var values go in per-instance drop-ins."""
    result = Export()
    templates = {s.name: s.exec_mode != "cluster" and s.instances > 1 for s in specs}
    by_name = {s.name: s for s in specs}

    def units_of(name: str) -> list[str]:
        base = unit_name(name)
        spec = by_name.get(name)
        if spec is not None and templates[name]:
            return [f"{base}@{i}.service" for i in range(spec.instances)]
        return [f"{base}.service"]

    for spec in specs:
        base = unit_name(spec.name)
        template = templates[spec.name]
        file_name = f"{base}@.service" if template else f"{base}.service"
        header = [f"# written by `corral export systemd` from {source.path}"
                  + (f" --env {source.env_name}" if source.env_name else ""),
                  f"# app {spec.name}: {_systemd_what(spec, base)}"]
        unit = [f"Description=corral app {spec.name}"
                + (" (instance %i)" if template else ""),
                "After=network.target"]
        deps = [u for d in spec.depends_on for u in units_of(d)]
        if deps:
            unit += [f"Requires={' '.join(deps)}", f"After={' '.join(deps)}"]
        service = ["Type=simple"]
        if options.user:
            service.append(f"User={unit_word(options.user)}")
        service.append(f"WorkingDirectory={_path(spec.cwd or os.path.dirname(source.path))}")
        notes: list[str] = []
        if spec.exec_mode == "cluster":
            service += _runtime_service(spec, source, options, base)
        else:
            unit += _start_limit(spec)
            service += _app_service(spec, template, notes)
        body = "\n".join([*header, "[Unit]", *unit, "", "[Service]", *service, "",
                          "[Install]", "WantedBy=multi-user.target", ""])
        result.files[file_name] = body
        if template and spec.increment_var:
            start = spec.env.get(spec.increment_var, "")
            if start.lstrip("-").isdigit():
                for index in range(spec.instances):
                    value = unit_word(f"{spec.increment_var}={int(start) + index}")
                    result.files[f"{base}@{index}.service.d/increment.conf"] = (
                        f"# {spec.increment_var} of instance {index} (increment_var)\n"
                        f"[Service]\nEnvironment={value}\n")
        result.notes += [f"{spec.name}: {n}" for n in notes]
    return result


def _systemd_what(spec: AppSpec, base: str) -> str:
    if spec.exec_mode == "cluster":
        return (f"cluster mode, {spec.instances} worker(s) behind one port: corral-runtime runs "
                "them and holds the port")
    if spec.instances > 1:
        last = spec.instances - 1
        return (f"{spec.instances} instances; systemctl enable --now "
                f"'{base}@{{0..{last}}}.service'")
    return "fork mode"


def _start_limit(spec: AppSpec) -> list[str]:
    """PM2's max_restarts runs shorter than min_uptime, as systemd's start limit: that
    many starts within as many (min_uptime + restart delay) periods."""
    if not spec.autorestart:
        return []
    period = spec.min_uptime_ms + max(spec.restart_delay_ms, spec.exp_backoff_restart_delay_ms)
    interval = max(1, math.ceil(spec.max_restarts * period / 1000))
    return [f"StartLimitIntervalSec={interval}s", f"StartLimitBurst={spec.max_restarts}"]


def _app_service(spec: AppSpec, template: bool, notes: list[str]) -> list[str]:
    lines = []
    env = dict(spec.env)  # increment_var: instance 0 has the base value; drop-ins the others
    env.setdefault("PYTHONUNBUFFERED", "1")
    for key, value in env.items():
        lines.append(f"Environment={unit_word(f'{key}={value}')}")
    lines.append(f"Environment={unit_word(spec.instance_var + '=')}"
                 + ("%i" if template else "0"))
    lines.append("ExecStart=" + " ".join(unit_word(w, command=True) for w in spec.argv()))
    if spec.autorestart:
        lines.append("Restart=always")
        if spec.stop_exit_codes:
            lines.append("RestartPreventExitStatus="
                         + " ".join(str(c) for c in spec.stop_exit_codes))
        if spec.exp_backoff_restart_delay_ms:
            first = spec.exp_backoff_restart_delay_ms
            steps = max(1, math.ceil(math.log(max(15000 / first, 1.5)) / math.log(1.5)))
            lines += [f"RestartSec={_duration_ms(first)}",
                      "# exponential backoff (systemd 254 and later; older ones ignore these)",
                      f"RestartSteps={steps}", f"RestartMaxDelaySec={EXP_BACKOFF_MAX}"]
        else:
            lines.append(f"RestartSec={_duration_ms(spec.restart_delay_ms)}")
    else:
        lines.append("Restart=no")
    lines += [f"KillSignal={spec.kill_signal}",
              f"TimeoutStopSec={_duration_ms(spec.kill_timeout_ms)}"]
    if spec.max_memory_restart_bytes:
        lines.append(f"MemoryMax={spec.max_memory_restart_bytes}")
    lines += _outputs(spec, template)
    lines.append(f"SyslogIdentifier={unit_word(spec.name)}")
    if spec.health_check:
        notes.append("health_check: systemd has none; the unit restarts the app only when it "
                     "exits (run it with corral, or corral-runtime, to keep the check)")
    if spec.cron_restart:
        notes.append("cron_restart: not translated (a systemd timer running "
                     "`systemctl restart` does it)")
    if spec.watch:
        notes.append("watch: not translated; systemd does not restart on file changes")
    if spec.log_date_format or spec.log_max_size_bytes or spec.log_rotate_daily:
        notes.append("log_date_format and log rotation: the journal stamps lines itself; "
                     "rotate appended files with logrotate")
    return lines


def _outputs(spec: AppSpec, template: bool) -> list[str]:
    """Where stdout and stderr go: the configured files (appended; one per instance unless
    merge_logs), /dev/null, or the journal."""
    if spec.disable_logs:
        return ["StandardOutput=null", "StandardError=null"]
    several = template and not spec.merge_logs

    def target(path: str | None) -> str | None:
        if not path or path == "true":
            return None
        if path in NULL_LOG_PATHS:
            return "null"
        if several:
            stem, ext = os.path.splitext(path)
            return f"append:{_path(stem)}-%i{_path(ext)}"
        return f"append:{_path(path)}"

    out = target(spec.out_file)
    err = target(spec.error_file)
    combined = target(spec.log_file)
    if out is None and err is None and combined is not None:
        out = err = combined
    return [f"StandardOutput={out or 'journal'}", f"StandardError={err or 'journal'}"]


def _runtime_service(spec: AppSpec, source: Source, options: SystemdOptions,
                     base: str) -> list[str]:
    """A cluster-mode app: corral-runtime (the primary, which owns the port) and its
    workers, in a CORRAL_HOME of its own; corral applies the restart policy."""
    python = options.python
    argv = [python, "-m", "corral.daemon.runtime",
            *runtime_args(spec, source, source.path), "--raw"]
    workers = spec.instances
    lines = [f"Environment=CORRAL_HOME=%S/corral/{base}", f"StateDirectory=corral/{base}",
             "ExecStart=" + " ".join(unit_word(w, command=True) for w in argv),
             # the runtime exits 0 once stopped; 1 when an app ended errored
             "Restart=on-failure", "RestartSec=1s",
             "KillSignal=SIGTERM",
             f"TimeoutStopSec={math.ceil(spec.kill_timeout_ms / 1000) + STOP_MARGIN_S}s"]
    if spec.max_memory_restart_bytes:
        lines.append(f"MemoryMax={workers * spec.max_memory_restart_bytes + RUNTIME_MEMORY}")
    lines.append(f"SyslogIdentifier={unit_word(spec.name)}")
    return lines
