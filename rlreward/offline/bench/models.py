"""Bench models (bench-small, 7b-shape, a checkpoint) and their FLOP counts. See :mod:`rlreward.offline.bench`."""

from __future__ import annotations

import copy
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from rlreward.errors import UsageError

# -- model shapes ------------------------------------------------------------------------------------
#: Qwen2.5-VL-7B-Instruct text config (reference §2); special-token ids are filled from the tokenizer.
QWEN25_VL_7B_TEXT: dict[str, Any] = dict(
    vocab_size=152064,
    hidden_size=3584,
    intermediate_size=18944,
    num_hidden_layers=28,
    num_attention_heads=28,
    num_key_value_heads=4,
    hidden_act="silu",
    max_position_embeddings=128000,
    max_window_layers=28,
    rms_norm_eps=1e-6,
    rope_theta=1000000.0,
    rope_scaling={"type": "mrope", "mrope_section": [16, 24, 24]},
    sliding_window=32768,
    use_sliding_window=False,
    tie_word_embeddings=False,
)
#: Qwen2.5-VL-7B-Instruct vision config (reference §2).
QWEN25_VL_7B_VISION: dict[str, Any] = dict(
    depth=32,
    hidden_size=1280,
    intermediate_size=3420,
    num_heads=16,
    hidden_act="silu",
    in_channels=3,
    patch_size=14,
    spatial_merge_size=2,
    temporal_patch_size=2,
    window_size=112,
    fullatt_block_indexes=[7, 15, 23, 31],
    out_hidden_size=3584,
    tokens_per_second=2,
)
#: Parameters of Qwen2.5-VL-7B, lm_head included (reference §2).
QWEN25_VL_7B_PARAMS = 8_292_166_656

#: bench-small: width / 8, depth / 4, vocabulary / 32 (see the module docstring).
BENCH_SMALL_TEXT: dict[str, Any] = {
    **QWEN25_VL_7B_TEXT,
    "vocab_size": 152064 // 32,
    "hidden_size": 3584 // 8,
    "intermediate_size": 18944 // 8,
    "num_hidden_layers": 28 // 4,
    "max_window_layers": 28 // 4,
    "num_attention_heads": 7,
    "num_key_value_heads": 1,
    "head_dim": 64,
    "rope_scaling": {"type": "mrope", "mrope_section": [8, 12, 12]},
    "max_position_embeddings": 32768,
}
BENCH_SMALL_VISION: dict[str, Any] = {
    **QWEN25_VL_7B_VISION,
    "depth": 32 // 4,
    "hidden_size": 1280 // 8,
    "intermediate_size": 428,
    "num_heads": 2,
    "fullatt_block_indexes": [7],
    "out_hidden_size": 3584 // 8,
}

#: Dense (no sparsity) bf16 tensor-core peak TFLOP/s by the name ``torch.cuda.get_device_name``
#: reports, first match wins (so the NVL/PCIe variants come before their family); ``--peak-tflops``
#: overrides. Sources, NVIDIA datasheets (their "with sparsity" figures halved):
#: H100 SXM 989.4, H100 NVL 835 ("1,671 with sparsity"), H100 PCIe 756 — H100 datasheet, 2023;
#: H200 SXM 989, H200 NVL 835 — H200 datasheet, 2024; A100 (SXM and PCIe) 312 — A100 datasheet;
#: L40S 362.05 — L40S datasheet; L4 121 — L4 datasheet. An H100 SXM reports "NVIDIA H100 80GB HBM3".
PEAK_TFLOPS: tuple[tuple[str, float], ...] = (
    ("H200 NVL", 835.0),
    ("H200", 989.0),
    ("H100 NVL", 835.0),
    ("H100 PCIe", 756.0),
    ("H100", 989.4),
    ("A100", 312.0),
    ("L40S", 362.05),
    ("L4", 121.0),
)


def peak_tflops_for(device_name: str) -> float | None:
    """The dense bf16 peak of the GPU named ``device_name`` (see :data:`PEAK_TFLOPS`), or None."""
    return next((v for k, v in PEAK_TFLOPS if k in device_name), None)


def qwen25_vl_config(tokenizer: Any, text: dict[str, Any], vision: dict[str, Any]) -> Any:
    """A ``Qwen2_5_VLConfig`` from explicit text/vision fields (the class defaults are the 72B's),
    with the special-token ids of ``tokenizer``."""
    from rlreward.offline.tiny import qwen_config

    return qwen_config(tokenizer, text, vision)


@dataclass
class BenchModel:
    """One loaded model for every in-process system: the full model (with ``lm_head``, for the
    reference), a processor factory (each system gets its own instance) and the head file."""

    name: str
    model: Any  # Qwen2_5_VLForConditionalGeneration
    new_processor: Callable[[], Any]
    head_path: str
    checkpoint_dir: str | None  # a loadable directory (for serve), if there is one
    workdir: tempfile.TemporaryDirectory | None = None

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def save(self, out: str) -> str:
        """Write a loadable checkpoint (weights, processor, value head) to ``out``; returns it."""
        import shutil

        self.model.save_pretrained(out)
        self.new_processor().save_pretrained(out)
        shutil.copy(self.head_path, Path(out) / "value_head.safetensors")
        self.checkpoint_dir = out
        return out


def write_random_head(path: str | Path, hidden: int, seed: int = 0) -> str:
    """Write a random ``value_head.safetensors`` (``v_head.summary.weight`` [1, H], ``.bias`` [1])."""
    from rlreward.engine.head import save_value_head

    gen = torch.Generator().manual_seed(seed)
    weight, bias = torch.randn(1, hidden, generator=gen) / hidden**0.5, torch.randn(1, generator=gen) * 0.1
    return str(save_value_head(path, weight, bias))


def build_random_model(
    kind: Literal["bench-small", "7b-shape"],
    device: torch.device,
    dtype: torch.dtype,
    *,
    seed: int = 0,
    attn_implementation: str | None = None,
) -> BenchModel:
    """Build ``bench-small`` or ``7b-shape`` with random weights directly on ``device`` (no download)."""
    from transformers import Qwen2_5_VLForConditionalGeneration

    from rlreward.offline.tiny import build_processor, build_tokenizer

    tokenizer = build_tokenizer(seed)
    processor = build_processor(tokenizer)
    if kind == "bench-small":
        config = qwen25_vl_config(tokenizer, BENCH_SMALL_TEXT, BENCH_SMALL_VISION)
        # The HF init (std 0.02) makes every token look alike after a few random layers; 1/sqrt(width)
        # keeps scores input-dependent, so the agreement check compares something.
        config.text_config.initializer_range = config.vision_config.initializer_range = 448**-0.5
    else:
        config = qwen25_vl_config(tokenizer, QWEN25_VL_7B_TEXT, QWEN25_VL_7B_VISION)
    kwargs: dict[str, Any] = {"dtype": dtype}
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    torch.manual_seed(seed)
    with torch.device(device):
        model = Qwen2_5_VLForConditionalGeneration._from_config(config, **kwargs)
    model.requires_grad_(False).eval()
    n = sum(p.numel() for p in model.parameters())
    if kind == "7b-shape" and n != QWEN25_VL_7B_PARAMS:
        raise AssertionError(f"7b-shape has {n:,} parameters, expected {QWEN25_VL_7B_PARAMS:,}")
    workdir = tempfile.TemporaryDirectory(prefix=f"rlreward-{kind}-")
    head = write_random_head(
        Path(workdir.name) / "value_head.safetensors", config.text_config.hidden_size, seed
    )
    return BenchModel(kind, model, lambda: copy.deepcopy(processor), head, None, workdir)


def load_bench_model(
    model: str,
    device: torch.device,
    dtype: torch.dtype,
    *,
    seed: int = 0,
    attn_implementation: str | None = None,
    head_file: str = "value_head.safetensors",
) -> BenchModel:
    """``bench-small`` / ``7b-shape`` (random, built here) or a local checkpoint directory."""
    if model in ("bench-small", "7b-shape"):
        return build_random_model(model, device, dtype, seed=seed, attn_implementation=attn_implementation)
    from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

    if not Path(model).is_dir():
        raise UsageError(f"--model {model!r} is neither bench-small, 7b-shape nor a checkpoint directory")
    head = Path(model) / head_file
    if not head.is_file():
        raise UsageError(
            f"{head} does not exist; a reward checkpoint ships its value head (or pass --head-file)"
        )
    kwargs: dict[str, Any] = {"dtype": dtype}
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    full = Qwen2_5_VLForConditionalGeneration.from_pretrained(model, **kwargs).to(device)
    full.requires_grad_(False).eval()
    return BenchModel(Path(model).name, full, lambda: AutoProcessor.from_pretrained(model), str(head), model)


# -- FLOPs -------------------------------------------------------------------------------------------
def text_flops(text_config: Any, seq_len: int, *, lm_head: bool = False) -> float:
    """Forward FLOPs of the language model on one sequence of ``seq_len`` tokens.

    Per layer and token, 2 x the matmul parameters (q: d*dq, k and v: d*dkv each, o: dq*d, gated
    MLP: 3*d*ff), plus causal attention: token i attends to i+1 keys, QK^T and PV cost
    2*dq FLOPs per (query, key) each, so 2*dq*S*(S+1) per layer. Norms, RoPE, softmax and biases
    are left out (< 1%). ``lm_head`` adds 2*d*V per token (the reference recipe computes it).
    """
    c = text_config
    d, ff, layers = c.hidden_size, c.intermediate_size, c.num_hidden_layers
    hd = getattr(c, "head_dim", None) or d // c.num_attention_heads
    dq, dkv = c.num_attention_heads * hd, c.num_key_value_heads * hd
    s = seq_len
    flops = layers * (2 * s * (d * dq + 2 * d * dkv + dq * d + 3 * d * ff) + 2 * dq * s * (s + 1))
    if lm_head:
        flops += 2 * s * d * c.vocab_size
    return float(flops)


def vision_flops(vision_config: Any, grid_thw: Sequence[Sequence[int]]) -> float:
    """Forward FLOPs of the vision tower on images/videos of the given ``(t, h, w)`` patch grids.

    Per patch: the patch embedding (2 * C*T*P*P * dv), per block 2 x (qkv 3*dv^2 + proj dv^2 +
    gated MLP 3*dv*ff); per merged token (4 patches) the merger MLP 2 x (16*dv^2 + 4*dv*d_out).
    Attention costs 4*dv FLOPs per (query, key) pair, over the 112-px windows (from transformers'
    own ``get_vision_window_index``) in windowed blocks and over the whole frame in the
    ``fullatt_block_indexes`` blocks.
    """
    from transformers.vision_utils import get_vision_window_index

    c = vision_config
    dv, ff, depth = c.hidden_size, c.intermediate_size, c.depth
    unit = c.spatial_merge_size**2
    patch_in = c.in_channels * c.temporal_patch_size * c.patch_size**2
    n_full = len(c.fullatt_block_indexes)
    total = 0.0
    for t, h, w in grid_thw:
        n = t * h * w
        total += 2 * n * patch_in * dv + 2 * n * depth * (4 * dv * dv + 3 * dv * ff)
        total += 2 * (n // unit) * (unit * dv * unit * dv + unit * dv * c.out_hidden_size)
        _, cu = get_vision_window_index(
            torch.tensor([[t, h, w]]), c.spatial_merge_size, c.window_size, c.patch_size
        )
        windows = torch.diff(cu).double()
        total += 4 * dv * ((depth - n_full) * float((windows**2).sum()) + n_full * t * float(h * w) ** 2)
    return total


def sample_flops(
    config: Any, num_tokens: int, grid_thw: Sequence[Sequence[int]] = (), *, lm_head: bool = False
) -> float:
    """Model FLOPs to score one sample: vision tower on its images + language model on its tokens.

    This is the MFU numerator (summed over a workload, ``lm_head=False``). The value head (2*d)
    is negligible. For Qwen2.5-VL-7B a text token costs 13.1 GFLOP plus attention, a visual token
    5.1 GFLOP more in the vision tower, and ``lm_head`` 1.09 GFLOP per token.
    """
    return text_flops(config.text_config, num_tokens, lm_head=lm_head) + (
        vision_flops(config.vision_config, grid_thw) if len(grid_thw) else 0.0
    )
