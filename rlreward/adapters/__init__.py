"""Trainer adapters: each trainer's reward contract in, rlreward samples out, scores back.

One module per trainer, each a thin translation layer over :mod:`rlreward.client`:

* :mod:`rlreward.adapters.trl`: ``RewardModelReward`` / ``AsyncRewardModelReward``, ``reward_funcs``
  entries for TRL 1.16 ``GRPOTrainer`` / ``RLOOTrainer`` (images from the prompt blocks).
* :mod:`rlreward.adapters.openrlhf`: ``reward_func`` (``--reward.remote_url file.py``) and
  ``RewardAgentExecutor`` (``--train.agent_func_path``), which sends the rollout's real images; the
  server's ``POST /get_reward`` and the wire format are :mod:`rlreward.protocols.openrlhf`.
* :mod:`rlreward.adapters.verl`: ``compute_score`` (``reward.custom_reward_function``) and
  ``RLRewardManager`` (``reward.reward_manager.source=importlib``) for verl 0.9.x's reward loop.

What they share lives in :mod:`rlreward.adapters._common`: :class:`ClientSpec` (how to reach the server; picklable, so an adapter
rebuilds its live client after crossing a process or Ray boundary) and :func:`wire_image` (any
in-process image reference → something JSON can carry). Every trainer maps a failed sample its own
way (TRL ``None``; OpenRLHF and verl a fallback number plus an error flag), see each module.

Nothing here imports torch, transformers or ray: trainer nodes only need the client.
"""
