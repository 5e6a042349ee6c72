"""``rlreward eval``: a reward model on a benchmark file, scored as the benchmark's own code scores it,
in-process or via a server (rules: :mod:`rlreward.offline.evaluation`)."""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

from rlreward.commands._options import add_model_arguments, scorer_config_from_args
from rlreward.errors import UsageError
from rlreward.offline.benchmarks import default_tie_tolerance
from rlreward.offline.evaluation import (
    FORMATS,
    EvalError,
    RemoteBackend,
    ScoreCache,
    backend_info,
    build_report,
    load_items,
    markdown_table,
    outcomes_of,
    score_items,
    write_reports,
)


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
    from tqdm import tqdm

    try:
        items, fmt, base = load_items(args.dataset, args.format, split=args.split, limit=args.limit)
    except EvalError as exc:
        raise UsageError(str(exc)) from exc
    default_roots = [str(base)] if base is not None else []
    if args.model:
        from rlreward.engine.scorer import Scorer

        config = scorer_config_from_args(args, default_roots)
        requested = config.model_dump(mode="json")
        backend: Any = Scorer.from_config(config)
        model = args.model
    else:
        from rlreward.engine.config import MediaPolicy

        roots = list(args.image_root) or default_roots
        requested = {"url": args.url, "image_roots": roots}
        try:
            backend = RemoteBackend(args.url, args.api_key, MediaPolicy(image_roots=roots))
        except EvalError as exc:
            raise UsageError(str(exc)) from exc
        model = args.url
    sidecar = ScoreCache.sidecar_path(args.output)
    try:
        cache = ScoreCache.open(
            sidecar, {"dataset": args.dataset, "format": fmt, "model": model}, resume=args.resume
        )
    except EvalError as exc:
        raise UsageError(str(exc)) from exc
    t0 = time.perf_counter()
    unit = "group" if fmt == "best-of-k" else "pair"
    try:
        with tqdm(total=len(items), desc=f"eval {fmt}", unit=unit, file=sys.stderr, disable=None) as bar:
            results = score_items(
                items, backend, chunk_pairs=args.chunk_pairs, cache=cache, progress=bar.update
            )
        preprocessing = backend_info(backend, requested)
    except EvalError as exc:
        raise UsageError(f"{exc} (scores so far are kept in {sidecar}; rerun with --resume)") from exc
    finally:
        cache.close()
        if isinstance(backend, RemoteBackend):
            backend.close()
    seconds = time.perf_counter() - t0
    tie_tolerance = default_tie_tolerance(fmt) if args.tie_tolerance is None else args.tie_tolerance
    report = build_report(
        outcomes_of(items, results, tie_tolerance),
        dataset=args.dataset,
        fmt=fmt,
        model=model,
        bootstrap=args.bootstrap,
        seed=args.seed,
        seconds=seconds,
        preprocessing=preprocessing,
        limit=args.limit,
        resumed=cache.reused,
    )
    json_path, md, png = write_reports(report, args.output)
    print(markdown_table(report))
    print(f"wrote {json_path}, {md}, {png} (scores: {sidecar})", file=sys.stderr)
    return 0
