"""Every supported reward-model family scores as its own reference recipe does, in every batch layout.

The references are written here literally, never through rlreward's helpers, at batch size 1, fp32:

* ``*ForSequenceClassification``: ``AutoModelForSequenceClassification.from_pretrained(dir)(**
  tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True, return_tensors="pt"))
  .logits[0][0]`` (vision-language: the processor's ``apply_chat_template`` with the images);
* Qwen2-VL / Qwen3-VL + value head: the model card (``process_vision_info`` — patch 16 and
  ``do_resize=False`` for Qwen3-VL — the processor, a full forward with ``output_hidden_states``,
  an fp32 Linear on ``hidden_states[-1]`` at the last token);
* OpenRLHF: ``RewardModel.forward`` of ``openrlhf.models.model`` (base ``AutoModel``, position ids
  from the attention mask, ``score`` at ``eos_indices``, ``(r - mean) / std``), copied because
  openrlhf does not import here (no flash_attn).
"""

from __future__ import annotations

import functools
import io
import json
import shutil

import pytest
import torch
from PIL import Image

from rlreward.engine.config import ScorerConfig
from rlreward.engine.models import UnsupportedModelError
from rlreward.engine.scorer import Scorer
from rlreward.offline.tiny_families import make_family
from tests.conftest import noise_png

TEXT = ("llama-seqcls", "qwen3-seqcls", "openrlhf")
VISION = ("qwen2-vl", "qwen3-vl", "qwen3.5-seqcls", "gemma3-seqcls")
FAMILIES = TEXT + VISION


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("families")
    return {f: str(make_family(root / f, f, seed=3)) for f in FAMILIES}


@pytest.fixture(scope="module")
def scorers(dirs):
    return {f: Scorer.from_pretrained(d, device="cpu", dtype="float32") for f, d in dirs.items()}


def _pil(seed: int, size=(84, 56)) -> Image.Image:
    return Image.open(io.BytesIO(noise_png(seed, size))).convert("RGB")


def _text_cases() -> dict[str, list[dict]]:
    return {
        "single": [
            {"role": "user", "content": "what colour is the sky on a clear day?"},
            {"role": "assistant", "content": "blue"},
        ],
        "system": [
            {"role": "system", "content": "You answer in one word."},
            {"role": "user", "content": "name a shape with three sides"},
            {"role": "assistant", "content": "triangle, because it has three corners"},
        ],
        "multi_turn": [
            {"role": "user", "content": "count to three"},
            {"role": "assistant", "content": "one two three"},
            {"role": "user", "content": "now backwards"},
            {"role": "assistant", "content": "three two one"},
        ],
    }


def _image_cases() -> dict[str, list[dict]]:
    return {
        "image": [
            {
                "role": "user",
                "content": [{"type": "image", "image": _pil(1)}, {"type": "text", "text": "what is it?"}],
            },
            {"role": "assistant", "content": "a noisy square"},
        ],
        "two_images_system": [
            {"role": "system", "content": [{"type": "text", "text": "Look closely."}]},
            {
                "role": "user",
                "content": [
                    {"type": "image", "image": _pil(2, (112, 84))},
                    {"type": "image", "image": _pil(3)},
                    {"type": "text", "text": "which is larger?"},
                ],
            },
            {"role": "assistant", "content": "the first"},
        ],
    }


def _cases(family: str) -> dict[str, list[dict]]:
    return {**_text_cases(), **(_image_cases() if family in VISION else {})}


# -- the references, literally -------------------------------------------------------------------
@functools.cache
def _load(kind: str, d: str):
    """``kind.from_pretrained(d)`` once per test module (fp32, eval)."""
    import transformers

    cls = getattr(transformers, kind)
    if kind.startswith("AutoModel"):
        return cls.from_pretrained(d, dtype=torch.float32).eval()
    return cls.from_pretrained(d)


def _seqcls_reference(d: str, messages: list[dict], vision: bool) -> float:
    model = _load("AutoModelForSequenceClassification", d)
    render = _load("AutoProcessor", d) if vision else _load("AutoTokenizer", d)
    if vision:  # the processors' templates take content lists
        messages = [
            {**m, "content": [{"type": "text", "text": m["content"]}]} if isinstance(m["content"], str) else m
            for m in messages
        ]
    inputs = render.apply_chat_template(messages, tokenize=True, return_dict=True, return_tensors="pt")
    with torch.no_grad():
        return model(**inputs).logits[0][0].item()


def _value_head_reference(d: str, messages: list[dict], qwen3: bool) -> float:
    from qwen_vl_utils import process_vision_info
    from safetensors.torch import load_file

    model = _load("AutoModelForImageTextToText", d)
    processor = _load("AutoProcessor", d)
    head = load_file(f"{d}/value_head.safetensors")
    linear = torch.nn.Linear(head["v_head.summary.weight"].shape[1], 1)
    linear.load_state_dict({"weight": head["v_head.summary.weight"], "bias": head["v_head.summary.bias"]})
    text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)
    if qwen3:
        images, videos = process_vision_info(messages, image_patch_size=16)
        inputs = processor(text=[text], images=images, videos=videos, do_resize=False, return_tensors="pt")
    else:
        images, videos = process_vision_info(messages)
        inputs = processor(text=[text], images=images, videos=videos, padding=True, return_tensors="pt")
    with torch.no_grad():
        out = model(**inputs, output_hidden_states=True, use_cache=False, return_dict=True)
        idx = inputs["attention_mask"].sum(-1) - 1
        return linear(out.hidden_states[-1][0, idx[0]].float()).item()


def _openrlhf_reference(d: str, messages: list[dict]) -> float:
    from safetensors.torch import load_file

    cfg = json.loads(open(f"{d}/config.json").read())
    base = _load("AutoModel", d)
    score = torch.nn.Linear(base.config.hidden_size, 1, bias=False)
    score.weight.data.copy_(load_file(f"{d}/model.safetensors")["score.weight"])
    tok = _load("AutoTokenizer", d)
    enc = tok.apply_chat_template(messages, tokenize=True, return_dict=True, return_tensors="pt")
    attention_mask = enc["attention_mask"]
    eos_indices = attention_mask.size(1) - 1 - attention_mask.long().fliplr().argmax(dim=1, keepdim=True)
    position_ids = attention_mask.long().cumsum(-1) - 1
    position_ids.masked_fill_(attention_mask == 0, 1)
    with torch.no_grad():
        outputs = base(enc["input_ids"], attention_mask=attention_mask, position_ids=position_ids)
        values = score(outputs["last_hidden_state"]).squeeze(-1)
        reward = values.gather(dim=1, index=eos_indices).squeeze(1)
    assert cfg["normalize_reward"]
    return ((reward - cfg["mean"]) / cfg["std"]).item()


def reference(family: str, d: str, messages: list[dict]) -> float:
    if family == "openrlhf":
        return _openrlhf_reference(d, messages)
    if family in ("qwen2-vl", "qwen3-vl"):
        return _value_head_reference(d, messages, qwen3=family == "qwen3-vl")
    return _seqcls_reference(d, messages, vision=family in VISION)


# -- tests ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("family", FAMILIES)
def test_scores_match_the_family_reference_at_batch_size_one(family, dirs, scorers):
    scorer = scorers[family]
    cases = _cases(family)
    ours = scorer.score([{"messages": m} for m in cases.values()])
    for (name, messages), got in zip(cases.items(), ours):
        assert got.error is None, (name, got.error)
        want = reference(family, dirs[family], messages)
        assert abs(got.score - want) <= 1e-5, (family, name, got.score, want)
    assert len({round(r.score, 6) for r in ours}) == len(ours)  # the inputs matter


@pytest.mark.parametrize("family", FAMILIES)
def test_batch_invariance(family, scorers):
    """One batch (both padding sides where the family allows it) = one sample at a time."""
    scorer = scorers[family]
    samples = [{"messages": m} for m in _cases(family).values()] * 2
    alone = [scorer.score([s])[0].score for s in samples]
    together = [r.score for r in scorer.score(samples)]
    assert together == pytest.approx(alone, abs=1e-5)
    if scorer.config.batching.padding_side == "right" and not getattr(
        scorer.family, "right_padding_only", False
    ):
        left = Scorer(
            scorer.requested_config.model_copy(
                update={
                    "batching": scorer.requested_config.batching.model_copy(update={"padding_side": "left"})
                }
            ),
            scorer.backbone,
            scorer.processor,
            scorer.head,
            family=scorer.family,
        )
        assert [r.score for r in left.score(samples)] == pytest.approx(alone, abs=1e-5)


def test_pad_equal_to_eos_pools_where_the_model_does(dirs, scorers):
    """Llama-3 under TRL: pad == eos == <|eot_id|>, which ends every rendering. The model pools at
    the rightmost non-pad token; a batch padded with that id must pool there too, in every row."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(dirs["llama-seqcls"])
    assert tok.pad_token_id == tok.eos_token_id
    messages = _text_cases()["single"]
    assert (
        tok.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"][-1]
        == tok.pad_token_id
    )
    short = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    got = scorers["llama-seqcls"].score([{"messages": short}, {"messages": messages}])
    assert got[0].score == pytest.approx(reference("llama-seqcls", dirs["llama-seqcls"], short), abs=1e-5)
    assert got[1].score == pytest.approx(reference("llama-seqcls", dirs["llama-seqcls"], messages), abs=1e-5)


@pytest.mark.parametrize("family", ["llama-seqcls", "qwen3-seqcls", "openrlhf"])
def test_prefix_sharing_on_text_families(family, dirs, scorers):
    """A GRPO group shares its prompt: scored once through the KV cache, equal to the reference."""
    scorer = scorers[family]
    assert scorer.config.batching.prefix_sharing
    prompt = "describe the picture of the red car and the blue house in the sun " * 6
    answers = ["a red car", "the house is blue and there is a tree", "no", "a car near a house under the sun"]
    samples = [{"prompt": prompt, "response": a} for a in answers]
    prepared = [scorer.prepare(s) for s in samples]
    assert any(fp.shared for fp in scorer.plan(prepared))
    got = [r.score for r in scorer.score(samples)]
    want = [
        reference(
            family, dirs[family], [{"role": "user", "content": prompt}, {"role": "assistant", "content": a}]
        )
        for a in answers
    ]
    assert got == pytest.approx(want, abs=1e-5)


@pytest.mark.parametrize("family", ["qwen3-vl", "qwen3.5-seqcls", "gemma3-seqcls"])
def test_families_without_kv_reuse_report_sharing_off(family, scorers):
    eff = scorers[family].effective_settings()
    assert eff["batching"]["prefix_sharing"] is False
    assert eff["batching"]["prefix_sharing_off_because"]
    assert eff["model"]["kv_prefix_reuse"] is False


def test_effective_settings_name_family_and_recipe(scorers):
    eff = scorers["openrlhf"].effective_settings()["model"]
    assert (
        eff["family"] == "openrlhf-reward"
        and "eos_indices" in eff["pooling"] + eff["recipe"]
        or eff["pooling"]
    )
    assert eff["normalization"] == {"normalize_reward": True, "mean": 0.25, "std": 1.5}
    json.dumps(scorers["gemma3-seqcls"].info())  # /v1/models must serialise for every family
    assert scorers["llama-seqcls"].effective_settings()["model"]["family"] == "llama-seqcls"


def test_text_family_refuses_images_per_sample(scorers):
    bad = {"messages": _image_cases()["image"]}
    good = {"messages": _text_cases()["single"]}
    res = scorers["qwen3-seqcls"].score([bad, good])
    assert (
        res[0].error is not None
        and res[0].error.code == "bad_content"
        and "text only" in res[0].error.message
    )
    assert res[1].error is None


def test_qwen_resize_keys_are_refused_by_a_family_that_would_ignore_them(scorers):
    conv = _image_cases()["image"]
    keyed = [
        {**conv[0], "content": [{**conv[0]["content"][0], "max_pixels": 3136}, conv[0]["content"][1]]},
        conv[1],
    ]
    bad, good = scorers["gemma3-seqcls"].score([{"messages": keyed}, {"messages": conv}])
    assert bad.error is not None and bad.error.code == "bad_content" and "max_pixels" in bad.error.message
    assert good.error is None


def test_rendered_text_scores_like_its_conversation(scorers):
    from transformers import PreTrainedTokenizerBase

    scorer = scorers["qwen3-seqcls"]
    tok = scorer.processor
    assert isinstance(tok, PreTrainedTokenizerBase)
    messages = _text_cases()["system"]
    text = tok.apply_chat_template(messages, tokenize=False)
    a, b = scorer.score([{"messages": messages}, {"rendered_text": text, "add_special_tokens": False}])
    assert b.score == pytest.approx(a.score, abs=1e-5)


# -- refusals ------------------------------------------------------------------------------------
def _copy(dirs, family, tmp_path, edit=None, drop=()):
    out = tmp_path / f"{family}-edited"
    shutil.copytree(dirs[family], out)
    for name in drop:
        (out / name).unlink()
    if edit:
        path = out / "config.json"
        path.write_text(json.dumps(edit(json.loads(path.read_text()))))
    return str(out)


def _refused(model: str) -> str:
    with pytest.raises(UnsupportedModelError) as info:
        Scorer.from_config(ScorerConfig(model=model, device="cpu"))
    return str(info.value)


def test_refuses_num_labels_above_one(dirs, tmp_path):
    d = _copy(dirs, "qwen3-seqcls", tmp_path, edit=lambda c: {**c, "num_labels": 3, "id2label": None})
    msg = _refused(d)
    assert "num_labels=3" in msg and "Qwen3ForSequenceClassification" in msg


def test_refuses_a_checkpoint_without_head(dirs, tmp_path):
    msg = _refused(_copy(dirs, "qwen2-vl", tmp_path, drop=["value_head.safetensors"]))
    assert "no reward head" in msg and "Qwen2VLForConditionalGeneration" in msg and "Supported" in msg


def test_refuses_an_unknown_architecture(dirs, tmp_path):
    d = _copy(
        dirs,
        "qwen3-seqcls",
        tmp_path,
        edit=lambda c: {**c, "architectures": ["BertForMaskedLM"], "model_type": "bert"},
    )
    msg = _refused(d)
    assert "BertForMaskedLM" in msg and "Supported" in msg and "ForSequenceClassification" in msg


def test_refuses_an_openrlhf_critic(dirs, tmp_path):
    msg = _refused(_copy(dirs, "openrlhf", tmp_path, edit=lambda c: {**c, "architectures": ["CriticModel"]}))
    assert "critic" in msg


def test_refuses_a_seqcls_class_transformers_lacks(dirs, tmp_path):
    d = _copy(
        dirs,
        "qwen3-seqcls",
        tmp_path,
        edit=lambda c: {**c, "architectures": ["Qwen9ForSequenceClassification"]},
    )
    msg = _refused(d)
    assert "Qwen9ForSequenceClassification" in msg and "transformers" in msg


def test_bench_runs_a_text_family_and_its_systems_agree(dirs, tmp_path):
    from rlreward.commands.main import main

    out = tmp_path / "bench.json"
    args = ["bench", "--model", dirs["qwen3-seqcls"], "--workload", "text", "--samples", "8"]
    rc = main([*args, "--systems", "unshared,shared,reference", "--device", "cpu", "--json", str(out)])
    assert rc == 0
    report = json.loads(out.read_text())
    systems = report["systems"]
    assert systems["unshared"]["status"] == systems["shared"]["status"] == "ok"
    assert systems["shared"]["max_abs_diff_vs_reference"] <= 1e-5
    assert systems["reference"]["status"] == "skipped"
    assert report["effective"]["model"]["family"] == "qwen3-seqcls"
    assert all(s is not None for s in systems["shared"]["scores"])


def test_eval_runs_rewardbench_with_a_text_family(dirs, tmp_path):
    from rlreward.commands.main import main

    rows = [
        {"prompt": "What is 2+2?", "chosen": "4", "rejected": "5", "subset": "math-prm", "id": 1},
        {
            "prompt": "Name a colour",
            "chosen": "blue",
            "rejected": "a car",
            "subset": "alpacaeval-easy",
            "id": 2,
        },
    ]
    data = tmp_path / "rb.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "report.json"
    rc = main(
        [
            "eval",
            "--dataset",
            str(data),
            "--format",
            "rewardbench",
            "--model",
            dirs["llama-seqcls"],
            "-o",
            str(out),
        ]
    )
    assert rc == 0
    lines = [json.loads(line) for line in out.with_suffix(".scores.jsonl").read_text().splitlines()]
    scored = {line["id"]: line["results"] for line in lines if "results" in line}
    assert set(scored) == {"1", "2"}
    for row in rows:
        for answer, res in zip((row["chosen"], row["rejected"]), scored[str(row["id"])]):
            conv = [{"role": "user", "content": row["prompt"]}, {"role": "assistant", "content": answer}]
            assert res["error"] is None
            assert res["score"] == pytest.approx(
                reference("llama-seqcls", dirs["llama-seqcls"], conv), abs=1e-5
            )
