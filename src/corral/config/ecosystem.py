"""Ecosystem files: find them, read them in any of their formats, turn their apps into specs.

Formats: JSON as PM2 reads it (a JS object literal), YAML, TOML, Python
(`ecosystem.config.py` defining `apps`), `[tool.corral]` in pyproject.toml,
and `.config.js/.cjs/.mjs` evaluated by node. Every problem is an
EcosystemError that names the file and the line, or the app and the key.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from corral.config.order import check_dependencies
from corral.config.resolve import build_spec
from corral.config.schema import (
    BadValue,
    EcosystemError,
    app_label,
    file_env,
    merge_env,
    normalize_app,
    to_env,
)
from corral.model.apps import is_node_app
from corral.model.errors import CorralError
from corral.model.names import NULL_LOG_PATHS

if TYPE_CHECKING:
    from corral.model.spec import AppSpec

DEFAULT_FILES = (
    "ecosystem.config.py",
    "ecosystem.config.toml",
    "ecosystem.config.yaml",
    "ecosystem.config.yml",
    "ecosystem.config.json",
    "ecosystem.json",
    "ecosystem.toml",
    "ecosystem.yaml",
    "ecosystem.yml",
    "ecosystem.config.js",
    "ecosystem.config.cjs",
    "ecosystem.config.mjs",
    "pyproject.toml",
)

JS_SUFFIXES = (".js", ".cjs", ".mjs")
DATA_SUFFIXES = (".json", ".json5", ".yaml", ".yml", ".toml")

NODE_LOADER = r"""
const file = process.argv[1];
(async () => {
  let conf;
  try { conf = require(file); }
  catch (e) {
    if (e && (e.code === 'ERR_REQUIRE_ESM' || e.code === 'ERR_REQUIRE_ASYNC_MODULE'))
      conf = await import(require('url').pathToFileURL(file).href);
    else throw e;
  }
  if (conf && conf.default && !conf.apps) conf = conf.default;
  process.stdout.write(JSON.stringify(conf === undefined ? null : conf));
})().catch((e) => { process.stderr.write(String(e && e.stack || e)); process.exit(1); });
"""


def is_ecosystem_file(arg: str) -> bool:
    """Does a start argument name an ecosystem file rather than an app to run?"""
    base = os.path.basename(arg).lower()
    if base.endswith(DATA_SUFFIXES):
        return True
    if any(base.endswith(f".config{s}") for s in JS_SUFFIXES):
        return True
    return base.endswith(".py") and (base.startswith("ecosystem") or base.endswith(".config.py"))


def find_default(folder: str) -> str | None:
    for name in DEFAULT_FILES:
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            if name == "pyproject.toml" and "[tool.corral" not in _read_text(path):
                continue
            return path
    return None


def _read_text(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except UnicodeDecodeError as exc:
        raise EcosystemError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})"
                             ) from None
    except OSError as exc:
        raise EcosystemError(f"{path}: cannot read it: {exc.strerror}") from None


# ---- readers: file -> the top-level value ----------------------------------

def read(path: str) -> Any:
    base = os.path.basename(path).lower()
    if base.endswith(JS_SUFFIXES):
        return _read_js(path)
    if base.endswith(".py"):
        return _read_python(path)
    text = _read_text(path)
    if base.endswith((".yaml", ".yml")):
        return _read_yaml(path, text)
    if base.endswith(".toml"):
        return _read_toml(path, text, pyproject=base == "pyproject.toml")
    return _read_jsonish(path, text)


def _read_jsonish(path: str, text: str) -> Any:
    """PM2's JSON: a JS object literal. Relaxed JSON (comments, unquoted keys, trailing
    commas) is read here; anything else (`3000 + 1`, `process.env.X`, template strings)
    is evaluated by node when it is installed, as PM2 does. When neither reads it, the
    error is the line and column of the relaxed-JSON reader."""
    from corral.config.jsonish import JsonishError, loads

    try:
        return loads(text)
    except JsonishError as exc:
        error = EcosystemError(f"{path}:{exc.line}:{exc.column}: syntax error: {exc.reason}")
    value = _eval_js_literal(text)
    if value is _NOT_EVALUATED:
        raise error from None
    return value


_NOT_EVALUATED = object()

# Evaluates the text on stdin as one JavaScript expression, in a fresh context with
# `process` and `require` (what PM2's own evaluation can reach), prints it as JSON.
NODE_LITERAL = r"""
let text = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', (chunk) => { text += chunk; });
process.stdin.on('end', () => {
  try {
    const vm = require('vm');
    const value = vm.runInNewContext('(' + text + '\n)', { process, require },
                                     { filename: 'ecosystem' });
    process.stdout.write(JSON.stringify(value === undefined ? null : value));
  } catch (e) { process.stderr.write(String(e && e.message || e)); process.exit(1); }
});
"""


def _eval_js_literal(text: str) -> Any:
    node = shutil.which("node")
    if node is None:
        return _NOT_EVALUATED
    try:
        proc = subprocess.run([node, "-e", NODE_LITERAL], input=text, capture_output=True,
                              text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return _NOT_EVALUATED
    if proc.returncode != 0:
        return _NOT_EVALUATED
    import json

    try:
        return json.loads(proc.stdout or "null")
    except ValueError:
        return _NOT_EVALUATED


def _read_yaml(path: str, text: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else path
        problem = getattr(exc, "problem", None) or str(exc)
        raise EcosystemError(f"{where}: YAML syntax error: {problem}") from None


def _read_toml(path: str, text: str, pyproject: bool) -> Any:
    try:
        import tomllib  # type: ignore[import-not-found,unused-ignore]
    except ImportError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef,import-not-found,unused-ignore]
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise EcosystemError(f"{path}: TOML syntax error: {exc}") from None
    if pyproject:
        tool = data.get("tool", {}).get("corral")
        if tool is None:
            raise EcosystemError(f"{path}: no [tool.corral] table; add [[tool.corral.apps]] "
                                 "tables, one per app")
        return tool
    return data


def _read_python(path: str) -> Any:
    import runpy
    import traceback

    try:
        namespace = runpy.run_path(path, run_name="__corral_config__")
    except SyntaxError as exc:
        raise EcosystemError(f"{path}:{exc.lineno}: Python syntax error: {exc.msg}") from None
    except SystemExit:
        raise EcosystemError(f"{path}: the file called exit() while it was read") from None
    except Exception as exc:  # noqa: BLE001 - the user's code may raise anything
        frames = [f for f in traceback.extract_tb(exc.__traceback__)
                  if os.path.abspath(f.filename) == os.path.abspath(path)]
        line = f":{frames[-1].lineno}" if frames else ""
        raise EcosystemError(f"{path}{line}: {type(exc).__name__}: {exc}") from None
    for name in ("apps", "APPS", "config", "CONFIG"):
        if name in namespace:
            value = namespace[name]
            return {"apps": value} if name.lower() == "apps" else value
    raise EcosystemError(f"{path}: defines no `apps`; write `apps = [{{\"name\": ..., "
                         "\"script\": ...}]` at the top level")


def _read_js(path: str) -> Any:
    node = shutil.which("node")
    if node is None:
        raise EcosystemError(
            f"{path}: .js ecosystem files are evaluated by node, which is not installed; "
            "install node, or write the file as ecosystem.config.py / .toml / .yaml / .json "
            "(`corral init` writes one)")
    proc = subprocess.run([node, "-e", NODE_LOADER, os.path.abspath(path)],
                          capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        detail = proc.stderr.strip().splitlines()
        first = next((ln for ln in detail if "Error" in ln), detail[0] if detail else "")
        where = next((ln.strip() for ln in detail if os.path.abspath(path) in ln), "")
        raise EcosystemError(f"{path}: node could not evaluate it: {first}"
                             + (f" ({where})" if where else ""))
    import json

    return json.loads(proc.stdout or "null")


def apps_of(path: str, top: Any) -> list[Any]:
    """The app list of a file: {apps: [...]}, PM2's {pm2: [...]}, a bare list or one app."""
    if isinstance(top, dict):
        if "apps" in top or "pm2" in top:
            apps = top.get("apps", top.get("pm2"))
            if isinstance(apps, dict):
                apps = [apps]
            if not isinstance(apps, list):
                raise EcosystemError(f"{path}: `apps` must be a list of apps, not "
                                     f"{type(apps).__name__}")
        elif "script" in top or "exec" in top or "cmd" in top:
            apps = [top]
        else:
            raise EcosystemError(f"{path}: no `apps` list found; the file needs "
                                 "apps: [{name: ..., script: ...}]")
    elif isinstance(top, list):
        apps = top
    elif top is None:
        raise EcosystemError(f"{path}: the file is empty; it needs apps: [{{name, script}}]")
    else:
        raise EcosystemError(f"{path}: expected an object with `apps`, found "
                             f"{type(top).__name__}")
    if not apps:
        raise EcosystemError(f"{path}: `apps` is empty; add at least one app with a script")
    return apps


# ---- apps -> specs ------------------------------------------------------------

@dataclass
class Loaded:
    path: str
    specs: list[AppSpec] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    # registered name -> the app's `name` in the file ("" when it has none): what --only takes
    file_names: dict[str, str] = field(default_factory=dict)


STDIN = "<stdin>"


def load(path: str, env_name: str | None = None, only: list[str] | None = None,
         base_env: dict[str, str] | None = None, text: str | None = None) -> Loaded:
    """Read a file and build one AppSpec per app, with PM2's env precedence applied.
    With text (`corral start -`): the JSON given on standard input, path being only its
    label; relative paths in it are taken from the current folder."""
    if text is not None:
        top = _read_jsonish(path, text)
        folder = os.getcwd()
    else:
        path = os.path.abspath(path)
        if not os.path.isfile(path):
            raise EcosystemError(f"{path}: no such ecosystem file")
        top = read(path)
        folder = os.path.dirname(path)
    apps = apps_of(path, top)
    deploy_env = _deploy_env(path, top, env_name)
    loaded = Loaded(path)
    normalized = []
    seen: dict[str, int] = {}
    for index, app in enumerate(apps):
        result = normalize_app(app, index, path, env_name)
        loaded.warnings.extend(result.warnings)
        name = result.options.get("name")
        if name is None:
            name = os.path.splitext(os.path.basename(str(result.options["script"])))[0]
        if name in seen:
            raise EcosystemError(f"{path}: apps #{seen[name] + 1} and #{index + 1} are both "
                                 f"named {name!r}; names must be unique")
        seen[name] = index
        normalized.append((index, app, result.options))
    if env_name is not None:
        defined = {k for _, _, o in normalized for k in o["_envs"]}
        if env_name not in defined and not deploy_env:
            # PM2 starts the apps with their `env` alone; say so, it may be a typo
            listed = ", ".join(f"env_{k}" for k in sorted(defined)) or "no env_<name> block"
            loaded.warnings.append(f"{path}: --env {env_name}: no app defines "
                                   f"env_{env_name} (the file has {listed}); the apps get "
                                   "their `env` only")
        for _, _, options in normalized:
            options["_deploy_env"] = deploy_env
    if only:
        names = {str(o.get("name") or "") for _, _, o in normalized}
        missing = [n for n in only if n not in names]
        if missing:
            raise EcosystemError(f"{path}: --only {', '.join(missing)}: no such app in the file "
                                 f"(it has {', '.join(sorted(names))})")
    final = {str(o.get("name") or ""): _final_name(o, env_name) for _, _, o in normalized}
    check_dependencies(path, [(app_label(a, i), o) for i, a, o in normalized], final)
    base = dict(os.environ if base_env is None else base_env)
    notes: list[str] = []
    for index, app, options in normalized:
        if only and options.get("name") not in only:
            continue
        spec = _build(path, folder, index, app, options, env_name, base, notes)
        spec.depends_on = [final[d] for d in options.get("depends_on", [])]
        loaded.specs.append(spec)
        loaded.file_names[spec.name] = str(options.get("name") or "")
    loaded.warnings.extend(f"{path}: {note}" for note in notes)
    return loaded


def _deploy_env(path: str, top: Any, env_name: str | None) -> dict[str, str]:
    """deploy.<env_name>.env of the file: with --env, PM2 gives it to every app (under
    the app's own env and env_<name>)."""
    if env_name is None or not isinstance(top, dict) or not isinstance(top.get("deploy"), dict):
        return {}
    target = top["deploy"].get(env_name)
    if not isinstance(target, dict) or target.get("env") is None:
        return {}
    try:
        return to_env(target["env"])
    except BadValue as exc:
        raise EcosystemError(f"{path}: deploy.{env_name}.env: {exc}") from None


def _final_name(options: dict[str, Any], env_name: str | None) -> str:
    """An app's registered name: its name with name_prefix / append_env_to_name applied
    (as _build does)."""
    name = str(options.get("name") or "")
    if name and options.get("name_prefix"):
        name = f"{options['name_prefix']}:{name}"
    if name and options.get("append_env_to_name") and env_name:
        name = f"{name}-{env_name}"
    return name


def _build(path: str, folder: str, index: int, app: dict[str, Any], options: dict[str, Any],
           env_name: str | None, base: dict[str, str], notes: list[str]) -> AppSpec:
    label = app_label(app, index)
    options = dict(options)
    overrides_in = file_env(options, env_name)
    env = merge_env(base, options, env_name)
    script = options.pop("script")
    cwd = options.pop("cwd", None)
    cwd = os.path.join(folder, os.path.expanduser(cwd)) if cwd else folder
    prefix = options.pop("name_prefix", None)
    append = options.pop("append_env_to_name", False)
    if options.get("name") and prefix:
        options["name"] = f"{prefix}:{options['name']}"
    if append and env_name and options.get("name"):
        options["name"] = f"{options['name']}-{env_name}"
    for key in ("out_file", "error_file"):
        target = options.get(key)
        if target and target not in NULL_LOG_PATHS:
            full = os.path.join(cwd, os.path.expanduser(target))
            _check_log_folder(path, label, key, full)
    log_file = options.get("log_file")
    if log_file is True:
        options["log_file"] = "true"  # the default combined file
    elif log_file is False:
        options.pop("log_file")
    node_args = options.pop("_node_args", None)
    try:
        spec = build_spec(script, notes=notes, cwd=cwd, env=env, **options)
    except CorralError as exc:
        raise EcosystemError(f"{path}: {label}: {exc.message}") from None
    except TypeError as exc:  # an option build_spec does not take: a schema bug, said plainly
        raise EcosystemError(f"{path}: {label}: {exc}") from None
    if node_args:  # as --node-args: node's flags would stop python or bash
        if is_node_app(spec):
            spec.interpreter_args = [*spec.interpreter_args, *node_args]
        else:
            notes.append(f"{label}: node_args {' '.join(node_args)!r} ignored: node "
                         "does not run this app (interpreter_args passes arguments to any "
                         "interpreter)")
    spec.env_overrides = overrides_in
    spec.env_name = env_name
    return spec


def _check_log_folder(path: str, label: str, key: str, log_path: str) -> None:
    """Create a log file's folder now, or fail now with the folder and the reason."""
    folder = os.path.dirname(log_path)
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as exc:
        raise EcosystemError(f"{path}: {label}: {key} {log_path}: cannot create the folder "
                             f"{folder}: {exc.strerror}") from None
    if not os.access(folder, os.W_OK):
        raise EcosystemError(f"{path}: {label}: {key} {log_path}: the folder {folder} is not "
                             "writable; fix its permissions or choose another path")
