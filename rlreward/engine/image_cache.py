"""The prepared-image cache: one preparation per distinct image, shared by every sample that shows it.

A GRPO group sends the same image with each of its answers, often in separate requests. The
:class:`~rlreward.engine.preprocess.Preprocessor` keys each image by its content digest and per-item
resize keys; the first sample to need a key decodes, resizes (both stages) and patchifies it, and
every later sample — of the same request or of any request prepared on this replica while the entry
lives — gets the **same** pixel tensor (no copy), already in the dtype the device computes in.

Contract: :meth:`ImageCache.get` returns the value for a key, computing it at most once at a time
(threads asking for a key being computed wait for it; an error is raised to all of them and nothing
is cached). Entries are kept least-recently-used first out while their tensors' bytes stay within
``max_bytes`` (``BatchingConfig.image_cache_bytes``); an entry larger than that is returned but not
kept; 0 keeps nothing (threads still share an in-flight computation). Samples already prepared keep
their tensors whatever the cache evicts. An inline reference (base64, data URI) is also remembered by
its own hash (:func:`reference_key`), so the same string sent again is not base64-decoded while its
prepared pixels are cached, nor hashed again when equal to one of the last four strings hashed.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class PreparedImage:
    """One image (or one sample's images, concatenated) as the vision tower takes it:
    ``pixel_values`` [patches, C*T*14*14] in the compute dtype, ``image_grid_thw`` [n_images, 3]."""

    pixel_values: torch.Tensor
    image_grid_thw: torch.Tensor

    @property
    def nbytes(self) -> int:
        return self.pixel_values.untyped_storage().nbytes() + self.image_grid_thw.untyped_storage().nbytes()


@dataclass(frozen=True)
class ImageHeader:
    """What opening an inline image reference established: its content digest and size."""

    digest: str
    width: int
    height: int


#: Inline references shorter than this are not remembered (hashing them saves nothing).
_MIN_INLINE_REF = 4096


def reference_key(ref: Any) -> bytes | None:
    """A hash of an image reference that can only be inline data (a ``data:`` URI, or a string longer
    than any path that is not a URL: base64), so that the same reference sent again need not be
    base64-decoded and hashed again; ``None`` for anything that could name a file or a URL (whose
    content may change) and for short strings."""
    if not isinstance(ref, str) or len(ref) < _MIN_INLINE_REF:
        return None
    if not ref.startswith("data:") and ("://" in ref[:16] or ref.startswith(("~", "./", "../"))):
        return None
    return hashlib.blake2b(ref.encode("utf-8", "surrogatepass"), digest_size=16).digest()


#: Most inline references remembered (about 100 bytes each).
_MAX_REFS = 8192
#: The last inline reference strings hashed, kept to recognise an equal string without hashing it
#: again (a group's answers each carry the same base64 image; comparing is a memory compare).
_RECENT_REFS = 4


class ImageCache:
    """Bounded-bytes LRU of :class:`PreparedImage` with in-flight de-duplication (thread-safe)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[Hashable, PreparedImage] = OrderedDict()
        self._inflight: dict[Hashable, Future] = {}
        self._refs: OrderedDict[bytes, ImageHeader] = OrderedDict()
        self._recent: deque[tuple[str, bytes]] = deque(maxlen=_RECENT_REFS)
        self._lock = threading.Lock()
        self.bytes = 0
        self.hits = 0
        self.misses = 0

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._entries

    def reference_key(self, ref: Any) -> bytes | None:
        """:func:`reference_key` of ``ref``; for a string equal to one of the last few hashed
        (the same object, or ``==``), the key already computed for it, with no hashing."""
        if not isinstance(ref, str) or len(ref) < _MIN_INLINE_REF:
            return None
        with self._lock:
            for seen, key in self._recent:
                if seen is ref or seen == ref:
                    return key
        key = reference_key(ref)
        if key is not None:
            with self._lock:
                self._recent.appendleft((ref, key))
        return key

    def header(self, ref_key: bytes) -> ImageHeader | None:
        """The header facts of an inline reference opened before (:func:`reference_key`)."""
        with self._lock:
            return self._refs.get(ref_key)

    def remember(self, ref_key: bytes, header: ImageHeader) -> None:
        with self._lock:
            self._refs[ref_key] = header
            self._refs.move_to_end(ref_key)
            while len(self._refs) > _MAX_REFS:
                self._refs.popitem(last=False)

    def get(self, key: Hashable, compute: Callable[[], PreparedImage]) -> PreparedImage:
        with self._lock:
            found = self._entries.get(key)
            if found is not None:
                self._entries.move_to_end(key)
                self.hits += 1
                return found
            pending = self._inflight.get(key)
            if pending is None:
                pending = self._inflight[key] = Future()
                owner = True
            else:
                self.hits += 1
                owner = False
        if not owner:
            return pending.result()
        try:
            value = compute()
        except BaseException as exc:
            with self._lock:
                del self._inflight[key]
            pending.set_exception(exc)
            raise
        with self._lock:
            del self._inflight[key]
            self.misses += 1
            self._keep(key, value)
        pending.set_result(value)
        return value

    def _keep(self, key: Hashable, value: PreparedImage) -> None:
        size = value.nbytes
        if size > self.max_bytes:
            return
        self._entries[key] = value
        self.bytes += size
        while self.bytes > self.max_bytes:
            _, old = self._entries.popitem(last=False)
            self.bytes -= old.nbytes

    def clear(self) -> None:
        """Drop every kept entry (computations in flight finish for their callers)."""
        with self._lock:
            self._entries.clear()
            self._refs.clear()
            self._recent.clear()
            self.bytes = 0

    def stats(self) -> dict[str, Any]:
        """``entries``, ``bytes``, ``max_bytes``, ``hits``, ``misses`` (preparations run)."""
        with self._lock:
            return {
                "entries": len(self._entries),
                "bytes": self.bytes,
                "max_bytes": self.max_bytes,
                "hits": self.hits,
                "misses": self.misses,
            }
