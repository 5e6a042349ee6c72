"""``rlreward eval``: a reward model on a benchmark file, scored as the benchmark's own code scores it,
in-process or via a server. Parses the arguments and calls :func:`rlreward.offline.eval.run_eval`
(rules: :mod:`rlreward.offline.eval`)."""

from __future__ import annotations

import argparse
import os
import sys

from rlreward.commands._options import add_model_arguments, scorer_config_from_args
from rlreward.errors import UsageError
from rlreward.offline.eval import FORMATS, EvalError, EvalJob, markdown_table, run_eval


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--dataset",
        required=True,
        help="local .json/.jsonl/.parquet file or folder, or a Hugging Face dataset id",
    )
    p.add_argument(
        "--format",
        default="auto",
        choices=("auto", *FORMATS),
        help="dataset schema (default: guessed from the first record)",
    )
    p.add_argument(
        "--split",
        default=None,
        help="split of a hub dataset / file-name filter in a folder (default: filtered for rewardbench, else test)",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", help="score in-process with this model directory (or HF id)")
    src.add_argument("--url", help="score through a running rlreward server, e.g. http://host:8000")
    p.add_argument(
        "--api-key",
        default=os.environ.get("RLREWARD_API_KEY"),
        help="bearer token for --url (default: $RLREWARD_API_KEY)",
    )
    p.add_argument(
        "-o",
        "--output",
        default="eval-report.json",
        help="JSON report path; the .md table and .png chart go beside it",
    )
    p.add_argument("--limit", type=int, default=None, help="evaluate only the first N records")
    p.add_argument(
        "--resume",
        action="store_true",
        help="reuse the scores in the sidecar next to -o (REPORT.scores.jsonl) of an interrupted run "
        "and score only the rest (the sidecar is written as chunks finish, with or without this flag)",
    )
    p.add_argument(
        "--bootstrap", type=int, default=1000, help="bootstrap resamples for the 95%% CIs (0: off)"
    )
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    p.add_argument(
        "--chunk-pairs", type=int, default=32, help="items (pairs, groups) per scoring call / request"
    )
    p.add_argument(
        "--tie-tolerance",
        type=float,
        default=None,
        help="score differences up to this are ties (default: 0, the official exact '>', for the four "
        "benchmarks with an official scorer; 1e-5, the fp32 noise of batching, for pairs and best-of-k)",
    )
    add_model_arguments(p)


def run(args: argparse.Namespace) -> int:
    job = EvalJob(
        dataset=args.dataset,
        scorer=scorer_config_from_args(args) if args.model else None,
        url=args.url,
        api_key=args.api_key,
        image_roots=list(args.image_root),
        fmt=args.format,
        split=args.split,
        limit=args.limit,
        output=args.output,
        resume=args.resume,
        bootstrap=args.bootstrap,
        seed=args.seed,
        chunk_pairs=args.chunk_pairs,
        tie_tolerance=args.tie_tolerance,
    )
    try:
        done = run_eval(job)
    except EvalError as exc:
        raise UsageError(str(exc)) from exc
    print(markdown_table(done.report))
    print(
        f"wrote {done.json_path}, {done.markdown_path}, {done.png_path} (scores: {done.sidecar})",
        file=sys.stderr,
    )
    return 0
