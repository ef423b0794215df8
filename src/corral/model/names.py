"""Names that several sides must spell the same way."""

from __future__ import annotations

# cluster scheduling policies (corral.cluster keeps its own tuple: it depends on nothing)
POLICIES = ("shared", "rr", "reuseport")
DEFAULT_POLICY = "shared"

# a log path that means "no file" (PM2 writes NULL or /dev/null)
NULL_LOG_PATHS = ("NULL", "/dev/null")
