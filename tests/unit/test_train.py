"""Bradley-Terry training of the tiny checkpoint: it learns, it saves for the normal loader, it is
the scoring forward, and it is deterministic."""

from __future__ import annotations

import json
import math
import shutil

import pytest
import torch

from rlreward.offline.eval import score_pairs
from rlreward.offline.train import (
    COLOURS,
    HELDOUT_SEED_OFFSET,
    QUESTIONS,
    SHAPES,
    bradley_terry_loss,
    reward_forward,
    shapes_pairs,
    train_tiny,
)

# A short run (about a quarter of `make-tiny --train`) is enough to beat chance clearly.
QUICK = dict(steps=150, train_pairs=600, heldout_pairs=100)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_model_dir):
    out = tmp_path_factory.mktemp("trained") / "model"
    shutil.copytree(tiny_model_dir, out)
    return out, train_tiny(out, seed=0, **QUICK)


def test_trained_tiny_model_beats_the_untrained_one_on_heldout_pairs(trained):
    _, result = trained
    assert result.heldout_accuracy_before < 0.65  # chance: the pairs cannot be ranked from text
    assert result.heldout_accuracy_after >= 0.75
    assert result.heldout_accuracy_after >= result.heldout_accuracy_before + 0.2
    assert result.loss_last < result.loss_first


def test_the_normal_loader_reproduces_the_trained_accuracy(trained, scorer):
    from rlreward.engine.scorer import Scorer

    out, result = trained
    heldout = shapes_pairs(QUICK["heldout_pairs"], HELDOUT_SEED_OFFSET)
    reloaded = Scorer.from_pretrained(str(out), dtype="float32", device="cpu")
    acc = sum(o.correct for o in score_pairs(heldout, reloaded)) / len(heldout)
    assert acc == result.heldout_accuracy_trained == result.heldout_accuracy_after
    # The untrained session checkpoint (same seed) is what "before" measured.
    assert (
        sum(o.correct for o in score_pairs(heldout, scorer)) / len(heldout) == result.heldout_accuracy_before
    )
    # Saved as the real checkpoint is laid out: a Qwen2.5-VL backbone and the two head tensors.
    from safetensors import safe_open

    with safe_open(str(out / "value_head.safetensors"), framework="pt") as f:
        assert set(f.keys()) == {"v_head.summary.weight", "v_head.summary.bias"}
    assert json.loads((out / "config.json").read_text())["architectures"] == [
        "Qwen2_5_VLForConditionalGeneration"
    ]


def test_training_forward_is_the_scoring_forward(scorer):
    from rlreward.engine.batching import collate

    pairs = shapes_pairs(3, seed=7)
    samples = [s for p in pairs for s in p.samples()] + [{"prompt": "text only?", "response": "yes"}]
    prepared = [scorer.prepare(s) for s in samples]
    batch = collate(prepared, scorer.preprocessor.pad_token_id)
    with torch.no_grad():
        ours = reward_forward(scorer.backbone, scorer.head, batch)
    torch.testing.assert_close(ours, scorer.forward(batch), rtol=0, atol=1e-6)
    one_by_one = torch.tensor([r.score for r in scorer.score(samples)])
    torch.testing.assert_close(ours, one_by_one, rtol=1e-5, atol=1e-5)


def test_training_is_deterministic_for_a_seed(tmp_path, tiny_model_dir):
    from safetensors.torch import load_file

    runs = []
    for name in ("a", "b"):
        d = tmp_path / name
        shutil.copytree(tiny_model_dir, d)
        train_tiny(d, seed=3, steps=3, train_pairs=8, heldout_pairs=4)
        runs.append(
            {**load_file(str(d / "model.safetensors")), **load_file(str(d / "value_head.safetensors"))}
        )
    original = load_file(f"{tiny_model_dir}/value_head.safetensors")
    assert not torch.equal(runs[0]["v_head.summary.weight"], original["v_head.summary.weight"])  # it trained
    assert runs[0].keys() == runs[1].keys()
    for k in runs[0]:
        assert torch.equal(runs[0][k], runs[1][k]), k


def test_bradley_terry_loss_matches_its_formula():
    loss = bradley_terry_loss(torch.tensor([2.0, 0.0]), torch.tensor([0.0, 0.0]))
    expected = (math.log(1 + math.exp(-2.0)) + math.log(2.0)) / 2  # -log sigmoid(d), averaged
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_generated_pairs_need_the_picture_and_are_seeded():
    pairs = shapes_pairs(1200, seed=11)
    again = shapes_pairs(1200, seed=11)
    assert [(p.prompt, p.chosen, p.rejected) for p in pairs] == [
        (p.prompt, p.chosen, p.rejected) for p in again
    ]
    assert pairs[5].images[0].tobytes() == again[5].images[0].tobytes()
    assert [p.category for p in pairs[:3]] == list(QUESTIONS)
    # Every answer text is chosen in some pairs and rejected in others: text alone cannot rank them.
    for cat, (prompt, template) in QUESTIONS.items():
        of_cat = [p for p in pairs if p.category == cat]
        assert {p.prompt for p in of_cat} == {prompt}
        expected = {template.format(colour=c, shape=s) for c in COLOURS for s in SHAPES}
        assert {p.chosen for p in of_cat} == {p.rejected for p in of_cat} == expected
        assert all(p.chosen != p.rejected for p in of_cat)


def test_make_tiny_train_flag_trains_what_it_wrote(tmp_path, monkeypatch, capsys):
    import rlreward.offline.train
    from rlreward.commands.main import main

    calls = []

    def fake_train(model_dir, *, seed, progress):
        calls.append((str(model_dir), seed))
        return rlreward.offline.train.TrainResult(str(model_dir), seed, 1, 1, 1, 0.1, 0.7, 0.6, 0.5, 0.9, 0.9)

    monkeypatch.setattr(rlreward.offline.train, "train_tiny", fake_train)
    assert main(["make-tiny", str(tmp_path / "m"), "--seed", "2", "--train"]) == 0
    assert calls == [(str(tmp_path / "m"), 2)]
    assert "50.0% -> 90.0%" in capsys.readouterr().out
