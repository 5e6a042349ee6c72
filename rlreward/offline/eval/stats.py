"""Percentages and stratified percentile-bootstrap 95% intervals for ``rlreward eval`` (numpy,
imported when called). Strata are categories (RewardBench: subsets); seeds make runs repeatable."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .report import Accuracy


def pct(x: float) -> float:
    return round(100.0 * x, 4)


def resample(groups: Mapping[str, Sequence[float]], n: int, seed: int) -> dict[str, Any]:
    """Stratified bootstrap: per stratum, ``n`` resampled means (numpy arrays)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    out: dict[str, Any] = {}
    for name, values in groups.items():
        arr = np.asarray(values, dtype=np.float64)
        idx = rng.integers(0, len(arr), size=(n, len(arr)))
        out[name] = arr[idx].sum(axis=1) / len(arr)
    return out


def ci(v: Any) -> tuple[float, float]:
    import numpy as np

    lo, hi = np.percentile(v, [2.5, 97.5])
    return float(lo), float(hi)


def bootstrap(
    groups: dict[str, list[int]], n: int, seed: int
) -> tuple[dict[str, tuple[float, float]], tuple[float, float], tuple[float, float]]:
    """Stratified percentile bootstrap: per-category, pooled and macro (low, high) in [0, 1]."""
    import numpy as np

    per_cat = resample(groups, n, seed)
    sizes = {k: len(v) for k, v in groups.items()}
    pooled = sum(per_cat[k] * sizes[k] for k in per_cat) / sum(sizes.values())
    macro = np.mean(np.stack(list(per_cat.values())), axis=0)
    return {k: ci(v) for k, v in per_cat.items()}, ci(pooled), ci(macro)


def accuracy(value: float, lo_hi: tuple[float, float] | None) -> Accuracy:
    if lo_hi is None:
        return Accuracy(value=pct(value))
    return Accuracy(value=pct(value), ci_low=pct(lo_hi[0]), ci_high=pct(lo_hi[1]))
