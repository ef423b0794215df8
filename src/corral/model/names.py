"""Names that several sides must spell the same way."""

from __future__ import annotations

# cluster scheduling policies (corral.cluster keeps its own tuple: it depends on nothing)
POLICIES = ("shared", "rr", "reuseport")
DEFAULT_POLICY = "shared"  # Python apps: the best across servers (BENCHMARKS.md)
NODE_DEFAULT_POLICY = "rr"  # Node apps: Node's own default on Linux (SCHED_RR)


def default_policy(node: bool) -> str:
    return NODE_DEFAULT_POLICY if node else DEFAULT_POLICY

# a log path that means "no file" (PM2 writes NULL or /dev/null)
NULL_LOG_PATHS = ("NULL", "/dev/null")
