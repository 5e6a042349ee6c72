"""Bradley-Terry training of the tiny checkpoint, so that the demo scores like a reward model.

A random tiny checkpoint (``rlreward make-tiny``) ranks answers at chance. :func:`train_tiny` teaches
it one visual skill on a generated preference set: a picture of one coloured shape, a question about
its colour, its shape or both, the true answer as *chosen* and a wrong one as *rejected*
(:func:`shapes_pairs`; every colour and shape is chosen as often as rejected, so text alone sits at
50%). Draw pictures with :func:`draw_shape` and ask :data:`QUESTIONS`: that is what it learned.

Training goes through the real scoring path (:meth:`Scorer.prepare`,
:func:`rlreward.engine.batching.collate`, and :func:`reward_forward`, which is :meth:`Scorer.forward`
with gradients), with the Skywork-VL-Reward report's loss ``-log sigmoid(r_chosen - r_rejected)``
and its frozen vision transformer (the projector, the language model and the head learn).

Contract: the result is saved where it came from (``model.safetensors`` as a
``Qwen2_5_VLForConditionalGeneration`` checkpoint, ``lm_head`` kept, and ``value_head.safetensors``),
so :meth:`Scorer.from_pretrained` reads it and reproduces the held-out accuracy. Deterministic for a
given ``seed`` on a given machine (same thread count).

>>> from rlreward.offline.tiny import make_tiny                                     # doctest: +SKIP
>>> result = train_tiny(make_tiny("/tmp/tiny-trained"))                      # doctest: +SKIP
>>> result.heldout_accuracy_before, result.heldout_accuracy_after            # doctest: +SKIP
(0.49, 0.98)
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rlreward.offline.eval import Pair, outcome_of
from rlreward.offline.synthetic import png_bytes

if TYPE_CHECKING:  # torch stays out of module import
    import torch

    from rlreward.engine.batching import Batch
    from rlreward.engine.head import ValueHead

log = logging.getLogger("rlreward")

#: name → RGB; names are words the tiny tokenizer knows.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 170, 40),
    "blue": (30, 60, 220),
    "yellow": (235, 215, 20),
    "purple": (140, 40, 170),
    "orange": (245, 140, 20),
    "black": (15, 15, 15),
}
SHAPES = ("circle", "square", "triangle")
#: Held-out pairs use this seed offset, so they never repeat a training picture.
HELDOUT_SEED_OFFSET = 1_000_003


# -- the generated preference set ---------------------------------------------------------------------
def draw_shape(shape: str, colour: str, rng: random.Random, size: int = 56):
    """One big ``shape`` in ``colour``, near the centre, on a light random background.

    Big and centred on purpose: each of the 4 visual tokens of a 56x56 picture then sees one corner,
    and corners are what tell a circle, a square and a triangle apart.
    """
    from PIL import Image, ImageDraw

    bg = tuple(rng.randint(200, 255) for _ in range(3))
    img = Image.new("RGB", (size, size), bg)
    d = ImageDraw.Draw(img)
    side = rng.randint(size * 7 // 10, size * 9 // 10)
    slack = size - side
    x0, y0 = rng.randint(slack // 4, slack - slack // 4), rng.randint(slack // 4, slack - slack // 4)
    box = (x0, y0, x0 + side, y0 + side)
    fill = tuple(max(0, min(255, c + rng.randint(-20, 20))) for c in COLOURS[colour])
    if shape == "circle":
        d.ellipse(box, fill=fill)
    elif shape == "square":
        d.rectangle(box, fill=fill)
    elif shape == "triangle":
        d.polygon([(x0 + side / 2, y0), (x0, y0 + side), (x0 + side, y0 + side)], fill=fill)
    else:
        raise ValueError(f"unknown shape {shape!r}; use one of {SHAPES}")
    return img


#: The three questions of the generated set: category → (prompt, answer template).
QUESTIONS: dict[str, tuple[str, str]] = {
    "colour": ("What colour is the shape in the picture?", "The shape is {colour}."),
    "shape": ("What shape is in the picture?", "It is a {shape}."),
    "describe": (
        "What is in the picture? Answer with the colour and the shape.",
        "The picture shows a {colour} {shape}.",
    ),
}


def shapes_pairs(n: int, seed: int, *, image_size: int = 56, as_png: bool = False) -> list[Pair]:
    """``n`` preference pairs about generated pictures, a third on each question of :data:`QUESTIONS`.

    Each pair shows one shape (:func:`draw_shape`); ``chosen`` answers truly, ``rejected`` names a
    wrong colour (``colour``), a wrong shape (``shape``), or either or both (``describe``). Images are
    PIL images, or PNG bytes with ``as_png`` (for writing datasets). Same ``seed``, same pairs.
    """
    rng = random.Random(seed)
    colours = list(COLOURS)
    pairs: list[Pair] = []
    for i in range(n):
        shape, colour = rng.choice(SHAPES), rng.choice(colours)
        img = draw_shape(shape, colour, rng, image_size)
        cat = list(QUESTIONS)[i % len(QUESTIONS)]
        prompt, template = QUESTIONS[cat]
        wrong_colour = rng.choice([c for c in colours if c != colour])
        wrong_shape = rng.choice([s for s in SHAPES if s != shape])
        if cat == "colour":
            rejected = template.format(colour=wrong_colour)
        elif cat == "shape":
            rejected = template.format(shape=wrong_shape)
        else:
            which = rng.randrange(3)  # 0: colour wrong, 1: shape wrong, 2: both wrong
            rejected = template.format(
                colour=wrong_colour if which != 1 else colour, shape=wrong_shape if which != 0 else shape
            )
        pairs.append(
            Pair(
                id=f"shapes-{seed}-{i}",
                category=cat,
                prompt=prompt,
                images=[png_bytes(img) if as_png else img],
                chosen=template.format(colour=colour, shape=shape),
                rejected=rejected,
            )
        )
    return pairs


# -- the forward pass, with gradients -----------------------------------------------------------------
def reward_forward(backbone: Any, head: ValueHead, batch: Batch) -> torch.Tensor:
    """Scores [B] (fp32) of one collated batch, with autograd: the scorer's own forward pass,
    :func:`rlreward.engine.scorer.value_forward` (imported here so torch stays out of module import)."""
    from rlreward.engine.models.qwen_vl import value_forward

    return value_forward(backbone, head, batch)


def bradley_terry_loss(chosen: torch.Tensor, rejected: torch.Tensor) -> torch.Tensor:
    """Mean of ``-log sigmoid(r_chosen - r_rejected)`` (the Skywork-VL-Reward training loss)."""
    import torch.nn.functional as F

    return -F.logsigmoid(chosen - rejected).mean()


# -- training -----------------------------------------------------------------------------------------
@dataclass
class TrainResult:
    """What :func:`train_tiny` did. Accuracies are fractions of held-out pairs ranked right (ties wrong).

    ``heldout_accuracy_trained`` is measured on the trained weights in memory, ``heldout_accuracy_after``
    on the saved directory reloaded with :meth:`Scorer.from_pretrained`; they are equal when the save
    round trip is faithful.
    """

    model_dir: str
    seed: int
    steps: int
    train_pairs: int
    heldout_pairs: int
    seconds: float
    loss_first: float
    loss_last: float
    heldout_accuracy_before: float
    heldout_accuracy_trained: float
    heldout_accuracy_after: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def pairwise_accuracy(scorer: Any, pairs: Sequence[Pair]) -> float:
    """Fraction of ``pairs`` whose chosen answer ``scorer`` ranks above the rejected one, by the rules
    of ``rlreward eval`` (ties and errors are wrong)."""
    from rlreward.offline.eval import score_pairs

    outcomes = score_pairs(pairs, scorer)
    return sum(o.correct for o in outcomes) / max(1, len(outcomes))


def _prepare_pairs(scorer: Any, pairs: Sequence[Pair]) -> list[Any]:
    """[chosen_0, rejected_0, chosen_1, ...] as PreparedSample, through the scorer's own prepare()."""
    from rlreward.engine.preprocess import PreparedSample

    out = []
    for pair in pairs:
        for sample in pair.samples():
            p = scorer.prepare(sample)
            if not isinstance(p, PreparedSample):
                raise RuntimeError(f"generated pair {pair.id} cannot be scored: {p.error}")
            out.append(p)
    return out


def _accuracy_prepared(scorer: Any, pairs: Sequence[Pair], prepared: Sequence[Any]) -> float:
    results = scorer.score_prepared(prepared)
    return sum(outcome_of(p, results[2 * i], results[2 * i + 1]).correct for i, p in enumerate(pairs)) / len(
        pairs
    )


def train_tiny(
    model_dir: str | Path,
    *,
    seed: int = 0,
    steps: int = 400,
    train_pairs: int = 2000,
    heldout_pairs: int = 200,
    batch_pairs: int = 16,
    lr: float = 1e-3,
    freeze_vision: bool = True,
    progress: Callable[[int, float], None] | None = None,
) -> TrainResult:
    """Train the checkpoint in ``model_dir`` in place on :func:`shapes_pairs` and save it there.

    ``steps`` AdamW steps of ``batch_pairs`` pairs each (cycling through ``train_pairs`` pairs drawn
    from ``seed``, reshuffled each epoch), cosine learning-rate decay from ``lr``, gradient norm
    clipped at 1. ``freeze_vision`` keeps the vision transformer fixed (the projector still learns),
    as Skywork-VL-Reward did. Held-out pairs come from another seed and are scored with the real
    :class:`Scorer` path before training, after it (in memory) and after reloading the saved
    directory. ``progress(step, loss)`` is called after every step. Runs on one CPU thread and
    restores the thread count after; deterministic for a ``seed``.
    """
    import torch

    # One thread: at this size, intra-op threads cost more than they give (4-8x slower steps on a
    # shared 2-core machine), and one thread makes the run reproducible across machines' core counts.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _train(
            str(model_dir), seed, steps, train_pairs, heldout_pairs, batch_pairs, lr, freeze_vision, progress
        )
    finally:
        torch.set_num_threads(threads)


def _train(
    model_dir: str,
    seed: int,
    steps: int,
    train_pairs: int,
    heldout_pairs: int,
    batch_pairs: int,
    lr: float,
    freeze_vision: bool,
    progress: Callable[[int, float], None] | None,
) -> TrainResult:
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from rlreward.engine.batching import collate
    from rlreward.engine.config import ScorerConfig
    from rlreward.engine.head import load_value_head, save_value_head
    from rlreward.engine.scorer import Scorer

    t0 = time.perf_counter()
    torch.manual_seed(seed)
    full = AutoModelForImageTextToText.from_pretrained(model_dir, dtype=torch.float32)
    backbone = full.model
    head = load_value_head(
        Path(model_dir) / "value_head.safetensors", backbone.config.get_text_config().hidden_size
    )
    config = ScorerConfig(model=model_dir, dtype="float32", device="cpu")
    # The scorer shares the weights being trained: its prepare() makes the training inputs and its
    # forward() measures the held-out accuracy, exactly as serving will.
    scorer = Scorer(config, backbone, AutoProcessor.from_pretrained(model_dir), head)
    head = scorer.head

    heldout = shapes_pairs(heldout_pairs, seed + HELDOUT_SEED_OFFSET)
    heldout_prepared = _prepare_pairs(scorer, heldout)
    backbone.eval()
    before = _accuracy_prepared(scorer, heldout, heldout_prepared)

    flat = _prepare_pairs(scorer, shapes_pairs(train_pairs, seed))
    train = [(flat[2 * i], flat[2 * i + 1]) for i in range(train_pairs)]
    pad = scorer.preprocessor.pad_token_id
    backbone.requires_grad_(True)
    if freeze_vision:
        backbone.visual.requires_grad_(False)
        backbone.visual.merger.requires_grad_(True)
    head.requires_grad_(True)
    backbone.train()
    params = [p for p in backbone.parameters() if p.requires_grad] + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps))
    )
    order_rng = random.Random(seed)
    order: list[int] = []
    losses: list[float] = []
    for step in range(steps):
        if len(order) < batch_pairs:
            epoch = list(range(len(train)))
            order_rng.shuffle(epoch)
            order += epoch
        idx, order = order[:batch_pairs], order[batch_pairs:]
        batch = collate([train[i][0] for i in idx] + [train[i][1] for i in idx], pad)
        scores = reward_forward(backbone, head, batch)
        loss = bradley_terry_loss(scores[: len(idx)], scores[len(idx) :])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        if progress:
            progress(step + 1, losses[-1])

    full.requires_grad_(False)
    head.requires_grad_(False)
    backbone.eval()
    trained = _accuracy_prepared(scorer, heldout, heldout_prepared)
    # The backbone goes back as the full checkpoint class (lm_head untouched) so the normal loader
    # reads it; the head as the layout Skywork ships.
    full.save_pretrained(model_dir, safe_serialization=True)
    save_value_head(Path(model_dir) / "value_head.safetensors", head.summary.weight, head.summary.bias)
    del full, backbone, head, scorer
    after = pairwise_accuracy(Scorer.from_pretrained(model_dir, dtype="float32", device="cpu"), heldout)
    result = TrainResult(
        model_dir=model_dir,
        seed=seed,
        steps=steps,
        train_pairs=train_pairs,
        heldout_pairs=heldout_pairs,
        seconds=round(time.perf_counter() - t0, 2),
        loss_first=losses[0] if losses else float("nan"),
        loss_last=sum(losses[-20:]) / max(1, len(losses[-20:])),
        heldout_accuracy_before=before,
        heldout_accuracy_trained=trained,
        heldout_accuracy_after=after,
    )
    log.info("trained %s: %s", model_dir, result.to_dict())
    return result
