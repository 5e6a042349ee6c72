"""``rlreward`` command line: ``make-tiny``, ``score``, ``serve``, ``bench``, ``tune``, ``loadtest``, ``eval``.

Each command is one module of :mod:`rlreward.commands` exposing ``add_arguments(parser)`` and
``run(args) -> int``; only the chosen command's module is imported, so ``rlreward --help`` and the
light commands stay fast.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable

from rlreward.errors import UsageError


def _make_tiny():
    from rlreward.commands import make_tiny

    return make_tiny


def _score():
    from rlreward.commands import score

    return score


def _serve():
    from rlreward.commands import serve

    return serve


def _bench():
    from rlreward.commands import bench

    return bench


def _eval():
    from rlreward.commands import eval as eval_

    return eval_


def _tune():
    from rlreward.commands import tune

    return tune


def _loadtest():
    from rlreward.commands import loadtest

    return loadtest


def _monitor():
    from rlreward.commands import monitor

    return monitor


#: command → (loader of its module, one-line help)
COMMANDS: dict[str, tuple[Callable, str]] = {
    "make-tiny": (_make_tiny, "write a tiny random Skywork-VL-Reward-shaped checkpoint (offline, seconds)"),
    "score": (_score, "score a JSONL file of samples in-process"),
    "serve": (_serve, "serve the reward model on Ray Serve (HTTP + handle)"),
    "bench": (_bench, "throughput benchmark: reference recipe vs unshared vs shared vs serve"),
    "tune": (_tune, "simulate Serve autoscaling on an RL workload; recommend an autoscaling config"),
    "loadtest": (
        _loadtest,
        "RL-shaped traffic (grpo/stream/trace replay) at a served app: reward-stage time",
    ),
    "eval": (_eval, "pairwise accuracy on reward benchmarks (VL-RewardBench, RewardBench, ...)"),
    "monitor": (_monitor, "watch a served app's reward health (per-step statistics, alerts, canaries)"),
}


# -- entry point -------------------------------------------------------------------------------------
def _top_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="rlreward", description="Multimodal value-head reward model serving for RL."
    )
    p.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_) in COMMANDS.items():
        sub.add_parser(name, help=help_, add_help=False)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    top = _top_parser()
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS and not argv[0].startswith("-"):
        top.print_help()
        return 0 if not argv or argv[0] in ("-h", "--help") else 2
    verbose = False
    while argv and argv[0] in ("-v", "--verbose"):
        verbose, argv = True, argv[1:]
    name = argv[0]
    module = COMMANDS[name][0]()
    parser = argparse.ArgumentParser(prog=f"rlreward {name}", description=COMMANDS[name][1])
    module.add_arguments(parser)
    args = parser.parse_args(argv[1:])
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        return int(module.run(args) or 0)
    except UsageError as exc:
        print(f"rlreward {name}: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        # Load failures carry an actionable message; show it without a traceback.
        from rlreward.engine.head import HeadLoadError

        kinds = (HeadLoadError,)
        try:
            from rlreward.engine.models.base import ModelLoadError

            kinds += (ModelLoadError,)
        except Exception:
            pass
        if isinstance(exc, kinds):
            print(f"rlreward {name}: error: {exc}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
