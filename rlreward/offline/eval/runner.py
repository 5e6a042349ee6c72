"""One ``rlreward eval`` run: load the dataset, score it in-process or through a server, write the
report files. :func:`run_eval` is what the command calls (the command only parses arguments).

In-process (``EvalJob.scorer``: a :class:`~rlreward.engine.config.ScorerConfig`) or remote
(``EvalJob.url``); image paths are read only under the given roots, by default the dataset's own
folder. Scores go to the sidecar as chunks finish; an error while scoring says the sidecar keeps
them and ``--resume`` goes on from there. Raises :class:`~.items.EvalError` with what to do.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .build import build_report
from .items import EvalError
from .loading import load_items
from .outcomes import outcomes_of
from .registry import benchmark
from .remote import RemoteBackend, backend_info
from .render import write_reports
from .report import EvalReport
from .scoring import ScoreCache, score_items

if TYPE_CHECKING:
    from rlreward.engine.config import ScorerConfig


@dataclass(frozen=True)
class EvalJob:
    """What to evaluate and how (the ``rlreward eval`` options). Exactly one of ``scorer`` (score
    in-process; its empty ``media.image_roots`` become the dataset's folder) and ``url``."""

    dataset: str
    scorer: ScorerConfig | None = None
    url: str | None = None
    api_key: str | None = None
    image_roots: list[str] = field(default_factory=list)
    fmt: str = "auto"
    split: str | None = None
    limit: int | None = None
    output: str = "eval-report.json"
    resume: bool = False
    bootstrap: int = 1000
    seed: int = 0
    chunk_pairs: int = 32
    tie_tolerance: float | None = None


@dataclass(frozen=True)
class EvalRun:
    """A finished run: the report and where its files are."""

    report: EvalReport
    json_path: Path
    markdown_path: Path
    png_path: Path
    sidecar: Path


def _backend(job: EvalJob, base: Path | None) -> tuple[Any, dict[str, Any], str]:
    """(backend, the configuration asked for, the model's name in the report)."""
    default_roots = [str(base)] if base is not None else []
    if job.scorer is not None:
        from rlreward.engine.scorer import Scorer

        config = job.scorer
        if not config.media.image_roots:
            config = config.model_copy(
                update={"media": config.media.model_copy(update={"image_roots": default_roots})}
            )
        return Scorer.from_config(config), config.model_dump(mode="json"), str(job.scorer.model)
    if job.url is None:
        raise EvalError("give a model to score in-process or the URL of a running server")
    from rlreward.engine.config import MediaPolicy

    roots = list(job.image_roots) or default_roots
    backend = RemoteBackend(job.url, job.api_key, MediaPolicy(image_roots=roots))
    return backend, {"url": job.url, "image_roots": roots}, job.url


def run_eval(job: EvalJob) -> EvalRun:
    """Load, score (progress on stderr), build the report and write its three files."""
    from rlreward.offline.progress import progress

    items, fmt, base = load_items(job.dataset, job.fmt, split=job.split, limit=job.limit)
    backend, requested, model = _backend(job, base)
    sidecar = ScoreCache.sidecar_path(job.output)
    try:
        cache = ScoreCache.open(
            sidecar, {"dataset": job.dataset, "format": fmt, "model": model}, resume=job.resume
        )
    except EvalError:
        if isinstance(backend, RemoteBackend):
            backend.close()
        raise
    t0 = time.perf_counter()
    unit = benchmark(fmt).item_kind
    try:
        with progress(len(items), f"eval {fmt}", unit) as bar:
            results = score_items(
                items, backend, chunk_pairs=job.chunk_pairs, cache=cache, progress=bar.update
            )
        preprocessing = backend_info(backend, requested)
    except EvalError as exc:
        raise EvalError(f"{exc} (scores so far are kept in {sidecar}; rerun with --resume)") from exc
    finally:
        cache.close()
        if isinstance(backend, RemoteBackend):
            backend.close()
    seconds = time.perf_counter() - t0
    tie_tolerance = benchmark(fmt).tie_tolerance if job.tie_tolerance is None else job.tie_tolerance
    report = build_report(
        outcomes_of(items, results, tie_tolerance),
        dataset=job.dataset,
        fmt=fmt,
        model=model,
        bootstrap=job.bootstrap,
        seed=job.seed,
        seconds=seconds,
        preprocessing=preprocessing,
        limit=job.limit,
        resumed=cache.reused,
    )
    json_path, md, png = write_reports(report, job.output)
    return EvalRun(report, json_path, md, png, sidecar)
