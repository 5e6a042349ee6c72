"""Generated workloads: GRPO groups, PPO mixes, text only. See :mod:`rlreward.offline.bench`."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from rlreward.errors import UsageError
from rlreward.offline.synthetic import WORDS, token_noise_image
from rlreward.schema import image_data_uri as schema_image_data_uri


# -- workloads ---------------------------------------------------------------------------------------
@dataclass
class Workload:
    """Samples (dicts in the ``{"prompt", "response", "images"}`` form) plus how they were made.

    ``groups`` partitions the sample indices the way a trainer sends them (a GRPO group per
    request; chunks of ``--group`` otherwise)."""

    name: str
    samples: list[dict]
    groups: list[list[int]]
    params: dict[str, Any]


def one_token_words(tokenizer: Any) -> list[str]:
    """Words that are one token both alone and after a space, so ``k`` of them are ``k`` tokens."""

    def n(s: str) -> int:
        return len(tokenizer.encode(s, add_special_tokens=False))

    words = sorted({w for w in WORDS if n(w) == 1 and n(" " + w) == 1})
    if len(words) < 8:
        raise UsageError("this tokenizer has too few one-token English words to synthesize exact lengths")
    return words


def _text(rng: random.Random, words: list[str], n: int) -> str:
    return " ".join(rng.choice(words) for _ in range(max(1, n)))


def parse_token_range(text: str) -> int | tuple[int, int]:
    """``"C"`` -> C; ``"MIN..MAX"`` -> (MIN, MAX) (``--completion-tokens``); clear error otherwise."""
    lo, sep, hi = text.partition("..")
    try:
        value: int | tuple[int, int] = (int(lo), int(hi)) if sep else int(lo)
    except ValueError:
        raise UsageError(
            f"--completion-tokens {text!r}: give a count (64) or a range MIN..MAX (16..512)"
        ) from None
    bounds = value if isinstance(value, tuple) else (value, value)
    if bounds[0] < 1 or bounds[0] > bounds[1]:
        raise UsageError(f"--completion-tokens {text!r}: need 1 <= MIN <= MAX")
    return value


def make_workload(
    kind: str,
    tokenizer: Any,
    *,
    prompts: int,
    group: int,
    image_tokens: int,
    completion_tokens: int | tuple[int, int],
    prompt_tokens: int,
    samples: int | None,
    seed: int = 0,
) -> Workload:
    """Build the ``grpo``, ``ppo`` or ``text`` workload (deterministic in ``seed``).

    ``completion_tokens``: C, or (MIN, MAX) drawn uniformly per answer. grpo: C means every answer
    is C tokens; ppo/text: C means C/4..2C."""
    rng = random.Random(seed)
    words = one_token_words(tokenizer)
    n_img, pt = image_tokens, prompt_tokens
    c = completion_tokens
    if isinstance(c, tuple):
        lo, hi = c
    else:
        lo, hi = (c, c) if kind == "grpo" else (max(1, c // 4), 2 * c)
    span = f"{lo}..{hi}" if lo != hi else lo
    out: list[dict] = []
    if kind == "grpo":
        for p in range(prompts):
            # --image-tokens 0: text only (a text reward model's GRPO groups).
            images = (
                {"images": [schema_image_data_uri(token_noise_image(n_img, seed * 1000 + p))]}
                if n_img > 0
                else {}
            )
            prompt = _text(rng, words, pt)
            out += [
                {"prompt": prompt, "response": _text(rng, words, rng.randint(lo, hi)), **images}
                for _ in range(group)
            ]
        groups = [list(range(p * group, (p + 1) * group)) for p in range(prompts)]
        params = dict(
            prompts=prompts, group=group, image_tokens=n_img, completion_tokens=span, prompt_tokens=pt
        )
    elif kind in ("ppo", "text"):
        n = samples or prompts * group
        for i in range(n):
            sample = {
                "prompt": _text(rng, words, rng.randint(max(1, pt // 2), pt * (2 if kind == "ppo" else 4))),
                "response": _text(rng, words, rng.randint(lo, hi)),
            }
            if kind == "ppo":
                sample["images"] = [
                    schema_image_data_uri(
                        token_noise_image(rng.randint(max(4, n_img // 4), n_img), seed * 1000 + i)
                    )
                ]
            out.append(sample)
        groups = [list(range(i, min(n, i + group))) for i in range(0, n, group)]
        params = dict(
            samples=n,
            completion_tokens=f"{lo}..{hi}",
            prompt_tokens=pt,
            **({"image_tokens": f"{max(4, n_img // 4)}..{n_img}"} if kind == "ppo" else {}),
        )
    else:
        raise UsageError(f"unknown workload {kind!r}: use grpo, ppo or text")
    return Workload(kind, out, groups, params)
