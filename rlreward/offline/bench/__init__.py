"""``rlreward bench`` (:mod:`rlreward.commands.bench`): reward-scoring throughput, the model-card recipe against our scorer, side by side.

One run builds one model (:mod:`.models`: ``bench-small``, ``7b-shape`` or a checkpoint directory)
and one workload (:mod:`.workloads`: ``grpo``, ``ppo``, ``text``), then measures every asked-for
system (:mod:`.systems`: ``reference`` — the card's recipe written here, independent of
:mod:`rlreward.engine.scorer` — ``unshared``, ``shared``, ``serve``, ``serve-stream``) on the same
samples, interleaved over ``--repeats``, each warmed up first; :mod:`.report` writes the JSON and
the plot.

Contract: every system's scores are compared with the reference's; above ``--atol`` the run is a
mismatch (exit code 1): a speed-up that changes scores is no speed-up. Reported per system:
samples/s, tokens/s, padding efficiency, the time split (preprocess, vision, language, other), peak
memory, max |score − reference|, model FLOPs and MFU (``sample_flops``). The definitions of
every system, metric, model and workload: BENCHMARKS.md ("How `rlreward bench` measures").
"""

from __future__ import annotations

SYSTEMS = ("reference", "unshared", "shared", "serve", "serve-stream")
DEFAULT_SYSTEMS = "reference,unshared,shared"
