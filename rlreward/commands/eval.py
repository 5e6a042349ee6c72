"""``rlreward eval``: pairwise accuracy of a reward model on a benchmark file, in-process or via a server."""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

from rlreward.commands._options import CliError, add_model_arguments, scorer_config_from_args
from rlreward.offline.evaluation import (
    FORMATS,
    EvalError,
    RemoteBackend,
    build_report,
    load_pairs,
    markdown_table,
    score_pairs,
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
    p.add_argument("--split", default="test", help="split of a hub dataset / file-name filter in a folder")
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
        "--bootstrap", type=int, default=1000, help="bootstrap resamples for the 95%% CIs (0: off)"
    )
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    p.add_argument("--chunk-pairs", type=int, default=32, help="pairs per scoring call / request")
    p.add_argument(
        "--tie-tolerance",
        type=float,
        default=1e-5,
        help="score differences up to this are ties, counted wrong (default 1e-5; 0: exact)",
    )
    add_model_arguments(p)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    try:
        pairs, fmt, base = load_pairs(args.dataset, args.format, split=args.split, limit=args.limit)
    except EvalError as exc:
        raise CliError(str(exc)) from exc
    default_roots = [str(base)] if base is not None else []
    if args.model:
        from rlreward.engine.scorer import Scorer

        backend: Any = Scorer.from_config(scorer_config_from_args(args, default_roots))
        model = args.model
    else:
        from rlreward.engine.config import MediaPolicy

        roots = list(args.image_root) or default_roots
        try:
            backend = RemoteBackend(args.url, args.api_key, MediaPolicy(image_roots=roots))
        except EvalError as exc:
            raise CliError(str(exc)) from exc
        model = args.url
    t0 = time.perf_counter()
    try:
        with tqdm(total=len(pairs), desc=f"eval {fmt}", unit="pair", file=sys.stderr, disable=None) as bar:
            outcomes = score_pairs(
                pairs,
                backend,
                chunk_pairs=args.chunk_pairs,
                tie_tolerance=args.tie_tolerance,
                progress=bar.update,
            )
    except EvalError as exc:
        raise CliError(str(exc)) from exc
    finally:
        if isinstance(backend, RemoteBackend):
            backend.close()
    seconds = time.perf_counter() - t0
    report = build_report(
        outcomes,
        dataset=args.dataset,
        fmt=fmt,
        model=model,
        bootstrap=args.bootstrap,
        seed=args.seed,
        seconds=seconds,
    )
    json_path, md, png = write_reports(report, args.output)
    print(markdown_table(report))
    print(f"wrote {json_path}, {md}, {png}", file=sys.stderr)
    return 0
