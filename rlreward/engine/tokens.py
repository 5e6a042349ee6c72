"""Token ids of a rendered conversation, as the checkpoint's tokenizer call gives them, computed once
per shared prefix.

Contract: :func:`token_ids` returns exactly ``tokenizer(text, padding=False, return_tensors="pt")
["input_ids"][0]``; for a fast tokenizer whose backend holds no truncation or padding and whose
special-token splitting matches the wrapper's, that call is one ``backend_tokenizer.encode(text)``
(what the wrapper runs for a single text), called directly; anything else takes the wrapper's call.

:class:`PrefixTokens` splits a rendered text after its last ``<|im_start|>`` (the turn being scored
follows it). A fast tokenizer matches added tokens first and encodes the text between them piece by
piece, so ids(prefix + suffix) = ids(prefix) + ids(suffix) when the boundary is an added token that
does not strip or need word boundaries, no added token can straddle the cut, and the post-processor
adds nothing; these are checked (at construction and per cut), and a prefix is kept only when its ids
are a leading slice of the full text's ids (checked on the first text that shows it). With its
M-RoPE positions (:meth:`Preprocessor._positions` on that full text): a suffix without vision tokens
is one text run continuing the prefix's last run, so its positions are the prefix's last + 1, 2, ...
(verified on that first text too). Anything else returns ``None``: the caller takes the full path.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import torch

#: The token opening each chat turn (Qwen ChatML); the cut is right after its last occurrence.
BOUNDARY = "<|im_start|>"
#: Prefixes kept (ids + positions of a few thousand tokens each).
_MAX_PREFIXES = 32


def _backend(tokenizer: Any) -> Any | None:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if (
        backend is None
        or backend.truncation is not None
        or backend.padding is not None
        or backend.encode_special_tokens != bool(getattr(tokenizer, "split_special_tokens", False))
    ):
        return None
    return backend


def token_ids(tokenizer: Any, text: str) -> torch.Tensor:
    """The token ids of ``text`` with the tokenizer's special tokens added, as a 1-D int64 tensor."""
    backend = _backend(tokenizer)
    if backend is None:
        return tokenizer(text, padding=False, return_tensors="pt")["input_ids"][0]
    return torch.tensor(backend.encode(text, add_special_tokens=True).ids, dtype=torch.long)


class PrefixTokens:
    """Ids and positions of conversation prefixes (everything up to the last turn's opening token)."""

    def __init__(self, tokenizer: Any, vision_ids: set[int]) -> None:
        self.tokenizer = tokenizer
        self.vision_ids = vision_ids
        self._kept: OrderedDict[str, tuple[torch.Tensor, torch.Tensor] | None] = OrderedDict()
        self._lock = threading.Lock()
        self._straddles: tuple[str, ...] = ()
        self.enabled = bool(vision_ids) and self._safe()  # a vision token in a suffix must be seen

    def _safe(self) -> bool:
        backend = _backend(self.tokenizer)
        if backend is None:
            return False
        added = backend.get_added_tokens_decoder().values()
        mark = [t for t in added if t.content == BOUNDARY]
        if len(mark) != 1 or mark[0].rstrip or mark[0].single_word or mark[0].normalized:
            return False
        if (
            backend.encode("a", add_special_tokens=True).ids
            != backend.encode("a", add_special_tokens=False).ids
        ):
            return False  # the post-processor adds tokens
        # A proper head of an added token that could end where the cut is: it could straddle the cut.
        heads = {t.content[:k] for t in added for k in range(1, len(t.content))}
        self._straddles = tuple(h for h in heads if h.endswith(BOUNDARY[-1]))
        return True

    def tokens(
        self, text: str, full: Callable[[], tuple[torch.Tensor, torch.Tensor]]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(input_ids, position_ids)`` of ``text``: from its kept prefix, else ``full()`` (the
        whole text's), whose prefix part is then kept for the next texts."""
        cut = self.split(text)
        known = self.extend(*cut) if cut is not None else None
        if known is not None:
            return known
        ids, pos = full()
        if cut is not None and not self.seen(cut[0]):
            self.keep(cut[0], ids, pos)
        return ids, pos

    def split(self, text: str) -> tuple[str, str] | None:
        """``(prefix, suffix)`` cut after the last :data:`BOUNDARY`, or ``None`` where not safe."""
        cut = text.rfind(BOUNDARY) if self.enabled else -1
        if cut < 0:
            return None
        cut += len(BOUNDARY)
        prefix = text[:cut]
        if any(prefix.endswith(h) for h in self._straddles):
            return None
        return prefix, text[cut:]

    def extend(self, prefix: str, suffix: str) -> tuple[torch.Tensor, torch.Tensor] | None:
        """``(input_ids, position_ids [3, L])`` of ``prefix + suffix`` from the kept prefix, or ``None``
        (prefix not kept, or a vision token in the suffix)."""
        with self._lock:
            kept = self._kept.get(prefix)
            if kept is not None:
                self._kept.move_to_end(prefix)
        if kept is None:
            return None
        ids, pos = kept
        tail = self.tokenizer.backend_tokenizer.encode(suffix, add_special_tokens=False).ids
        if not tail or self.vision_ids.intersection(tail):
            return None
        steps = torch.arange(1, len(tail) + 1, dtype=pos.dtype).view(1, -1) + pos[:, -1:]
        return torch.cat([ids, torch.tensor(tail, dtype=ids.dtype)]), torch.cat([pos, steps], dim=1)

    def seen(self, prefix: str) -> bool:
        with self._lock:
            return prefix in self._kept

    def keep(self, prefix: str, ids: torch.Tensor, pos: torch.Tensor) -> None:
        """Keep ``prefix``'s ids and positions, taken from the full text's (``ids``, ``pos``), when
        its own encoding is their leading slice and the suffix continues the last text run;
        otherwise remember that this prefix takes the full path."""
        head = self.tokenizer.backend_tokenizer.encode(prefix, add_special_tokens=True).ids
        n = len(head)
        tail = ids[n:].tolist()
        good = (
            0 < n < ids.shape[0]
            and ids[:n].tolist() == head
            and not self.vision_ids.intersection(tail)
            and torch.equal(pos[:, n:], pos[:, n - 1 : n] + torch.arange(1, len(tail) + 1).view(1, -1))
        )
        with self._lock:
            self._kept[prefix] = (ids[:n].clone(), pos[:, :n].clone()) if good else None
            while len(self._kept) > _MAX_PREFIXES:
                self._kept.popitem(last=False)
