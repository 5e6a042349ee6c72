"""On an accelerator: every serving path scores a varied GRPO burst as one-at-a-time scoring does
(bf16: prefix sharing on and off, left and right padding, against batch size 1), and in fp32 the
shared and unshared paths agree to 1e-4.

Complements ``test_varied_groups.py`` (shared vs unshared in one batch, prefix once, a real OOM).
Skipped where no CUDA device is present; ``benchmarks/gpu_check.sh`` runs this folder on a GPU box.
bf16 kernels differ by batch shape: agreement within 2e-2 relative, as in ``test_bf16_parity.py``.
"""

from __future__ import annotations

import pytest
import torch

from tests.gpu.test_varied_groups import _scorer
from tests.unit.test_prefix_varied import burst

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

TOL = 2e-2


@pytest.fixture(scope="module")
def alone(tiny_model_dir) -> tuple[list[dict], list[float]]:
    samples = burst(groups=3, answers=6)
    scorer = _scorer(tiny_model_dir, prefix_sharing=False)
    return samples, [scorer.score([s])[0].score for s in samples]


@pytest.mark.parametrize("padding_side", ["right", "left"])
@pytest.mark.parametrize("sharing", [False, True])
def test_a_varied_burst_scores_as_one_at_a_time(tiny_model_dir, alone, sharing, padding_side):
    samples, want = alone
    scorer = _scorer(tiny_model_dir, prefix_sharing=sharing, padding_side=padding_side)
    got = [r.score for r in scorer.score(samples)]
    assert None not in got
    for g, w in zip(got, want):
        assert abs(g - w) <= TOL * max(1.0, abs(w)), (g, w)


def test_shared_and_unshared_agree_in_fp32_on_the_gpu(tiny_model_dir):
    from rlreward.engine.config import ScorerConfig
    from rlreward.engine.scorer import Scorer

    samples = burst(groups=2, answers=5, seed=1)
    scores = {}
    for sharing in (False, True):
        cfg = ScorerConfig(
            model=tiny_model_dir, dtype="float32", device="cuda", batching={"prefix_sharing": sharing}
        )
        scores[sharing] = [r.score for r in Scorer.from_config(cfg).score(samples)]
    assert scores[True] == pytest.approx(scores[False], abs=1e-4)
