"""``rlreward eval``: a reward model on the benchmarks its authors report, scored as their code does.

Check that a deployment scores like the paper (Skywork-VL-Reward-7B: VL-RewardBench 73.1 overall /
69.0 macro, RewardBench 90.1) before spending GPU-days of RL on it. The flow, one module each:

* :mod:`.loading` — a file, folder or hub dataset → records → items (:mod:`.items`: ``Pair``,
  ``Group``) with the format's loader; :mod:`.registry` names the formats.
* one module per benchmark format — :mod:`.vl_rewardbench`, :mod:`.mm_rewardbench`,
  :mod:`.rewardbench`, :mod:`.mm_rlhf_rewardbench`, :mod:`.best_of_k`, :mod:`.pairs`: its record
  schema, loader, category rule, official metric and headline (:class:`~.benchmark.Benchmark`).
* :mod:`.scoring` — the scoring loop with its resumable sidecar; :mod:`.remote` — through a server.
* :mod:`.outcomes` — scores → verdicts (a pair is right only when the chosen answer scores strictly
  higher than the tie tolerance; ties and errored items are wrong in every headline).
* :mod:`.build` — outcomes → :class:`~.report.EvalReport` (pooled, macro, stratified bootstrap
  95% intervals, then the format's own part); :mod:`.render` — JSON, Markdown and PNG files.
* :mod:`.runner` — one whole run, as ``rlreward eval`` makes it.
"""

from __future__ import annotations

from .build import build_report
from .items import EvalError, Group, Item, Pair
from .loading import load_items, read_records
from .outcomes import GroupOutcome, Outcome, PairOutcome, outcome_of, outcomes_of
from .registry import FORMATS, PAPER, benchmark, default_tie_tolerance, detect_format, records_to_items
from .remote import RemoteBackend, backend_info
from .render import markdown_table, write_reports
from .report import EvalReport
from .runner import EvalJob, EvalRun, run_eval
from .scoring import ScoreCache, score_items, score_pairs

__all__ = [
    "FORMATS",
    "PAPER",
    "EvalError",
    "EvalJob",
    "EvalReport",
    "EvalRun",
    "Group",
    "GroupOutcome",
    "Item",
    "Outcome",
    "Pair",
    "PairOutcome",
    "RemoteBackend",
    "ScoreCache",
    "backend_info",
    "benchmark",
    "build_report",
    "default_tie_tolerance",
    "detect_format",
    "load_items",
    "markdown_table",
    "outcome_of",
    "outcomes_of",
    "read_records",
    "records_to_items",
    "run_eval",
    "score_items",
    "score_pairs",
    "write_reports",
]
