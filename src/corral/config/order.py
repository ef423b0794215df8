"""Start order (depends_on, beyond PM2): which apps wait for which, checked and in waves."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from corral.config.schema import EcosystemError

if TYPE_CHECKING:
    from corral.model.spec import AppSpec


def check_dependencies(path: str, apps: list[tuple[str, dict[str, Any]]],
                        final: dict[str, str]) -> None:
    """depends_on names apps of the same file, and the dependencies have no cycle."""
    import difflib

    graph: dict[str, list[str]] = {}
    for label, options in apps:
        name = str(options.get("name") or "")
        for dep in options.get("depends_on", []):
            if dep not in final or not dep:
                close = difflib.get_close_matches(dep, [n for n in final if n], 1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                named = ", ".join(sorted(n for n in final if n)) or "no named app"
                raise EcosystemError(f"{path}: {label}: depends_on {dep!r}: no app of that name "
                                     f"in this file (it has {named}){hint}")
            if dep == name:
                raise EcosystemError(f"{path}: {label}: depends_on names the app itself")
        graph[name] = list(options.get("depends_on", []))
    state: dict[str, int] = {}  # 1: being visited, 2: done

    def visit(node: str, trail: list[str]) -> None:
        if state.get(node) == 2:
            return
        if state.get(node) == 1:
            cycle = trail[trail.index(node):] + [node]
            raise EcosystemError(f"{path}: depends_on makes a cycle: {' -> '.join(cycle)}; "
                                 "an app cannot wait for itself")
        state[node] = 1
        for dep in graph.get(node, []):
            visit(dep, trail + [node])
        state[node] = 2

    for node in graph:
        visit(node, [])


def waves(specs: list[AppSpec]) -> list[list[AppSpec]]:
    """The apps in start order: each wave depends only on earlier waves (or on apps not in
    `specs`, which this command does not start). One wave when nothing depends on anything."""
    left = {s.name: s for s in specs}
    order = []
    while left:
        # a dependency no longer in `left` was placed in an earlier wave, or is not started
        ready = [s for s in left.values() if not any(d in left for d in s.depends_on)]
        if not ready:  # a cycle (checked at load; a guard for specs built by hand)
            ready = list(left.values())
        order.append(ready)
        for s in ready:
            del left[s.name]
    return order
