"""``rlreward make-tiny DIR``: write a tiny random Skywork-VL-Reward-shaped checkpoint (``--train``: then train it)."""

from __future__ import annotations

import argparse
import sys

from rlreward.offline.tiny import make_tiny


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir", help="output directory")
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed, same checkpoint)")
    p.add_argument(
        "--train",
        action="store_true",
        help="then train it (Bradley-Terry on generated colour/shape pairs, about a minute on CPU) "
        "so that it ranks answers like a reward model; see rlreward.offline.train",
    )


def run(args: argparse.Namespace) -> int:
    out = make_tiny(args.dir, seed=args.seed)
    print(f"wrote tiny Skywork-VL-Reward-shaped checkpoint to {out}")
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
