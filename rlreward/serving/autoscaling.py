"""Serve autoscaling policies for the reward replicas (run on the Serve controller).

Serve cloudpickles a policy's module by value to the controller, so this module imports nothing
heavier than the standard library.
"""

from __future__ import annotations

import math
from typing import Any


class SampleBacklogPolicy:
    """Autoscaling policy on samples, not requests: desired replicas =
    ceil((backlog samples reported by replicas + requests queued at callers) / target_backlog_samples).

    Use with ``autoscaling.target_backlog_samples`` (:class:`rlreward.serving.config.AutoscalingOptions`);
    Serve still applies min/max, the up/down delays and the scaling factors around it.
    """

    def __init__(self, target_backlog_samples: int = 64) -> None:
        if target_backlog_samples <= 0:
            raise ValueError("target_backlog_samples must be positive")
        self.target = target_backlog_samples

    def __call__(self, ctx: Any) -> tuple[int, dict[str, Any]]:
        per_replica = (ctx.aggregated_metrics or {}).get("backlog_samples", {})
        backlog = sum(per_replica.values()) + (ctx.total_queued_requests or 0)
        if not per_replica:  # no report yet: fall back to the request count
            backlog = ctx.total_num_requests
        desired = math.ceil(backlog / self.target) if backlog > 0 else 0
        return max(desired, 0), {}
