"""The Skywork-VL-Reward model card's scoring recipe, run literally (the reference for fidelity tests).

Nothing of rlreward is used here: ``apply_chat_template(add_generation_prompt=False)``,
``qwen_vl_utils.process_vision_info(messages)`` (first resize, per-item keys as qwen-vl-utils reads
them), the checkpoint's own ``AutoProcessor`` called as the card calls it (second resize, the saved
bounds; ``processor_kwargs`` are passed to ``from_pretrained`` as the card's commented option does),
a full ``Qwen2_5_VLForConditionalGeneration`` forward with ``output_hidden_states=True`` (lm_head
included), and an fp32 ``Linear`` value head on ``hidden_states[-1]`` at ``attention_mask.sum() - 1``.
Batch size 1, fp32, CPU.
"""

from __future__ import annotations

from typing import Any


class CardRecipe:
    """``CardRecipe(ckpt).score(messages) -> float``; ``last_video_backend`` says which reader ran."""

    def __init__(self, model_dir: str, **processor_kwargs: Any) -> None:
        import torch
        from safetensors.torch import load_file
        from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

        self.model = Qwen2_5_VLForConditionalGeneration.from_pretrained(model_dir, dtype=torch.float32).eval()
        self.processor = AutoProcessor.from_pretrained(model_dir, **processor_kwargs)
        head = load_file(f"{model_dir}/value_head.safetensors")
        self.linear = torch.nn.Linear(head["v_head.summary.weight"].shape[1], 1)
        self.linear.load_state_dict(
            {"weight": head["v_head.summary.weight"], "bias": head["v_head.summary.bias"]}
        )

    def score(self, messages: list[dict]) -> float:
        import torch
        from qwen_vl_utils import process_vision_info

        text = self.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)
        image_inputs, video_inputs = process_vision_info(messages)
        inputs = self.processor(
            text=[text], images=image_inputs, videos=video_inputs, padding=True, return_tensors="pt"
        )
        with torch.no_grad():
            out = self.model(**inputs, output_hidden_states=True, use_cache=False, return_dict=True)
            idx = inputs["attention_mask"].sum(-1) - 1
            return self.linear(out.hidden_states[-1][0, idx[0]].float()).item()


def video_backend() -> str:
    """The reader qwen-vl-utils uses for video files in this process."""
    from qwen_vl_utils.vision_process import get_video_reader_backend

    return get_video_reader_backend()
