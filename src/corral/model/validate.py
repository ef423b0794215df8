"""What a valid app spec and a valid request are: the rules both sides apply.

The ecosystem schema (config/schema.py) converts what a user wrote and calls these
rules for the values they share (names, environments, signals); the daemon checks
every request that reaches its socket with them (check_params, spec_from_wire),
and every entry of state.json before it restores it. A broken value is a
CorralError that names the app, the key and what was expected, never a
traceback; the value itself is quoted only up to QUOTE_CHARS (docs/daemon.md,
"Limits").
"""

from __future__ import annotations

import dataclasses
import math
import signal
import types
import typing
from typing import Any, Union

from corral.model import states
from corral.model.errors import CorralError
from corral.model.names import POLICIES
from corral.model.spec import AppSpec, InstanceRecord

MAX_INSTANCES = 1024  # per app (docs/lifecycle.md, "Limits")
MAX_NAME_CHARS = 128  # app names and namespaces; they become file names
MAX_TEXT_CHARS = 65536  # a script, a shell command, a path, one argument or variable
MAX_DEPTH = 32  # nesting of a request's JSON
QUOTE_CHARS = 60  # of a bad value, quoted back in an error
RESERVED_NAMES = ("all",)  # a target word with its own meaning (model/targets.py)
KINDS = ("script", "binary", "shell", "module")
EXEC_MODES = ("fork", "cluster")
LOG_TYPES = ("json", "raw")
HEALTH_KINDS = ("http", "tcp", "cmd")

# AppSpec fields that are counts or durations: never negative
NOT_NEGATIVE = frozenset({
    "max_restarts", "min_uptime_ms", "restart_delay_ms", "exp_backoff_restart_delay_ms",
    "kill_timeout_ms", "watch_delay_ms", "max_memory_restart_bytes", "log_max_size_bytes",
    "log_retain", "listen_timeout_ms",
})


class BadValue(ValueError):
    """A value that breaks a rule; the message says what was expected."""


def quote(value: Any) -> str:
    """repr(value), cut to QUOTE_CHARS: an error never echoes a huge input back."""
    text = repr(value) if not isinstance(value, (dict, list)) else \
        f"{type(value).__name__} of {len(value)}"
    if len(text) > QUOTE_CHARS:
        text = f"{text[:QUOTE_CHARS]}... ({len(text)} characters)"
    return text


# ---- rules shared with the ecosystem schema ----------------------------------

def check_name(text: str, what: str = "name") -> str:
    """An app name or a namespace: 1 to MAX_NAME_CHARS printable characters, not a word
    a target reads otherwise (`all`, a number that is an id, a /regex/)."""
    if not text.strip():
        raise BadValue(f"the {what} is empty")
    if len(text) > MAX_NAME_CHARS:
        raise BadValue(f"the {what} has {len(text)} characters; at most {MAX_NAME_CHARS}")
    if not text.isprintable():
        raise BadValue(f"the {what} holds a newline or another control character")
    if text in RESERVED_NAMES:
        raise BadValue(f"{text!r} is a reserved word (it targets every app); choose another "
                       f"{what}")
    if text.isdigit():
        raise BadValue(f"{text!r} is a number, which targets an id; choose a {what} with a "
                       "letter in it")
    if len(text) > 2 and text.startswith("/") and text.endswith("/"):
        raise BadValue(f"{text!r} reads as a /regex/ target; choose another {what}")
    return text


def check_env(env: dict[str, str], what: str = "environment") -> dict[str, str]:
    """Variable names: not empty, no `=`, no NUL; values: no NUL (execve refuses them)."""
    for key, value in env.items():
        if not key or "=" in key or "\0" in key:
            raise BadValue(f"{quote(key)} is not a valid variable name")
        if "\0" in value:
            raise BadValue(f"the value of {quote(key)} holds a NUL character")
    return env


def check_signal(name: str) -> str:
    """A signal name as the kill_signal (SIGINT, SIGTERM, ...)."""
    if name not in signal.Signals.__members__:
        raise BadValue(f"{quote(name)} is not a signal (SIGINT, SIGTERM, SIGQUIT, ...)")
    return name


def check_instances(number: int) -> int:
    if not 1 <= number <= MAX_INSTANCES:
        raise BadValue(f"{number} instances: give 1 to {MAX_INSTANCES} (the limit per app)")
    return number


# ---- types from annotations ------------------------------------------------

def _describe(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(h) for h in typing.get_args(hint))
    if origin is list:
        return f"a list of {_describe(typing.get_args(hint)[0]).split(' ', 1)[-1]}s"
    if origin is dict:
        return "an object"
    return {bool: "true or false", int: "a whole number", float: "a number",
            str: "a string", type(None): "null"}.get(hint, getattr(hint, "__name__", "?"))


def type_problem(value: Any, hint: Any) -> str | None:
    """None when value (decoded JSON) has the annotated type, else what was expected."""
    if hint is Any or hint is object:
        return None
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        if any(type_problem(value, h) is None for h in typing.get_args(hint)):
            return None
        return f"expected {_describe(hint)}"
    if origin is list:
        (item,) = typing.get_args(hint) or (Any,)
        if not isinstance(value, list):
            return f"expected {_describe(hint)}"
        for element in value:
            if type_problem(element, item) is not None:
                return f"expected {_describe(hint)}"
        return None
    if origin is dict:
        key_hint, value_hint = typing.get_args(hint) or (Any, Any)
        if not isinstance(value, dict):
            return f"expected {_describe(hint)}"
        for key, element in value.items():
            if type_problem(key, key_hint) is not None \
                    or type_problem(element, value_hint) is not None:
                what = _describe(value_hint)
                return f"expected an object of {what.split(' ', 1)[-1]}s"
        return None
    if hint is bool:
        ok = isinstance(value, bool)
    elif hint is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif hint is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) \
            and math.isfinite(value)
    elif hint is type(None):
        ok = value is None
    elif isinstance(hint, type):
        ok = isinstance(value, hint)
    else:
        ok = True  # an annotation this checker does not know: not checked
    return None if ok else f"expected {_describe(hint)}"


def depth_problem(value: Any, limit: int = MAX_DEPTH) -> str | None:
    """JSON nested deeper than limit (the daemon's own recursions must stay bounded)."""
    stack = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, (list, dict)):
            if level > limit:
                return f"nested more than {limit} levels deep"
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, level + 1) for child in children)
    return None


def check_params(method: str, hints: dict[str, Any], params: dict[str, Any]) -> None:
    """The parameters of a request, against the annotations of its handler."""
    for key, value in params.items():
        hint = hints.get(key, Any)
        problem = type_problem(value, hint)
        if problem is not None:
            raise CorralError(f"bad request: {method}: parameter {key!r}: {problem} "
                              f"(got {quote(value)})")


# ---- app specs -----------------------------------------------------------------

_SPEC_HINTS: dict[str, Any] = {}


def spec_hints() -> dict[str, Any]:
    if not _SPEC_HINTS:
        _SPEC_HINTS.update(typing.get_type_hints(AppSpec))
    return _SPEC_HINTS


def _text_problem(value: Any) -> str | None:
    texts = [value] if isinstance(value, str) else (
        [*value, *value.values()] if isinstance(value, dict) else
        value if isinstance(value, list) else [])
    for text in texts:
        if not isinstance(text, str):
            continue
        if "\0" in text:
            return "holds a NUL character"
        if len(text) > MAX_TEXT_CHARS:
            return f"is {len(text)} characters long; at most {MAX_TEXT_CHARS}"
        try:
            text.encode()
        except UnicodeEncodeError:  # a lone surrogate (\ud800): no reply could carry it
            return "is not valid UTF-8 text"
    return None


def field_problem(key: str, value: Any) -> str | None:
    """What is wrong with one AppSpec field's value (its type, then its rules), or None."""
    hint = spec_hints().get(key)
    if hint is None:
        return None  # not a field: from_dict drops it
    problem = type_problem(value, hint) or _text_problem(value)
    if problem is not None:
        return problem
    try:
        _check_field(key, value)
    except BadValue as exc:
        return str(exc)
    return None


def _check_field(key: str, value: Any) -> None:
    if key in NOT_NEGATIVE and value < 0:
        raise BadValue("expected a number ≥ 0")
    if key == "name":
        check_name(value)
    elif key == "namespace":
        check_name(value, "namespace")
    elif key == "script" and not value.strip():
        raise BadValue("the script is empty")
    elif key == "kind" and value not in KINDS:
        raise BadValue(f"expected one of {', '.join(KINDS)}")
    elif key == "exec_mode" and value not in EXEC_MODES:
        raise BadValue("expected fork or cluster")
    elif key == "instances":
        check_instances(value)
    elif key in ("env", "env_overrides"):
        check_env(value)
    elif key in ("instance_var", "increment_var") and value is not None:
        check_env({value: ""})
    elif key == "kill_signal":
        check_signal(value)
    elif key == "log_type" and value is not None and value not in LOG_TYPES:
        raise BadValue("expected json or raw")
    elif key == "cluster_policy" and value is not None and value not in POLICIES:
        raise BadValue(f"expected one of {', '.join(POLICIES)}")
    elif key == "interpreter" and value is not None and not value.strip():
        raise BadValue("the interpreter is empty")
    elif key == "log_date_format" and value is not None:
        from corral.model.logformat import compile_date_format

        try:
            compile_date_format(value)(0.0)
        except Exception as exc:  # noqa: BLE001 - any failure of a format is the user's
            raise BadValue(f"not a date format ({exc})") from None
    elif key == "cron_restart" and value is not None:
        from corral.model.cron import next_cron_time

        if len(value.split()) not in (5, 6):
            raise BadValue("expected a cron expression of 5 or 6 fields")
        try:
            next_cron_time(value, 0.0)
        except Exception as exc:  # noqa: BLE001 - croniter's errors are many
            raise BadValue(f"not a valid cron expression ({exc})") from None
    elif key == "health_check" and value is not None:
        check_health(value)


def check_health(data: dict[str, Any]) -> None:
    """HealthCheck fields (model/health.py), as config.schema.validate_health makes them."""
    known = {f.name: f for f in dataclasses.fields(_health())}
    unknown = set(data) - set(known)
    if unknown:
        raise BadValue(f"unknown health_check fields: {quote(sorted(unknown))}")
    if data.get("kind") not in HEALTH_KINDS or not isinstance(data.get("target"), str):
        raise BadValue("expected kind (http, tcp or cmd) and target")
    for key in ("interval_ms", "timeout_ms", "retries", "start_period_ms"):
        value = data.get(key, 0)
        if type_problem(value, int) is not None or value < 0:
            raise BadValue(f"{key}: expected a whole number ≥ 0")


def _health() -> type:
    from corral.model.health import HealthCheck

    return HealthCheck


def spec_from_wire(data: Any, where: str = "") -> AppSpec:
    """An AppSpec from a request (or state.json), every field checked; CorralError names
    the app and the key."""
    if not isinstance(data, dict):
        raise CorralError(f"bad request: {where}an app must be an object, not "
                          f"{type(data).__name__}")
    name = data.get("name")
    label = f"app {quote(name)}" if isinstance(name, str) else "an app"
    for key in ("name", "script"):
        if key not in data:
            raise CorralError(f"{where}{label}: missing {key!r}")
    for key, value in data.items():
        problem = field_problem(key, value)
        if problem is not None:
            raise CorralError(f"{where}{label}: {key}: {problem} (got {quote(value)})")
    return AppSpec.from_dict(data)


def update_problem(update: dict[str, Any]) -> str | None:
    """The values of a restart's attribute update (AppSpec fields, and node_args)."""
    for key, value in update.items():
        problem = (type_problem(value, list[str]) if key == "node_args"
                   else field_problem(key, value))
        if problem is not None:
            return f"{key}: {problem} (got {quote(value)})"
    return None


_RECORD_HINTS: dict[str, Any] = {}


def record_from_dict(data: Any) -> InstanceRecord:
    """An InstanceRecord of state.json, checked as a request is (ValueError says why)."""
    if not isinstance(data, dict):
        raise ValueError(f"an entry must be an object, not {type(data).__name__}")
    if not _RECORD_HINTS:
        _RECORD_HINTS.update(typing.get_type_hints(InstanceRecord))
    for key, value in data.items():
        if key == "spec" or key not in _RECORD_HINTS:
            continue
        problem = type_problem(value, _RECORD_HINTS[key])
        if problem is not None:
            raise ValueError(f"{key}: {problem} (got {quote(value)})")
    if not isinstance(data.get("pm_id"), int) or data["pm_id"] < 0:
        raise ValueError("pm_id: expected a whole number ≥ 0")
    if data.get("status", states.STOPPED) not in states.LEGAL:
        raise ValueError(f"status: not a status (got {quote(data.get('status'))})")
    try:
        spec = spec_from_wire(data.get("spec"))
        return InstanceRecord.from_dict({**data, "spec": spec.to_dict()})
    except CorralError as exc:
        raise ValueError(exc.message) from None
    except (TypeError, KeyError) as exc:
        raise ValueError(str(exc)) from None
