"""Write a generated preference benchmark: four files in three of the formats ``rlreward eval`` reads.

    python examples/eval/build_dataset.py .cache/eval-shapes [--pairs 300] [--seed 12345]

The pairs are :func:`rlreward.offline.train.shapes_pairs` (a picture of one coloured shape; the true answer
about its colour / shape / both is *chosen*, a wrong one *rejected*), drawn from a seed the trained
tiny model never saw. The same pairs are written as:

* ``pairs.jsonl``: the generic format (``prompt``, ``images``, ``chosen``, ``rejected``, ``category``);
* ``vl-rewardbench.jsonl``: the VL-RewardBench schema (``id``, ``query``, ``image_path``, ``response``,
  ``human_ranking``...). Its categories come from the id prefix, as in the official script, so the
  ids are chosen to land colour questions in *hallucination* (``RLAIF-V-…``), shape questions in
  *reasoning* (``mathverse_…``) and colour-and-shape questions in *general* (``wildvision-…``);
* ``mm-rewardbench.json``: the Multimodal RewardBench schema (``ID``, ``Text``, ``Image``, ``Output1``,
  ``Output2``, ``Better``, ``Meta.Category``);
* ``hf/test-00000-of-00001.parquet``: the VL-RewardBench schema as the Hugging Face parquet stores
  it, the image inline as ``{"bytes", "path"}``.

Images are PNG files under ``images/`` (paths relative to the dataset files), except in the parquet.
The other formats ``rlreward eval`` reads (``rewardbench``, ``mm-rlhf-rewardbench``, ``best-of-k``) are
not generated here.
The order of the two answers is shuffled (seeded), as a benchmark's would be.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from rlreward.offline.train import shapes_pairs

#: shapes_pairs category → a VL-RewardBench id prefix that maps to a category by the official rule.
VL_PREFIX = {"colour": "RLAIF-V-shapes-", "shape": "mathverse_shapes_", "describe": "wildvision-shapes-"}


def build(out: Path, n: int, seed: int) -> dict[str, Path]:
    """Write the four files (and ``images/``) under ``out``; returns them by format name."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "hf").mkdir(exist_ok=True)
    rng = random.Random(seed)
    generic, vl, mm, parquet_rows = [], [], [], []
    for i, p in enumerate(shapes_pairs(n, seed, as_png=True)):
        rel = f"images/{i:05d}.png"
        (out / rel).write_bytes(p.images[0])
        generic.append(
            {
                "id": p.id,
                "prompt": p.prompt,
                "images": [rel],
                "chosen": p.chosen,
                "rejected": p.rejected,
                "category": p.category,
            }
        )
        chosen_first = rng.random() < 0.5
        responses = [p.chosen, p.rejected] if chosen_first else [p.rejected, p.chosen]
        row = {
            "id": f"{VL_PREFIX[p.category]}{i}",
            "query": p.prompt,
            "response": responses,
            "human_ranking": [0, 1] if chosen_first else [1, 0],
            "models": ["truth", "wrong"],
            "judge": "generated",
            "rationale": None,
            "query_source": "shapes",
            "ground_truth": p.chosen,
        }
        vl.append({**row, "image_path": rel})
        parquet_rows.append({**row, "image": {"bytes": p.images[0], "path": f"{i:05d}.png"}})
        mm.append(
            {
                "ID": f"shapes_{i}",
                "Text": p.prompt,
                "Image": rel,
                "Output1": responses[0],
                "Output2": responses[1],
                "Better": "Output1" if chosen_first else "Output2",
                "Meta": {"Category": p.category},
            }
        )
    files = {
        "pairs": out / "pairs.jsonl",
        "vl-rewardbench": out / "vl-rewardbench.jsonl",
        "mm-rewardbench": out / "mm-rewardbench.json",
        "vl-rewardbench-parquet": out / "hf" / "test-00000-of-00001.parquet",
    }
    files["pairs"].write_text("".join(json.dumps(r) + "\n" for r in generic))
    files["vl-rewardbench"].write_text("".join(json.dumps(r) + "\n" for r in vl))
    files["mm-rewardbench"].write_text(json.dumps(mm, indent=1))
    pq.write_table(pa.Table.from_pylist(parquet_rows), files["vl-rewardbench-parquet"])
    return files


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", nargs="?", default=".cache/eval-shapes", help="output folder")
    p.add_argument("--pairs", type=int, default=300, help="number of pairs")
    p.add_argument("--seed", type=int, default=12345, help="generation seed (training uses 0 and 1000003+)")
    args = p.parse_args(argv)
    for name, path in build(Path(args.out), args.pairs, args.seed).items():
        print(f"{name:24s} {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
