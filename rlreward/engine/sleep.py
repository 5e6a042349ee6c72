"""Sleep and wake of a loaded model: release its memory between reward bursts, keep the process.

Contract (the :class:`~rlreward.engine.scorer.Scorer` calls these on its backbone and value head):

* **Level 1** (:func:`offload`): on a GPU every parameter moves to pinned host memory and the device's
  cached blocks are released (``torch.cuda.empty_cache``), so the replica's device memory falls to
  what the CUDA context itself holds; :func:`restore` copies the same tensors back. On a CPU there is
  no device memory to free: the weights stay where they are (level 1 is then only the state change
  and the dropped caches). The values never change, so scores after a wake are bitwise those before.
* **Level 2** (:func:`drop`): every parameter is replaced by an empty tensor and the allocator is
  asked to return the pages to the OS (``malloc_trim``); :func:`refill` copies the parameters of a
  freshly loaded module (the checkpoint's own loader over its memory-mapped safetensors, so a wake
  reads the page cache) into the same ``Parameter`` objects: every reference to the module stays
  valid. Buffers (rotary frequencies, computed at build time) are kept.
* :func:`parameter_bytes` and :func:`device_bytes` are what ``/v1/stats`` reports.

Pure torch; nothing here knows the model family.
"""

from __future__ import annotations

import ctypes
import logging
from collections.abc import Iterable

import torch

log = logging.getLogger("rlreward")

#: The sleep levels a replica accepts.
SLEEP_LEVELS = (1, 2)


def check_level(level: object) -> int:
    """``level`` as an int in :data:`SLEEP_LEVELS`; ValueError naming what was given otherwise."""
    if isinstance(level, bool) or level not in SLEEP_LEVELS:
        raise ValueError(f"sleep level must be 1 or 2, not {level!r}")
    return int(level)  # type: ignore[arg-type]


def parameter_bytes(modules: Iterable[torch.nn.Module]) -> int:
    """Bytes the modules' parameters hold now (0 for dropped ones)."""
    return sum(p.numel() * p.element_size() for m in modules for p in m.parameters())


def device_bytes(device: torch.device) -> int:
    """Bytes torch has allocated on ``device`` (0 on a CPU: host memory is the process's RSS)."""
    if device.type == "cuda":
        return int(torch.cuda.memory_allocated(device))
    return 0


def offload(modules: Iterable[torch.nn.Module], device: torch.device) -> None:
    """Level 1: parameters to (pinned) host memory and the device cache released; no-op on a CPU."""
    if device.type != "cuda":
        return
    for m in modules:
        for p in m.parameters():
            host = torch.empty(p.shape, dtype=p.dtype, device="cpu", pin_memory=True)
            host.copy_(p.data, non_blocking=True)
            p.data = host
    torch.cuda.synchronize(device)
    torch.cuda.empty_cache()


def restore(modules: Iterable[torch.nn.Module], device: torch.device) -> None:
    """Undo :func:`offload`: parameters back on ``device`` (same values, bitwise)."""
    if device.type != "cuda":
        return
    for m in modules:
        for p in m.parameters():
            p.data = p.data.to(device, non_blocking=True)
    torch.cuda.synchronize(device)


def drop(modules: Iterable[torch.nn.Module]) -> int:
    """Level 2: replace every parameter by an empty tensor (same dtype and device); returns the bytes
    released. The memory returns to the OS once nothing else holds the tensors."""
    released = 0
    device = None
    for m in modules:
        for p in m.parameters():
            released += p.numel() * p.element_size()
            device = p.device
            p.data = torch.empty(0, dtype=p.dtype, device=p.device)
    if device is not None and device.type == "cuda":
        torch.cuda.empty_cache()
    trim_host_memory()
    return released


def refill(target: torch.nn.Module, source: torch.nn.Module) -> None:
    """Level-2 wake: give ``target``'s parameters ``source``'s tensors (same names, shapes, dtypes).

    ``source`` is a freshly loaded copy of the same model; a missing or differently shaped parameter
    raises RuntimeError naming it (the checkpoint changed on disk while the replica slept)."""
    fresh = dict(source.named_parameters())
    names = [n for n, _ in target.named_parameters()]
    missing = [n for n in names if n not in fresh]
    if missing:
        raise RuntimeError(
            f"the reloaded checkpoint lacks {len(missing)} parameter(s) of the sleeping model "
            f"(first: {missing[0]}); was the checkpoint replaced while the replica slept?"
        )
    for name, p in target.named_parameters():
        new = fresh[name]
        expect = getattr(p, "_rlreward_shape", None)
        if expect is not None and tuple(new.shape) != expect:
            raise RuntimeError(
                f"parameter {name} reloads with shape {list(new.shape)}, expected {list(expect)}: "
                "the checkpoint changed on disk while the replica slept"
            )
        p.data = new.data.to(dtype=p.dtype)


def remember_shapes(modules: Iterable[torch.nn.Module]) -> None:
    """Record each parameter's shape before :func:`drop` (checked by :func:`refill`)."""
    for m in modules:
        for p in m.parameters():
            p._rlreward_shape = tuple(p.shape)  # type: ignore[attr-defined]


def trim_host_memory() -> None:
    """Ask glibc to hand freed heap pages back to the OS (large tensors freed below the mmap
    threshold otherwise stay in the process's RSS); silently nothing elsewhere."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        log.debug("malloc_trim is not available here; freed memory returns to the OS lazily")
