"""Failure-safe passes: out of memory halves the pass, frees its tensors, lowers the budget; a failed
shared path is counted and falls back, never silently. Faults are injected on CPU by a forward hook on
the language model that raises like a full device would."""

from __future__ import annotations

import logging
import weakref

import pytest
import torch

from rlreward.engine.scorer import Scorer
from tests.conftest import cpu_scorer, noise_png

make = cpu_scorer


TEXT = [
    {"prompt": f"Question {k}: is this fine?", "response": "Yes, " + "it is " * (k % 3)} for k in range(8)
]


class Fault:
    """Raise ``exc`` in the language model's forward when ``when(kwargs)``; record every call's rows and
    whether the inputs of the previous failed call were still alive when the next call started."""

    def __init__(
        self, scorer: Scorer, when, exc=lambda: torch.OutOfMemoryError("CUDA out of memory (injected)")
    ):
        self.rows: list[int] = []
        self.tokens: list[int] = []  # rows x width
        self.failed_alive: list[bool] = []
        self._last: weakref.ref | None = None
        self.when, self.exc = when, exc
        scorer.backbone.language_model.register_forward_pre_hook(self, with_kwargs=True)

    def __call__(self, module, args, kwargs):
        if self._last is not None:
            self.failed_alive.append(self._last() is not None)
            self._last = None
        x = kwargs["inputs_embeds"]
        self.rows.append(int(x.shape[0]))
        self.tokens.append(int(x.shape[0] * x.shape[1]))
        if self.when(kwargs):
            self._last = weakref.ref(x)
            raise self.exc()


@pytest.fixture(scope="module")
def clean(tiny_model_dir):
    return make(tiny_model_dir, prefix_sharing=False)


def test_oom_halves_the_pass_frees_its_tensors_and_lowers_the_budget(tiny_model_dir, clean):
    scorer = make(tiny_model_dir, prefix_sharing=False, max_batch_tokens=4096, min_padding_efficiency=0.0)
    fault = Fault(scorer, lambda kw: kw["inputs_embeds"].shape[0] > 2)
    got = scorer.score(TEXT)
    want = clean.score(TEXT)
    assert all(r.ok for r in got)
    assert max(abs(a.score - b.score) for a, b in zip(got, want)) <= 1e-5
    assert fault.rows == [8, 4, 2, 2, 4, 2, 2]  # halves, recursively; never one by one
    assert fault.failed_alive and not any(fault.failed_alive)  # freed before the retry ran
    stats = scorer.engine_stats()
    assert stats["out_of_memory"] == 3
    width = max(p.num_tokens for p in (scorer.prepare(s) for s in TEXT))
    assert stats["budget_tokens"] <= 4 * width // 2 < 4096
    assert scorer.info()["batching"]["budget_tokens"] == stats["budget_tokens"]
    # The next batch is planned under the lowered budget: no more failures.
    fault.tokens.clear()
    again = scorer.score(TEXT)
    assert max(fault.tokens) <= stats["budget_tokens"] and scorer.engine_stats()["out_of_memory"] == 3
    assert max(abs(a.score - b.score) for a, b in zip(again, want)) <= 1e-5


def test_a_sample_that_always_fails_is_isolated_by_halving(tiny_model_dir, clean):
    scorer = make(tiny_model_dir, prefix_sharing=False, max_batch_tokens=4096, min_padding_efficiency=0.0)
    bad = scorer.prepare({"prompt": "poison", "response": "x"}).input_ids.shape[0]
    fault = Fault(
        scorer,
        lambda kw: kw["attention_mask"].sum(-1).eq(bad).any().item(),
        lambda: RuntimeError("kernel error"),
    )
    samples = TEXT[:5] + [{"prompt": "poison", "response": "x"}] + TEXT[5:]
    got = scorer.score(samples)
    assert [r.ok for r in got] == [True] * 5 + [False] + [True] * 3
    assert "kernel error" in got[5].error.message
    want = clean.score(TEXT)
    assert max(abs(a.score - b.score) for a, b in zip(got[:5] + got[6:], want)) <= 1e-5
    assert len(fault.rows) < 2 * len(samples)  # a binary search, not a one-by-one retry of everything
    assert scorer.engine_stats()["out_of_memory"] == 0


def grpo(groups: int = 2, answers: int = 4) -> list[dict]:
    return [
        {
            "prompt": f"Group {g}: what is in the picture? Answer in a few words please.",
            "response": "A picture of noise. " * (1 + a),
            "images": [noise_png(700 + g, (168, 112))],
        }
        for g in range(groups)
        for a in range(answers)
    ]


def test_oom_in_shared_passes_halves_groups_and_chunks(tiny_model_dir, clean):
    scorer = make(tiny_model_dir, min_shared_prefix_tokens=16, max_batch_tokens=8192)
    # Prefix passes of 2 groups and suffix chunks of more than 2 rows run out of memory.
    fault = Fault(
        scorer,
        lambda kw: kw["inputs_embeds"].shape[0] > (2 if kw.get("past_key_values") is not None else 1),
    )
    samples = grpo()
    got = scorer.score(samples)
    want = clean.score(samples)
    assert all(r.ok for r in got)
    assert max(abs(a.score - b.score) for a, b in zip(got, want)) <= 1e-5
    stats = scorer.engine_stats()
    assert stats["out_of_memory"] >= 2 and stats["shared_path_failures"] == 0
    assert stats["prefix_passes"] == 2  # each group's prefix still once, after the split
    assert not any(fault.failed_alive)


def test_a_failed_shared_path_is_counted_and_logged_and_scores_stay(tiny_model_dir, clean, caplog):
    scorer = make(tiny_model_dir, min_shared_prefix_tokens=16)
    Fault(scorer, lambda kw: kw.get("past_key_values") is not None, lambda: RuntimeError("cache bug"))
    samples = grpo(groups=1)
    with caplog.at_level(logging.WARNING, logger="rlreward"):
        got = scorer.score(samples)
    want = clean.score(samples)
    assert all(r.ok for r in got)
    assert max(abs(a.score - b.score) for a, b in zip(got, want)) <= 1e-5
    assert scorer.engine_stats()["shared_path_failures"] >= 1
    assert any("shared-prefix pass failed" in r.getMessage() for r in caplog.records)
