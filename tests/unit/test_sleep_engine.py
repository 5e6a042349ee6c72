"""Scorer.sleep / Scorer.wake (rlreward.engine.sleep) in process: the state machine, the weights
really released at level 2, bitwise-equal scores after a wake of the same batch, the model card's
recipe after a level-2 reload, clear errors."""

from __future__ import annotations

import shutil

import pytest

from tests.conftest import data_uri

SAMPLES = [
    {"prompt": "What colour is the square?", "response": "Red.", "images": [data_uri("red")]},
    {"prompt": "2+2?", "response": "4"},
    {"prompt": "Name a prime.", "response": "Seven is prime, and so is eleven."},
]


@pytest.fixture(scope="module")
def own_scorer(tiny_model_dir):
    """A scorer of this module's own (the session one must not be put to sleep)."""
    from rlreward.engine.scorer import Scorer

    return Scorer.from_pretrained(tiny_model_dir, dtype="float32", device="cpu")


def _scores(scorer) -> list[float]:
    results = scorer.score(SAMPLES)
    assert all(r.ok for r in results), results
    return [r.score for r in results]


@pytest.mark.parametrize("level", [1, 2])
def test_scores_after_wake_are_bitwise_those_before(own_scorer, level):
    before = _scores(own_scorer)
    weights = own_scorer.weight_bytes()
    assert weights > 0
    own_scorer.sleep(level)
    assert own_scorer.sleep_level == level
    # Level 2 drops every parameter; level 1 on a CPU keeps them in host memory.
    assert own_scorer.weight_bytes() == (0 if level == 2 else weights)
    own_scorer.wake()
    assert own_scorer.sleep_level == 0
    assert own_scorer.weight_bytes() == weights
    # Same batch, same process, same shapes: bitwise equality holds by construction.
    assert _scores(own_scorer) == before


def test_scoring_while_asleep_wakes_and_matches_the_card_recipe(own_scorer, tiny_model_dir):
    from tests.recipe import CardRecipe

    own_scorer.sleep(2)
    (result,) = own_scorer.score([SAMPLES[2]])
    assert own_scorer.sleep_level == 0
    messages = [
        {"role": "user", "content": [{"type": "text", "text": SAMPLES[2]["prompt"]}]},
        {"role": "assistant", "content": [{"type": "text", "text": SAMPLES[2]["response"]}]},
    ]
    assert result.score == pytest.approx(CardRecipe(tiny_model_dir).score(messages), abs=1e-5)


def test_level_1_then_2_then_wake(own_scorer):
    before = _scores(own_scorer)
    own_scorer.sleep(1)
    own_scorer.sleep(2)  # deepen
    assert own_scorer.sleep_level == 2 and own_scorer.weight_bytes() == 0
    own_scorer.sleep(1)  # lighter than the current level: nothing to do
    assert own_scorer.sleep_level == 2
    own_scorer.wake()
    assert _scores(own_scorer) == before


@pytest.mark.parametrize("level", [0, 3, "1", True, None])
def test_bad_level_is_refused(own_scorer, level):
    with pytest.raises(ValueError, match="sleep level must be 1 or 2"):
        own_scorer.sleep(level)
    assert own_scorer.sleep_level == 0


def test_wake_fails_clearly_when_the_checkpoint_vanished(tiny_model_dir, tmp_path):
    from rlreward.engine.models import ModelLoadError
    from rlreward.engine.scorer import Scorer

    copy = tmp_path / "ckpt"
    shutil.copytree(tiny_model_dir, copy)
    scorer = Scorer.from_pretrained(str(copy), dtype="float32", device="cpu")
    scorer.sleep(2)
    (copy / "model.safetensors").unlink()
    with pytest.raises(ModelLoadError, match="cannot load the backbone"):
        scorer.wake()
    assert scorer.sleep_level == 2  # still asleep: the caller (a replica) marks itself unhealthy
