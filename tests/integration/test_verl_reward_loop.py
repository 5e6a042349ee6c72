"""verl 0.9.1's reward loop scores through rlreward on the real Ray Serve app.

What runs from verl: ``RLHFDataset`` + ``collate_fn`` (rows from a parquet file, ``raw_prompt`` built
with the PIL images in place), Hydra ``compose`` of verl's own ``ppo_trainer`` config with the
overrides shipped in ``examples/verl/*.overrides``, and ``RewardLoopWorker`` as a Ray actor (what
verl's ``RewardLoopManager`` starts): its ``load_reward_manager`` loads our ``RLRewardManager`` or
the ``naive`` manager with our ``compute_score``, and ``compute_score.remote(data)`` →
``run_single``. The per-sample ``DataProto`` is built the way the agent loop's ``_compute_score``
builds it, and ``reward_extra_info`` is stacked the way its ``_postprocess`` does. Not run: rollout
and training (they need GPUs); the reward path does not depend on them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rlreward.client import RewardClient
from tests.conftest import noise_png

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "verl"
QUESTION = "Find x."
ROWS = [  # (image seed, response, ground truth)
    (40, "#### 4", "4"),
    (41, "#### 5", "4"),
    # a response over the server's text limit (limits.max_text_chars, 131,072 by default): rejected
    (41, "x " * 70_000, "4"),
]


def _overrides(name: str, url: str, tiny_model_dir: str, extra: list[str] = ()) -> list[str]:
    lines = (EXAMPLES / name).read_text().splitlines()
    out = [ln.strip().replace("@RLREWARD_URL@", url) for ln in lines if ln.strip() and not ln.startswith("#")]
    return [*out, f"actor_rollout_ref.model.path={tiny_model_dir}", *extra]


def _compose(overrides: list[str]):
    import os

    import verl
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(
        config_dir=os.path.join(os.path.dirname(verl.__file__), "trainer/config"), version_base=None
    ):
        return compose(config_name="ppo_trainer", overrides=overrides)


@pytest.fixture(scope="module")
def streamed(tmp_path_factory, tiny_model_dir):
    """Per-sample DataProtos as the agent loop sends them to RewardLoopWorker.compute_score."""
    import pandas as pd
    import torch
    from omegaconf import OmegaConf
    from tensordict import TensorDict
    from transformers import AutoProcessor
    from verl import DataProto
    from verl.utils.dataset.rl_dataset import RLHFDataset, collate_fn

    tmp = tmp_path_factory.mktemp("verl")
    rows = []
    for i, (seed, _, truth) in enumerate(ROWS):
        image = {"bytes": noise_png(seed), "path": None}
        rows.append(
            {
                "data_source": "openai/gsm8k",
                "prompt": [{"role": "user", "content": f"<image>{QUESTION}"}],
                "images": [image],
                "reward_model": {"style": "rule", "ground_truth": truth},
                "extra_info": {"index": i, "prompt": f"<image>{QUESTION}", "images": [image]},
            }
        )
    pd.DataFrame(rows).to_parquet(tmp / "rows.parquet")
    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    dataset = RLHFDataset(
        data_files=str(tmp / "rows.parquet"),
        tokenizer=processor.tokenizer,
        processor=processor,
        config=OmegaConf.create(
            {"max_prompt_length": 4096, "filter_overlong_prompts": False, "cache_dir": str(tmp / "cache")}
        ),
    )
    batch = DataProto.from_single_dict(collate_fn([dataset[i] for i in range(len(dataset))]))
    tok = processor.tokenizer
    out = []
    for i, (_, response, _) in enumerate(ROWS):
        kwargs = {k: v[i] for k, v in batch.non_tensor_batch.items()}  # one trajectory's row
        prompt_ids = torch.tensor(
            tok(f"<|im_start|>user\n{QUESTION}<|im_end|>\n<|im_start|>assistant\n")["input_ids"]
        )
        response_ids = torch.tensor(tok(response + "<|im_end|>")["input_ids"])
        ids = torch.cat([prompt_ids, response_ids])
        tensors = TensorDict(
            {
                "prompts": prompt_ids[None],
                "responses": response_ids[None],
                "input_ids": ids[None],
                "attention_mask": torch.ones_like(ids)[None],
                "position_ids": torch.arange(len(ids))[None],
            },
            batch_size=1,
        )
        non_tensor = {
            **{k: np.array([v]) for k, v in kwargs.items()},
            "__num_turns__": np.array([2]),
            "tool_extra_fields": np.array([{}], dtype=object),
            "prompt_len": np.array([len(prompt_ids)]),
            "response_len": np.array([len(response_ids)]),
        }
        out.append(DataProto(batch=tensors, non_tensor_batch=non_tensor))
    return out


def _expected(url: str) -> list[float]:
    samples = [
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "image", "image": noise_png(seed)},
                        {"type": "text", "text": QUESTION},
                    ],
                },
                {"role": "assistant", "content": response},
            ]
        }
        for seed, response, _ in ROWS[:2]
    ]
    return [r.score for r in RewardClient(url=url).score(samples)]


def _stack(infos: list[dict]) -> dict[str, np.ndarray]:
    # verl agent_loop._postprocess: keys of sample 0, one np.array per key (KeyError if one is missing).
    return {key: np.array([info[key] for info in infos]) for key in infos[0]}


def _score_in_worker(cfg, data):
    import ray
    from verl.experimental.reward_loop.reward_loop import RewardLoopWorker

    worker = ray.remote(RewardLoopWorker).options(num_cpus=0.01).remote(cfg, None)
    try:
        return ray.get([worker.compute_score.remote(d) for d in data], timeout=300)
    finally:
        ray.kill(worker)


@pytest.mark.parametrize("form", ["manager", "function"])
def test_reward_loop_worker_scores_images_through_rlreward(serve_app, tiny_model_dir, streamed, form):
    name = {"manager": "rlreward_manager.overrides", "function": "rlreward_function.overrides"}[form]
    cfg = _compose(_overrides(name, serve_app.url, tiny_model_dir))
    results = _score_in_worker(cfg, streamed)

    scores = [r["reward_score"] for r in results]
    infos = [r["reward_extra_info"] for r in results]
    model = _expected(serve_app.url)
    stacked = _stack(infos)
    assert set(stacked) == set(infos[0]) and all(set(i) == set(infos[0]) for i in infos)
    assert stacked["rm_error"].tolist() == [0.0, 0.0, 1.0]
    assert stacked["rm_score"][:2].tolist() == pytest.approx(model, abs=1e-5)  # the images reached the server
    assert stacked["error"][2].startswith("too_many_tokens")
    if form == "manager":  # + verl's own gsm8k rule (weight 1 in the shipped overrides)
        assert stacked["rule"].tolist() == [1.0, 0.0, 0.0]
        assert scores == pytest.approx([model[0] + 1.0, model[1], 0.0], abs=1e-5)
    else:
        assert scores == pytest.approx([*model, 0.0], abs=1e-5)
