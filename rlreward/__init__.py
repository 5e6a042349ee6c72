"""rlreward: a multimodal value-head reward model (Skywork-VL-Reward) on Ray Serve, as a remote reward
for PPO/GRPO in TRL, OpenRLHF and verl.

``import rlreward`` is light (no torch, no ray): trainer nodes only need the client, the schema and
the adapters. The model side (:mod:`rlreward.engine.scorer`, :mod:`rlreward.serving`) needs the
``rlreward[serve]`` extra.
"""

from __future__ import annotations

from typing import Any

from .schema import ErrorCode, ErrorInfo, SampleError, ScoreResult

__version__ = "0.1.0"

__all__ = [
    "ErrorCode",
    "ErrorInfo",
    "SampleError",
    "ScoreResult",
    "RewardClient",
    "AsyncRewardClient",
    "__version__",
]


def __getattr__(name: str) -> Any:
    # The clients are imported on first use, so `import rlreward` costs only pydantic.
    if name in ("RewardClient", "AsyncRewardClient"):
        from . import client

        return getattr(client, name)
    raise AttributeError(f"module 'rlreward' has no attribute {name!r}")
