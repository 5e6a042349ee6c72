"""``rlreward score``: score a JSONL file of samples in-process, one result line per input line."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from rlreward.commands._options import add_model_arguments, scorer_config_from_args
from rlreward.errors import UsageError
from rlreward.offline.progress import progress


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", help="JSONL file, one sample per line ('-' for stdin)")
    p.add_argument("--model", required=True, help="model directory (or HF id where a hub is reachable)")
    p.add_argument("-o", "--output", default="-", help="output JSONL (default: stdout)")
    add_model_arguments(p)


def _read_jsonl(path: str) -> list[Any]:
    """Lines → parsed objects; a line that is not JSON becomes a marker (scored as invalid)."""
    try:
        fh = sys.stdin if path == "-" else open(path, encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from exc
    items: list[Any] = []
    with fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                items.append(json.loads(line))
            except json.JSONDecodeError as exc:
                items.append(_BadLine(n, str(exc)))
    return items


def settings_header(info: dict[str, Any]) -> str:
    """The stderr header of ``rlreward score``: what will run (model, device, both resizes' bounds,
    video bounds, deviations, the effective batch budget), one ``key=value`` group per line."""
    pre = info.get("preprocessing") or {}
    img, vid = pre.get("image") or {}, pre.get("video") or {}
    first, second = img.get("first_resize") or {}, img.get("second_resize") or {}
    vfirst, vsecond = vid.get("first_resize") or {}, vid.get("second_resize") or {}
    bat = info.get("batching") or {}
    dev = pre.get("deviations") or {}
    lines = [
        f"rlreward score: model={info.get('model')} device={info.get('device')} dtype={info.get('dtype')}",
        f"  image resize 1 (qwen-vl-utils, per-item keys honoured): pixels {first.get('min_pixels')}-"
        f"{first.get('max_pixels')}, factor {first.get('factor')}",
        f"  image resize 2 ({second.get('by')}): pixels {second.get('min_pixels')}-{second.get('max_pixels')}, "
        f"patch {second.get('patch_size')} merge {second.get('merge_size')}",
        f"  video: resize 1 pixels {vfirst.get('min_pixels')}-{vfirst.get('max_pixels')}, fps {vfirst.get('fps')}, "
        f"frames {vfirst.get('min_frames')}-{vfirst.get('max_frames')} (limit {vid.get('max_video_frames')}), "
        f"reader {vfirst.get('file_reader')}; resize 2 pixels {vsecond.get('min_pixels')}-{vsecond.get('max_pixels')}",
    ]
    family = info.get("family") or {}
    if family:
        lines.insert(1, f"  model family: {family.get('family')} ({family.get('recipe')})")
    if not first:  # a family that renders with its own processor/tokenizer alone
        lines[-3:] = [f"  images: {'processor resize ' + str(second) if second else 'none (text only)'}"]
    lines += [
        "  deviations from the checkpoint/recipe: "
        + (", ".join(f"{k}={v}" for k, v in dev.items()) if dev else "none (the model card's recipe)"),
        f"  batching: max_batch_tokens={bat.get('max_batch_tokens')} ({bat.get('max_batch_tokens_source')}), "
        f"max_batch_size={bat.get('max_batch_size')}, prefix_sharing={bat.get('prefix_sharing')}",
    ]
    return "\n".join(lines)


class _BadLine:
    def __init__(self, line: int, why: str) -> None:
        self.line, self.why = line, why


def run(args: argparse.Namespace) -> int:
    import os

    from rlreward.engine.config import ScorerConfig  # noqa: F401  (validates early)
    from rlreward.engine.scorer import Scorer
    from rlreward.schema import ErrorCode, ScoreResult

    samples = _read_jsonl(args.input)
    default_root = [os.path.dirname(os.path.abspath(args.input))] if args.input != "-" else []
    config = scorer_config_from_args(args, default_root)
    scorer = Scorer.from_config(config)
    print(settings_header(scorer.info()), file=sys.stderr)
    bad = {i: s for i, s in enumerate(samples) if isinstance(s, _BadLine)}
    good = [s for s in samples if not isinstance(s, _BadLine)]
    with progress(len(samples), "scoring", "sample") as bar:
        bar.update(len(bad))
        scored = iter(scorer.score(good, progress=bar.update))
    results = [
        ScoreResult.failed(ErrorCode.INVALID_SAMPLE, f"line {bad[i].line} is not JSON: {bad[i].why}")
        if i in bad
        else next(scored)
        for i in range(len(samples))
    ]
    out = sys.stdout if args.output == "-" else open(args.output, "w", encoding="utf-8")
    with out if out is not sys.stdout else _nullcontext(out):
        for r in results:
            out.write(r.model_dump_json() + "\n")
    n_err = sum(r.error is not None for r in results)
    print(f"scored {len(results) - n_err} of {len(results)} samples ({n_err} errors)", file=sys.stderr)
    return 0


class _nullcontext:
    def __init__(self, v: Any) -> None:
        self.v = v

    def __enter__(self) -> Any:
        return self.v

    def __exit__(self, *a: Any) -> None:
        self.v.flush()
