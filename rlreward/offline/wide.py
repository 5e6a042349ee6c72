"""A wider copy of a tiny checkpoint: the same tokenizer, processor, vision tower and value head, a
language model whose MLPs are ``intermediate_size`` wide, random weights (seeded). Memory tests and
the sleep benchmark need a checkpoint of tens to hundreds of MB whose release is measurable in the
process's RSS; the tiny one is 1 MB.

>>> make_wide("/tmp/tiny", "/tmp/wide", intermediate_size=40_000)   # doctest: +SKIP
PosixPath('/tmp/wide')          # ≈ 61 MB of fp32 weights (2 layers x 3 x 64 x 40 000 x 4 bytes)
"""

from __future__ import annotations

import shutil
from pathlib import Path

#: Files of the source checkpoint copied as they are (everything but the backbone's weights).
_KEEP = ("value_head.safetensors",)


def make_wide(src: str | Path, out_dir: str | Path, *, intermediate_size: int, seed: int = 0) -> Path:
    """Write the widened checkpoint of ``src`` to ``out_dir``; returns it. ValueError if ``src`` is
    not a checkpoint directory or ``intermediate_size`` is not positive."""
    import torch
    from transformers import AutoConfig, Qwen2_5_VLForConditionalGeneration

    src, out = Path(src), Path(out_dir)
    if not (src / "config.json").is_file():
        raise ValueError(
            f"{src} is not a checkpoint directory (no config.json); build one with rlreward make-tiny"
        )
    if intermediate_size <= 0:
        raise ValueError(f"intermediate_size must be positive, not {intermediate_size}")
    out.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        if f.is_file() and (f.suffix != ".safetensors" or f.name in _KEEP) and f.name != "config.json":
            shutil.copy2(f, out / f.name)
    config = AutoConfig.from_pretrained(src)
    config.text_config.intermediate_size = intermediate_size
    torch.manual_seed(seed)  # the model's own random init (std initializer_range)
    Qwen2_5_VLForConditionalGeneration(config).save_pretrained(out, safe_serialization=True)
    return out
