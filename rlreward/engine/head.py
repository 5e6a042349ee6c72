"""The value head: one fp32 ``Linear(H, 1)`` read from ``value_head.safetensors``.

Skywork-VL-Reward ships it as ``v_head.summary.weight`` [1, H] and ``v_head.summary.bias`` [1]
(trl's ``ValueHead`` / LLaMA-Factory layout). Loading is strict: a missing, misnamed or misshaped
key is a :class:`HeadLoadError` that says what was found and what to pass instead — never the
silent ``strict=False`` of the model-card snippet.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn


class HeadLoadError(RuntimeError):
    """The value-head file is missing or does not hold the expected tensors."""


class ValueHead(nn.Module):
    """``score = w · h + b`` in fp32, whatever the dtype of ``h``.

    ``bias=None`` is a head without bias (a ``*ForSequenceClassification`` ``score`` layer, an
    OpenRLHF ``score`` head). ``mean``/``std`` given: the score is then ``(w · h + b - mean) / std``,
    OpenRLHF's ``normalize_reward`` applied as its ``RewardModel.forward`` applies it.
    """

    def __init__(
        self,
        weight: torch.Tensor,
        bias: torch.Tensor | None = None,
        mean: float | None = None,
        std: float | None = None,
    ) -> None:
        super().__init__()
        self.summary = nn.Linear(weight.shape[1], 1, bias=bias is not None, dtype=torch.float32)
        with torch.no_grad():
            self.summary.weight.copy_(weight.float())
            if bias is not None:
                self.summary.bias.copy_(bias.float())
        self.normalize = mean is not None or std is not None
        self.register_buffer("mean", torch.tensor([0.0 if mean is None else float(mean)]), persistent=False)
        self.register_buffer("std", torch.tensor([1.0 if std is None else float(std)]), persistent=False)
        self.requires_grad_(False)

    @property
    def hidden_size(self) -> int:
        return self.summary.in_features

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """[..., H] in any dtype → [...] fp32 scores."""
        score = self.summary(hidden.float()).squeeze(-1)
        if self.normalize:
            score = (score - self.mean) / self.std
        return score


def resolve_head_file(model: str, head_file: str, revision: str | None = None) -> str:
    """Path of the head file: inside a local directory, else fetched from the hub."""
    local = Path(model) / head_file
    if Path(model).is_dir():
        if not local.is_file():
            raise HeadLoadError(
                f"{local} does not exist: the model directory has no value head. Reward checkpoints ship "
                f"'{head_file}' beside the backbone weights; pass --head-file NAME if yours is named otherwise"
            )
        return str(local)
    if looks_like_a_path(model):
        raise HeadLoadError(f"model directory {model} does not exist (a hub id is NAME or ORG/NAME)")
    try:
        from huggingface_hub import hf_hub_download

        return hf_hub_download(model, head_file, revision=revision)
    except Exception as exc:
        raise HeadLoadError(
            f"{model!r} is not a local directory, and {head_file!r} could not be fetched from the hub: {exc}"
        ) from exc


def looks_like_a_path(model: str) -> bool:
    """Whether ``model`` can only be a local path: a hub id is ``NAME`` or ``ORG/NAME``."""
    return model.startswith((".", "/", "~")) or model.count("/") > 1 or "\\" in model


def load_value_head(
    path: str | os.PathLike, hidden_size: int, key_prefix: str = "v_head.summary"
) -> ValueHead:
    """Load and check the head tensors ``<key_prefix>.weight`` [1, H] and ``<key_prefix>.bias`` [1]."""
    from safetensors import safe_open

    path = str(path)
    if not os.path.isfile(path):
        raise HeadLoadError(f"value-head file {path} does not exist")
    try:
        with safe_open(path, framework="pt", device="cpu") as f:
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:
        raise HeadLoadError(f"{path} is not a readable safetensors file: {exc}") from exc
    wk, bk = f"{key_prefix}.weight", f"{key_prefix}.bias"
    found = sorted(tensors)
    missing = [k for k in (wk, bk) if k not in tensors]
    if missing:
        hint = ""
        prefixes = sorted({k.rsplit(".", 1)[0] for k in found if k.endswith((".weight", ".bias"))})
        if prefixes:
            hint = f"; pass --head-key-prefix {prefixes[0]} (head_key_prefix) or convert the file"
        raise HeadLoadError(
            f"{os.path.basename(path)} has no key {', '.join(missing)} (found: {', '.join(found) or 'nothing'}){hint}"
        )
    w, b = tensors[wk], tensors[bk]
    if tuple(w.shape) != (1, hidden_size):
        raise HeadLoadError(
            f"{wk} has shape {list(w.shape)}, expected [1, {hidden_size}] (the backbone's hidden size); "
            "is this the head of another model?"
        )
    if tuple(b.shape) != (1,):
        raise HeadLoadError(f"{bk} has shape {list(b.shape)}, expected [1]")
    unexpected = [k for k in found if k not in (wk, bk)]
    if unexpected:
        raise HeadLoadError(
            f"{os.path.basename(path)} has unexpected keys {unexpected}: a single-output value head has only "
            f"{wk} and {bk}"
        )
    if not torch.isfinite(w).all() or not torch.isfinite(b).all():
        raise HeadLoadError(f"{path} holds non-finite values")
    return ValueHead(w, b)


def save_value_head(
    path: str | os.PathLike,
    weight: torch.Tensor,
    bias: torch.Tensor,
    key_prefix: str = "v_head.summary",
) -> Path:
    """Write a value head as Skywork ships it: ``<prefix>.weight`` [1, H] and ``<prefix>.bias`` [1].

    The one writer of ``value_head.safetensors`` (make-tiny, training, bench models); what it writes
    :func:`load_value_head` reads back exactly.
    """
    from safetensors.torch import save_file

    weight = weight.detach().reshape(1, -1).contiguous().clone()
    bias = bias.detach().reshape(1).contiguous().clone()
    path = Path(path)
    save_file(
        {f"{key_prefix}.weight": weight, f"{key_prefix}.bias": bias}, str(path), metadata={"format": "pt"}
    )
    return path
