"""``rlreward make-tiny DIR [--family F]``: write a tiny random reward checkpoint of a family (default
Skywork-VL-Reward-shaped; ``--train``: then train it, skywork-vl only)."""

from __future__ import annotations

import argparse
import sys

from rlreward.errors import UsageError
from rlreward.offline.tiny import ProcessorOptions
from rlreward.offline.tiny_families import FAMILIES, make_family


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir", help="output directory")
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed, same checkpoint)")
    p.add_argument(
        "--family",
        choices=FAMILIES,
        default="skywork-vl",
        help="reward-model family (see docs/models.md): skywork-vl = Qwen2.5-VL + value_head.safetensors",
    )
    p.add_argument(
        "--train",
        action="store_true",
        help="then train it (Bradley-Terry on generated colour/shape pairs, about a minute on CPU) "
        "so that it ranks answers like a reward model; see rlreward.offline.train",
    )
    d = ProcessorOptions()
    g = p.add_argument_group(
        "processor",
        "a checkpoint whose processor differs from Skywork-VL-Reward-7B's (pixel counts are areas, "
        "width x height; the defaults are the real model's)",
    )
    g.add_argument("--min-pixels", type=int, default=d.min_pixels, help="image processor min_pixels")
    g.add_argument("--max-pixels", type=int, default=d.max_pixels, help="image processor max_pixels")
    g.add_argument(
        "--video-min-pixels", type=int, default=d.video_min_pixels, help="video processor min_pixels"
    )
    g.add_argument(
        "--video-max-pixels", type=int, default=d.video_max_pixels, help="video processor max_pixels"
    )
    g.add_argument(
        "--patch-size", type=int, default=d.patch_size, help="vision patch size (model and processor)"
    )
    g.add_argument(
        "--merge-size", type=int, default=d.merge_size, help="vision spatial merge size (model and processor)"
    )
    g.add_argument(
        "--legacy-bounds",
        action="store_true",
        help="save the image bounds as top-level min_pixels/max_pixels (Qwen2.5-VL's own layout) instead of size",
    )


def run(args: argparse.Namespace) -> int:
    try:
        options = ProcessorOptions(
            min_pixels=args.min_pixels,
            max_pixels=args.max_pixels,
            video_min_pixels=args.video_min_pixels,
            video_max_pixels=args.video_max_pixels,
            patch_size=args.patch_size,
            merge_size=args.merge_size,
            legacy_bounds=args.legacy_bounds,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    family = getattr(args, "family", "skywork-vl")
    if family != "skywork-vl" and (options != ProcessorOptions() or getattr(args, "train", False)):
        raise UsageError(f"--train and the processor options apply to --family skywork-vl only, not {family}")
    out = make_family(args.dir, family, seed=args.seed, processor=options if family == "skywork-vl" else None)
    what = "Skywork-VL-Reward-shaped" if family == "skywork-vl" else family
    print(f"wrote tiny {what} checkpoint to {out}")
    if getattr(args, "train", False):
        from tqdm import tqdm

        from rlreward.offline.train import train_tiny

        with tqdm(desc="training", unit="step", file=sys.stderr, disable=None) as bar:

            def progress(step: int, loss: float) -> None:
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.3f}", refresh=False)

            result = train_tiny(out, seed=args.seed, progress=progress)
        print(
            f"trained it in {result.seconds:.0f} s ({result.steps} steps on {result.train_pairs} pairs): held-out "
            f"pairwise accuracy {100 * result.heldout_accuracy_before:.1f}% -> "
            f"{100 * result.heldout_accuracy_after:.1f}% ({result.heldout_pairs} pairs)"
        )
    return 0
