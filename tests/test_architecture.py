"""The layout by side (docs/architecture.md): which package may import which, no cycles.

The checker parses every module of src/corral with `ast` and reads every import,
at module level and inside functions alike (an import moved into a function to
dodge a cycle is still a cycle). Allowed directions:

    client -> config, model, store      daemon -> model, store, cluster
    config -> model                     store  -> model
    model  -> (nothing)                 cluster -> (nothing else of corral)

Imports under `if TYPE_CHECKING:` never run: they must still go in an allowed
direction, but they do not make a cycle. `corral` itself (the version, the lazy
`corral.API`) may be imported by every side but cluster.

test_checker_finds_a_forbidden_import and test_checker_finds_a_cycle show the
checker failing on a tree that breaks each rule.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

from conftest import ROOT, Corral

SRC = ROOT / "src"
ALLOWED = {
    "model": {"model"},
    "store": {"store", "model"},
    "config": {"config", "model"},
    "client": {"client", "config", "model", "store"},
    "daemon": {"daemon", "model", "store", "cluster"},
    "cluster": {"cluster"},
}


def module_name(path: Path, src: Path) -> str:
    parts = list(path.relative_to(src).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def side(module: str) -> str | None:
    """'corral.daemon.server' -> 'daemon'; the root package and its __main__ have none."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in ALLOWED else None


def _type_checking_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for inner in node.body:
                for sub in ast.walk(inner):
                    if hasattr(sub, "lineno"):
                        lines.add(sub.lineno)
    return lines


def imports_of(path: Path, module: str, known: set[str]) -> list[tuple[str, int, bool]]:
    """(imported corral module, line, runs at run time) for every import in the file."""
    tree = ast.parse(path.read_text(), str(path))
    typing_only = _type_checking_lines(tree)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1]
                                + ([base] if base else []))
            # `from corral.client import render` imports the module corral.client.render
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base
                       for a in node.names]
        for target in targets:
            if target == "corral" or target.startswith("corral."):
                found.append((target, node.lineno, node.lineno not in typing_only))
    return found


def check(src: Path) -> list[str]:
    """Every broken rule in the package tree under src, as readable lines."""
    files = {module_name(p, src): p for p in sorted((src / "corral").rglob("*.py"))}
    known = set(files)
    problems = []
    graph: dict[str, set[str]] = {m: set() for m in files}
    for module, path in files.items():
        mine = side(module)
        for target, line, runtime in imports_of(path, module, known):
            theirs = side(target)
            where = f"{path.relative_to(src)}:{line}"
            if target == "corral":
                if mine == "cluster":
                    problems.append(f"{where}: cluster imports corral (it depends on nothing "
                                    "else of corral)")
            elif mine is not None and theirs is not None and theirs not in ALLOWED[mine]:
                problems.append(f"{where}: {mine} must not import {theirs} ({target})")
            if runtime and target in graph and target != module:
                graph[module].add(target)
    problems += [f"import cycle: {' -> '.join(c)}" for c in cycles(graph)]
    return problems


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (as a path back to its start) per strongly connected group (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(_path_in(graph, set(group), node))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _path_in(graph: dict[str, set[str]], group: set[str], start: str) -> list[str]:
    """A cycle through start inside a strongly connected group (breadth first)."""
    paths = [[start]]
    while paths:
        path = paths.pop(0)
        for nxt in sorted(graph[path[-1]] & group):
            if nxt == start:
                return path + [start]
            if nxt not in path:
                paths.append(path + [nxt])
    return [start]


def test_the_source_follows_the_directions_and_has_no_cycle() -> None:
    assert check(SRC) == []


def _tree(tmp: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = tmp / "src" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp / "src"


def test_checker_finds_a_forbidden_import(tmp_path: Path) -> None:
    src = _tree(tmp_path, {
        "corral/__init__.py": "",
        "corral/client/__init__.py": "",
        "corral/client/cli.py": "def f():\n    from corral.daemon import server\n",
        "corral/daemon/__init__.py": "",
        "corral/daemon/server.py": "from corral.model import spec\n",
        "corral/model/__init__.py": "",
        "corral/model/spec.py": "",
        "corral/cluster/__init__.py": "",
        "corral/cluster/child.py": "import corral.model.spec\n",
    })
    problems = check(src)
    assert any("client/cli.py:2: client must not import daemon" in p for p in problems), problems
    assert any("cluster/child.py:1: cluster must not import model" in p for p in problems)
    assert len(problems) == 2, problems


def test_checker_finds_a_cycle(tmp_path: Path) -> None:
    src = _tree(tmp_path, {
        "corral/__init__.py": "",
        "corral/daemon/__init__.py": "",
        "corral/daemon/a.py": "from corral.daemon import b\n",
        "corral/daemon/b.py": "def f():\n    from corral.daemon.a import x\n",
        "corral/daemon/c.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                              "    from corral.daemon.a import x\n",
    })
    assert check(src) == ["import cycle: corral.daemon.a -> corral.daemon.b -> corral.daemon.a"]


def _loaded_modules(corral: Corral, *args: str) -> set[str]:
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "corral", *args],
                          env=corral.env, cwd=corral.tmp, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return set(re.findall(r"\|\s+(corral[\w.]*)\s*$", proc.stderr, re.M))


def test_client_commands_load_no_daemon_module(corral: Corral) -> None:
    app = corral.script("app.py", "import time\nwhile True:\n    time.sleep(1)\n")
    loaded = {
        "start": _loaded_modules(corral, "start", str(app), "--name", "a"),
        "list": _loaded_modules(corral, "list"),
        "describe": _loaded_modules(corral, "describe", "a"),
        "stop": _loaded_modules(corral, "stop", "a"),
    }
    for command, modules in loaded.items():
        assert "corral.client.cli" in modules, (command, sorted(modules))
        daemon_side = sorted(m for m in modules
                             if m.startswith(("corral.daemon", "corral.cluster")))
        assert daemon_side == [], f"corral {command} loaded {daemon_side}"


def test_importing_corral_cluster_opens_no_fd_and_takes_any_environment() -> None:
    code = (
        "import os\n"
        "before = sorted(os.listdir('/proc/self/fd'))\n"
        "import corral.cluster, corral.cluster.child, corral.cluster.primary\n"
        "import corral.cluster.bootstrap, corral.cluster.handles\n"
        "from corral import cluster\n"
        "assert cluster.is_worker and not cluster.is_primary\n"
        "after = sorted(os.listdir('/proc/self/fd'))\n"
        "assert before == after, (before, after)\n"
        "print('ok')\n"
    )
    env = dict(os.environ, CORRAL_CLUSTER_SCHED_POLICY="bogus",
               CORRAL_CLUSTER_WORKER_ID="not-a-number")
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=30)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr
