"""On an accelerator, bf16: the serving paths agree with one-at-a-time scoring on GRPO groups whose
answers vary in length: prefix sharing vs none, left vs right padding, one batch vs alone.

Skipped where no CUDA device is present. ``benchmarks/gpu_check.sh`` runs this folder on a GPU box.
bf16 kernels differ by batch shape, so agreement is within 2e-2 relative (the card recipe's own
spread between kernels, as in ``test_bf16_parity.py``).
"""

from __future__ import annotations

import random

import pytest
import torch

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

TOL = 2e-2


def _scorer(model_dir: str, **batching):
    from rlreward.engine.config import ScorerConfig
    from rlreward.engine.scorer import Scorer

    cfg = ScorerConfig(
        model=model_dir, dtype="bfloat16", device="cuda", attn_implementation="sdpa", batching=batching
    )
    return Scorer.from_config(cfg)


def _groups(n_groups: int = 3, group: int = 8, seed: int = 0) -> list[dict]:
    from tests.conftest import noise_png

    rng = random.Random(seed)
    out = []
    for g in range(n_groups):
        image = noise_png(g, (336, 224))
        prompt = f"Describe picture {g} in detail, then answer: what is in the corner?"
        for _ in range(group):
            out.append({"prompt": prompt, "response": "word " * rng.randint(1, 300), "images": [image]})
    return out


@pytest.fixture(scope="module")
def alone(tiny_model_dir) -> tuple[list[dict], list[float]]:
    samples = _groups()
    scorer = _scorer(tiny_model_dir, prefix_sharing=False)
    return samples, [scorer.score([s])[0].score for s in samples]


def _close(got: list[float | None], want: list[float]) -> None:
    assert None not in got
    for g, w in zip(got, want):
        assert abs(g - w) <= TOL * max(1.0, abs(w)), (g, w)


@pytest.mark.parametrize("padding_side", ["right", "left"])
@pytest.mark.parametrize("sharing", [False, True])
def test_grpo_groups_with_varied_answers_score_as_alone(tiny_model_dir, alone, sharing, padding_side):
    samples, want = alone
    scorer = _scorer(tiny_model_dir, prefix_sharing=sharing, padding_side=padding_side)
    _close([r.score for r in scorer.score(samples)], want)


def test_shared_and_unshared_agree_in_fp32_on_the_gpu(tiny_model_dir):
    from rlreward.engine.config import ScorerConfig
    from rlreward.engine.scorer import Scorer

    samples = _groups(2, 6, seed=1)
    scores = {}
    for sharing in (False, True):
        cfg = ScorerConfig(
            model=tiny_model_dir, dtype="float32", device="cuda", batching={"prefix_sharing": sharing}
        )
        scores[sharing] = [r.score for r in Scorer.from_config(cfg).score(samples)]
    assert scores[True] == pytest.approx(scores[False], abs=1e-4)
