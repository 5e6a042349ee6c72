"""``rlreward bench`` (:mod:`rlreward.commands.bench`): reward-scoring throughput, the model-card recipe against our scorer, side by side.

One run builds one model and one workload, then measures every asked-for *system* on the same
samples, interleaved over ``--repeats`` (so a change in machine load hits every system alike):

``reference``
    The model-card recipe, written here and independent of :mod:`rlreward.engine.scorer`: batch size 1,
    ``processor.apply_chat_template`` + ``qwen_vl_utils.process_vision_info`` + ``processor(...)``,
    a full ``Qwen2_5_VLForConditionalGeneration`` forward with ``output_hidden_states=True`` (so
    ``lm_head`` runs and, as trl's ``AutoModelForCausalLMWithValueHead`` does, its logits are upcast
    to fp32), then an fp32 ``Linear`` value head on ``hidden_states[-1]`` at
    ``attention_mask.sum() - 1``.
``unshared``
    :class:`~rlreward.engine.scorer.Scorer` with ``batching.prefix_sharing=False`` (length-sorted batches
    under a token budget, no ``lm_head``).
``shared``
    The same with ``prefix_sharing=True``: a GRPO group's common prefix (image included) runs once.
``serve``
    Through the Ray Serve app (:func:`rlreward.serving.app.build_app`) and
    :class:`rlreward.client.RewardClient`, one request per group, all in flight at once
    (saturation). Only with ``--systems ...,serve``; skipped with the reason when unavailable.
``serve-stream``
    The same app called as OpenRLHF and verl call it: one sample per request, ``--concurrency``
    requests in flight (default 64); batches form on the replica across requests (continuous
    batching). Shares the ``serve`` deployment when both are asked for.

All in-process systems share one copy of the weights. Every system is warmed up on the first
group before it is timed.

Metrics (per system, JSON field in brackets)
--------------------------------------------
* samples/s [``samples_per_s``] and tokens/s [``tokens_per_s``]: samples, and their tokens (text
  plus visual placeholders, as rendered), over the wall time of the whole call, preprocessing
  included. The median over repeats.
* padding efficiency [``padding_efficiency``]: real tokens / computed tokens over every language-
  model call, counted by a hook on the language model (real = the inputs' columns of the 2D
  attention mask). ``computed_tokens`` is the denominator: a shared prefix is computed once, so
  ``logical_tokens / computed_tokens`` > 1 is the work prefix sharing saves.
  ``planned_padding_efficiency`` (workload level) is :func:`rlreward.engine.batching.padding_efficiency`
  of :func:`rlreward.engine.batching.plan_batches` on the samples' lengths, i.e. the unshared plan.
* time split [``preprocess_s``, ``vision_s``, ``language_s``, ``other_s``]: preprocessing, vision
  tower, language model (decoder layers + final norm); "other" is the rest (``lm_head`` and the
  logits upcast for the reference; collation, the head and Python for the scorer).
* peak memory [``peak_memory_mib``]: GPU: ``torch.cuda.max_memory_allocated`` after a reset. CPU:
  the process' RSS high-water mark from ``resource.getrusage`` after resetting it through
  ``/proc/self/clear_refs`` (it then holds the weights too; ``peak_memory_over_start_mib`` is the
  rise during the run). Where the reset is refused the value is the process lifetime's.
* agreement [``max_abs_diff_vs_reference``]: max |score - reference score|; above ``--atol`` the
  run is reported as a mismatch (exit code 1) — a speed-up that changes scores is no speed-up.
* useful vs executed work [``useful_tokens``, ``useful_tflop``, ``executed_tflop``]: useful is the
  least the workload needs (a shared system counts each group's prefix once,
  :mod:`~rlreward.offline.bench.accounting`); executed is what the model ran, counted per call.
* MFU [``mfu``, ``mfu_device``]: useful FLOPs / (wall x peak), preprocessing included, beside
  executed FLOPs / ((vision + language device time) x peak). The peak is ``--peak-tflops`` or the
  dense bf16 table by GPU name (:data:`~rlreward.offline.bench.models.PEAK_TFLOPS`); none on CPU.

Models (``--model``)
--------------------
``bench-small``
    Random weights in the Qwen2.5-VL-7B's proportions, scaled so that CPU ratios mean something.
    Width is divided by 8 (hidden 3584 -> 448, MLP 18944 -> 2368, vision 1280 -> 160, MLP 3420 ->
    428; head_dim 64 and the vision head_dim 80, so GQA stays 7:1 with 7 query heads and 1 KV
    head) and depth by 4 (28 -> 7 text layers, 32 -> 8 vision blocks, the last in full attention
    as every 8th is in the 7B). Matmul FLOPs go as depth x width^2, so the vocabulary is divided by
    8 x 4 = 32 (152,064 -> 4,752): ``lm_head``, which the reference recipe computes and our scorer
    skips, keeps the 7B's 8.35% of the text-layer FLOPs exactly. What cannot be kept: a visual
    token costs 0.44 of a text token's matmul FLOPs instead of 0.39 (the merger and the patch
    embedding do not shrink with depth), and attention, which grows with width and not width^2,
    weighs 8x more at equal length (4.4% of the text FLOPs of a 375-token sample instead of 0.6%;
    with a 256-token image a visual token costs 0.49 of a text token instead of 0.40). Patch 14,
    merge 2, window 112 and M-RoPE (sections 8/12/12 = head_dim/2) are the 7B's, so token counts
    per image are the real ones. 33 M parameters, fp32 on CPU; tokenizer
    :func:`rlreward.offline.tiny.build_tokenizer` (offline), processor :func:`rlreward.offline.tiny.build_processor`.
``7b-shape``
    The exact Qwen2.5-VL-7B config (``DESIGN``'s reference §2), random bf16 weights built on the
    device, 8,292,166,656 parameters (asserted); a random value head file is written on the fly.
    For a GPU. The five special-token ids come from the offline tokenizer (they do not change any
    shape).
a directory
    Any Qwen2.5-VL reward checkpoint (``value_head.safetensors`` beside the weights).

Workloads (``--workload``)
--------------------------
``grpo``: ``--prompts`` P x ``--group`` G completions; each prompt has its own image of
``--image-tokens`` N visual tokens and ``--prompt-tokens`` of text; completions are
``--completion-tokens`` C tokens, or MIN..MAX drawn uniformly per answer. ``ppo``: ``--samples`` independent samples of mixed lengths, one
image each (N/4..N visual tokens, C/4..2C completion tokens). ``text``: mixed-length text only.
Text is drawn from words that are one token each, so lengths are what the flags say; images are
blocky random PNGs sized to the exact token count (multiples of 28 px, so no resize).
"""

from __future__ import annotations

SYSTEMS = ("reference", "unshared", "shared", "serve", "serve-stream")
DEFAULT_SYSTEMS = "reference,unshared,shared"
