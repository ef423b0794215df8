"""Property: whatever a config file holds, the loader raises only its own error type."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from corral.config.ecosystem import load
from corral.config.schema import ALIASES, KEYS
from corral.model.errors import CorralError

scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12),
                    st.floats(allow_nan=True), st.text(max_size=12),
                    st.sampled_from(["max", "-1", "5s", "200M", "0", "true", "cluster",
                                     "fork_mode", "* * * * *", "~/x.log", "app.py", '"',
                                     "'a", "", "/", "\x00", "python3", "none", "1e400",
                                     float("inf"), -5, 70000]))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12)
keys = st.one_of(st.sampled_from(sorted(KEYS) + sorted(ALIASES) + ["env_production",
                                                                    "env_x", "intances"]),
                 st.text(max_size=10))
apps = st.dictionaries(keys, values, max_size=10)
tops = st.one_of(
    st.fixed_dictionaries({"apps": st.lists(apps, max_size=3)}),
    st.fixed_dictionaries({"apps": values}),
    st.lists(apps, max_size=3),
    values,
)

FOLDER = Path(tempfile.mkdtemp(prefix="corral-prop-"))
(FOLDER / "app.py").write_text("print('hi')\n")


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(top=tops, script=st.sampled_from(["app.py", "missing.py", None]),
       env_name=st.sampled_from([None, "production", "x"]),
       fmt=st.sampled_from(["json", "yaml"]))
def test_loader_raises_only_its_own_errors(top: object, script: str | None,
                                           env_name: str | None, fmt: str) -> None:
    if script and isinstance(top, dict) and isinstance(top.get("apps"), list):
        for app in top["apps"]:
            if isinstance(app, dict) and "script" not in app:
                app["script"] = script
    path = FOLDER / f"eco.{fmt}"
    try:
        text = json.dumps(top, allow_nan=True)
    except (TypeError, ValueError):
        return
    path.write_text(text)  # JSON is also YAML
    try:
        load(str(path), env_name=env_name, base_env={"PATH": "/usr/bin:/bin"})
    except CorralError:
        pass
