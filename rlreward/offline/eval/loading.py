"""Datasets → items for ``rlreward eval``: a local file or folder, or a Hugging Face dataset id.

Files are JSON (a list, or ``{"data": [...]}``; a ``.json`` of JSON lines is accepted), JSONL or
parquet; a folder is searched below itself for them (names starting with ``.`` below the folder are
skipped, whatever the folder's own path holds), parquet first, files whose name holds the split
preferred. Anything else that looks like ``owner/name`` is loaded from the hub (needs ``datasets``
and a reachable hub; images kept as encoded bytes). The records' format is ``--format`` or guessed
from the first record (:func:`~.registry.detect_format`); the folder the data came from is where
relative image paths are read by default.
"""

from __future__ import annotations

import json
from pathlib import Path

from .items import EvalError, Item
from .registry import benchmark, detect_format, records_to_items

_DATA_EXTS = (".parquet", ".jsonl", ".json")


def _read_file(path: Path) -> list[dict]:
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl":
        rows = []
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise EvalError(f"{path}:{n} is not JSON ({exc}); fix or remove that line") from exc
        return rows
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        # A .json file holding JSON lines is common enough to accept.
        try:
            return [json.loads(line) for line in text.splitlines() if line.strip()]
        except json.JSONDecodeError:
            raise EvalError(f"{path} is not JSON: {exc}") from exc
    if isinstance(data, dict) and isinstance(data.get("data"), list):
        data = data["data"]
    if not isinstance(data, list):
        raise EvalError(
            f"{path} must hold a list of records (or {{'data': [...]}}), not {type(data).__name__}"
        )
    return data


def _data_files(directory: Path, split: str | None) -> list[Path]:
    files = sorted(
        p
        for p in directory.rglob("*")
        if p.is_file()
        and p.suffix in _DATA_EXTS
        and not any(part.startswith(".") for part in p.relative_to(directory).parts)
    )
    for ext in _DATA_EXTS:  # parquet first (HF snapshots), then JSONL, then JSON
        same = [p for p in files if p.suffix == ext]
        if split:
            named = [p for p in same if split in p.name]
            same = named or same
        if same:
            return same
    raise EvalError(f"{directory} holds no .parquet, .jsonl or .json file to evaluate")


def read_records(dataset: str, split: str | None = "test") -> tuple[list[dict], Path | None]:
    """Records of a local file or directory, or of a Hugging Face dataset; and the dataset's folder
    (``None`` for a hub dataset), which is where relative image paths are read from by default."""
    path = Path(dataset).expanduser()
    if path.is_file():
        if path.suffix not in _DATA_EXTS:
            raise EvalError(f"{path}: unknown file type {path.suffix!r}; use .json, .jsonl or .parquet")
        return _read_file(path), path.parent.resolve()
    if path.is_dir():
        rows: list[dict] = []
        for f in _data_files(path, split):
            rows += _read_file(f)
        return rows, path.resolve()
    if dataset.startswith((".", "/", "~")) or dataset.count("/") != 1:
        raise EvalError(f"{dataset} does not exist (and is not a Hugging Face dataset id like 'owner/name')")
    return _read_hub(dataset, split or "test"), None


def _read_hub(dataset_id: str, split: str) -> list[dict]:
    try:
        import datasets
    except ImportError as exc:
        raise EvalError(
            f"{dataset_id} is not a local file, and loading Hugging Face datasets needs the 'datasets' "
            "package: pip install datasets (or download the dataset and pass its local path)"
        ) from exc
    try:
        ds = datasets.load_dataset(dataset_id, split=split)
    except Exception as exc:
        raise EvalError(
            f"cannot load {dataset_id!r} (split {split!r}) from the hub: {exc}. Offline? Download it "
            "where a hub is reachable and pass the local folder"
        ) from exc
    for name, feature in ds.features.items():
        if isinstance(feature, datasets.Image):  # keep the encoded bytes: {"bytes", "path"}
            ds = ds.cast_column(name, datasets.Image(decode=False))
    return [dict(row) for row in ds]


def load_items(
    dataset: str, fmt: str = "auto", *, split: str | None = None, limit: int | None = None
) -> tuple[list[Item], str, Path | None]:
    """(items, resolved format, dataset folder or None) for a local path or HF dataset id: the first
    ``limit`` records as :class:`Pair` items (:class:`Group` for ``best-of-k``). ``split`` defaults
    to ``filtered`` for RewardBench (its official split) and ``test`` otherwise."""
    if split is None:
        split = "test" if fmt == "auto" else benchmark(fmt).default_split
    records, base = read_records(dataset, split)
    if not records:
        raise EvalError(f"{dataset} holds no records")
    if limit is not None:
        records = records[:limit]
    if fmt == "auto":
        fmt = detect_format(records[0])
    items = records_to_items(records, fmt, base)
    if all(p.error for p in items):
        raise EvalError(f"no record of {dataset} is a {fmt} item ({items[0].error[1]}); check --format")  # type: ignore[index]
    return items, fmt, base
