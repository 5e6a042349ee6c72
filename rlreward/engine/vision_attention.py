"""Qwen2.5-VL's vision tower without one attention launch per window.

The tower's window-attention layers split an image's patches into windows of up to 8x8 merged
patches (``cu_seqlens``); transformers' ``Qwen2_5_VLVisionAttention`` runs, on ``sdpa``/``eager``, one
attention call **per window per layer** (2,352 calls for a 1280x720 image on the 7B). This module
replaces that forward, on the loaded model's instances only (:func:`batch_vision_windows`; the class
and any other model in the process are untouched), by one that stacks the windows of equal length and
runs each length as **one** batched call per layer (a few calls: full windows, right/bottom edges,
corner). Every window still attends only to itself, through the same attention function, so scores are
unchanged (tests: <= 1e-5 fp32 against the unpatched forward). With ``flash_attention_2`` the
installed forward already runs one varlen call per layer and is used as it is. Autograd-safe
(training uses the same forward).
"""

from __future__ import annotations

import logging
import types
from typing import Any

import torch

log = logging.getLogger("rlreward")


def batch_vision_windows(backbone: torch.nn.Module) -> int:
    """Give every Qwen2.5-VL vision attention module of ``backbone`` the batched-window forward.
    Returns how many modules were patched (0 for other model families or transformers layouts)."""
    try:
        from transformers.models.qwen2_5_vl import modeling_qwen2_5_vl as qwen
    except ImportError:
        return 0
    needed = ("Qwen2_5_VLVisionAttention", "apply_rotary_pos_emb_vision", "ALL_ATTENTION_FUNCTIONS")
    if not all(hasattr(qwen, name) for name in needed):
        log.warning("transformers' Qwen2.5-VL vision attention changed shape: window batching left off")
        return 0
    n = 0
    for module in backbone.modules():
        if type(module) is qwen.Qwen2_5_VLVisionAttention:
            module.forward = types.MethodType(_windowed_forward, module)
            n += 1
    return n


def _windows_by_length(cu_seqlens: torch.Tensor) -> list[torch.Tensor]:
    """Token indices of the windows, one [windows, length] tensor per distinct window length."""
    starts = cu_seqlens[:-1].tolist()
    lengths = (cu_seqlens[1:] - cu_seqlens[:-1]).tolist()
    by_length: dict[int, list[int]] = {}
    for s, n in zip(starts, lengths):
        if n > 0:
            by_length.setdefault(n, []).append(s)
    device = cu_seqlens.device
    return [
        torch.tensor(s, device=device).unsqueeze(1) + torch.arange(n, device=device)
        for n, s in by_length.items()
    ]


def _windowed_forward(
    self: Any,
    hidden_states: torch.Tensor,
    cu_seqlens: torch.Tensor,
    position_embeddings: tuple[torch.Tensor, torch.Tensor] | None = None,
    **kwargs: Any,
) -> torch.Tensor:
    """``Qwen2_5_VLVisionAttention.forward`` with the windows of one length in one attention call."""
    from transformers.models.qwen2_5_vl import modeling_qwen2_5_vl as qwen
    from transformers.utils.generic import is_flash_attention_requested

    if is_flash_attention_requested(self.config):  # one varlen call per layer already
        return type(self).forward(
            self, hidden_states, cu_seqlens, position_embeddings=position_embeddings, **kwargs
        )
    seq_length = hidden_states.shape[0]
    q, k, v = self.qkv(hidden_states).reshape(seq_length, 3, self.num_heads, -1).permute(1, 0, 2, 3).unbind(0)
    cos, sin = position_embeddings
    q, k = qwen.apply_rotary_pos_emb_vision(q, k, cos, sin)  # [S, heads, head_dim]
    attention = qwen.ALL_ATTENTION_FUNCTIONS.get_interface(
        self.config._attn_implementation, qwen.eager_attention_forward
    )
    outputs, order = [], []
    for idx in _windows_by_length(cu_seqlens):  # idx [windows, L]
        qw, kw, vw = (t[idx].transpose(1, 2) for t in (q, k, v))  # [windows, heads, L, head_dim]
        out = attention(
            self,
            qw,
            kw,
            vw,
            attention_mask=None,
            scaling=self.scaling,
            dropout=0.0 if not self.training else self.attention_dropout,
            is_causal=False,
            **kwargs,
        )[0]  # [windows, L, heads, head_dim]
        outputs.append(out.reshape(-1, *out.shape[2:]))
        order.append(idx.reshape(-1))
    flat = torch.cat(outputs) if len(outputs) > 1 else outputs[0]
    where = torch.cat(order) if len(order) > 1 else order[0]
    attn_output = flat[torch.argsort(where)]  # back to token order
    return self.proj(attn_output.reshape(seq_length, -1).contiguous())
