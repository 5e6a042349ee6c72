"""OpenRLHF 0.11.x adapter: remote reward for (vision-)language PPO/GRPO, three ways in.

OpenRLHF's wire format (``{"query", "prompts", "labels"}`` in, numeric ``{"rewards", "scores",
"extra_logs"}`` out, the text rebuilt from ``query``, the label schema, the fallback reward) lives in
:mod:`rlreward.protocols.openrlhf`. The three forms:

1. **HTTP** (``--reward.remote_url http://rm:8000/get_reward``): the app's ``POST /get_reward``
   (:func:`rlreward.protocols.openrlhf.get_reward_endpoint`); images come from the label.
2. **Python file** (``--reward.remote_url examples/openrlhf/reward_func.py``): :func:`reward_func`,
   scoring through :class:`rlreward.client.RewardClient`; images come from the label.
3. **Agent executor** (``--train.agent_func_path examples/openrlhf/agent_func.py``):
   ``RewardAgentExecutor`` generates as OpenRLHF's ``SingleTurnAgentExecutor`` does and scores the
   response with the rollout's own images.

A sample that cannot be scored gets ``fallback_reward`` and ``extra_logs["rm_error"] = 1.0``; the call
never fails on a per-sample problem. Options: :class:`OpenRLHFOptions` (the wire format's plus the
connection), JSON in ``$RLREWARD_OPENRLHF``. No phase hints are sent from here (no step boundary is
visible to a reward function). The manual (label schema, options): docs/trainers.md.
"""

from __future__ import annotations

import logging
import os
from functools import lru_cache
from typing import Any

from pydantic import Field

from rlreward.adapters._common import (
    ClientHolder,
    ClientSpec,
    score_async,
    score_sync,
    shared_holder,
    wire_image,
)
from rlreward.protocols.openrlhf import (
    ENV_OPTIONS,
    GetRewardOptions,
    columns,
    merge_results,
    options_from_json,
    prepare_query,
    rewards_body,
)
from rlreward.schema import failed_all

__all__ = [
    "OpenRLHFOptions",
    "RewardAgentExecutor",  # noqa: F822 (built on first access: it subclasses openrlhf's executor)
    "reward_func",
]

log = logging.getLogger("rlreward.adapters.openrlhf")


class OpenRLHFOptions(ClientSpec, GetRewardOptions):
    """The wire format's options (:class:`rlreward.protocols.openrlhf.GetRewardOptions`) plus
    :class:`ClientSpec`'s connection fields: ``url`` / ``app_name``, ``api_key``, ``timeout_s``,
    ``client_options``."""

    timeout_s: float = Field(
        default=170.0, gt=0, description="Client timeout; OpenRLHF gives up after 180 s."
    )

    @classmethod
    def from_env(cls) -> OpenRLHFOptions:
        """Options from ``$RLREWARD_OPENRLHF`` (JSON; defaults when unset)."""
        return options_from_json(cls, os.environ.get(ENV_OPTIONS, ""))


# -- python-file form ---------------------------------------------------------------------------------
def _holder(options: OpenRLHFOptions) -> ClientHolder:
    return shared_holder(options.client_spec())


def reward_func(queries: list[str], prompts: list[str], labels: list[Any], **kwargs: Any) -> dict[str, Any]:
    """OpenRLHF ``reward_func`` (``--reward.remote_url path/to/file.py`` whose module exposes it).

    Thread-safe (OpenRLHF calls it from a thread pool, one query per call). Same output as
    :func:`rlreward.protocols.openrlhf.get_reward_endpoint`; a server that cannot be reached gives the fallback reward with
    ``rm_error = 1.0`` rather than an exception (which would leave OpenRLHF without a reward).
    """
    options = OpenRLHFOptions.from_env()
    items = [
        prepare_query(q, p, lab, options, encode_image=wire_image)
        for q, p, lab in zip(*columns({"query": queries, "prompts": prompts, "labels": labels}), strict=True)
    ]
    samples = [it.sample for it in items if it.error is None]
    try:
        scored = score_sync(_holder(options), samples)
    except Exception as exc:
        log.warning("reward_func: scoring failed, using the fallback reward: %s", exc)
        scored = failed_all(len(samples), exc)
    return rewards_body(items, merge_results(items, scored), options)


# -- agent-executor form ------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def _agent_class() -> type:
    from openrlhf.utils.agent import SingleTurnAgentExecutor

    class RewardAgentExecutor(SingleTurnAgentExecutor):
        """OpenRLHF single-turn executor that scores each response with the rollout's real images.

        Built with no arguments (OpenRLHF's ``_load_agent_executor`` does ``AgentExecutor()``);
        configured by ``$RLREWARD_OPENRLHF`` / ``$RLREWARD_URL``. Sets a float ``reward`` and
        ``scores`` and numeric ``extra_logs`` on every output, the fallback when scoring fails.
        """

        def __init__(self) -> None:
            super().__init__(remote_rm_url=None)  # generation only; we score below
            self.options = OpenRLHFOptions.from_env()
            self.holder = _holder(self.options)

        async def execute(
            self, prompt, label, sampling_params, max_length: int, hf_tokenizer, llm_engine, images=None
        ):
            out = await super().execute(
                prompt, label, sampling_params, max_length, hf_tokenizer, llm_engine, images=images
            )
            start, end = out["action_ranges"][0]
            response = hf_tokenizer.decode(out["observation_tokens"][start:end], skip_special_tokens=True)
            item = prepare_query(
                None, prompt, label, self.options, images=images, response=response, encode_image=wire_image
            )
            if item.error is not None:
                result = item.error
            else:
                try:
                    (result,) = await score_async(self.holder, [item.sample])
                except Exception as exc:
                    log.warning("agent executor: scoring failed, using the fallback reward: %s", exc)
                    (result,) = failed_all(1, exc)
            info = rewards_body([item], [result], self.options)
            out.update(
                reward=info["rewards"][0],
                scores=info["scores"][0],
                extra_logs={k: v[0] for k, v in info["extra_logs"].items()},
            )
            return out

    RewardAgentExecutor.__module__ = __name__
    RewardAgentExecutor.__qualname__ = "RewardAgentExecutor"
    return RewardAgentExecutor


def __getattr__(name: str) -> Any:
    # Subclassing OpenRLHF's executor imports openrlhf (and torch): only when asked for.
    if name == "RewardAgentExecutor":
        return _agent_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
