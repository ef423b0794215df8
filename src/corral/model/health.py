"""A health check's parameters (beyond PM2): an HTTP GET, a TCP connect or a command."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

DEFAULTS = {"interval": 10_000, "timeout": 5_000, "retries": 3, "start_period": 0}


@dataclass
class HealthCheck:
    kind: str  # http | tcp | cmd
    target: str  # the URL, "host:port" or the command
    interval_ms: int = 10_000
    timeout_ms: int = 5_000
    retries: int = 3
    start_period_ms: int = 0

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HealthCheck:
        return cls(**data)

    def give_up_after_s(self) -> float:
        """How long a first verdict can take: the start period, then every retry timing out."""
        return (self.start_period_ms + self.interval_ms * (self.retries + 1)
                + self.timeout_ms * self.retries) / 1000
