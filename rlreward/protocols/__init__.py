"""Foreign wire protocols, side by side: what other systems send and expect, translated to rlreward's
samples and results.

* :mod:`rlreward.protocols.vllm`: vLLM's pooling/reward API (``/classify``, ``/pooling``, ``/score``,
  ``/rerank``), what verl's reward loop and vLLM-style clients speak.
* :mod:`rlreward.protocols.openrlhf`: OpenRLHF's remote reward (``POST /get_reward``).

Pure conversion: these modules import the standard library, pydantic and rlreward's trainer-side data
modules (:mod:`rlreward.schema`, :mod:`rlreward.errors`, :mod:`rlreward.rewards`) only; no torch, no
Ray. The serving wing mounts them as HTTP routes and passes its scoring call in; the trainer adapters
use them to build the same samples on the trainer side.
"""
