"""``rlreward eval``: accuracy, macro, categories, ties, errors and loaders on the official schemas.

Fixtures are small generated images in each benchmark's own schema. Scores come either from the real
tiny scorer (expected accuracies are then computed here, independently, from each answer's own score)
or from :class:`CountScorer`: the real scorer validates and loads every sample (so image errors are
real), and the score is the number of ``+`` in the answer, so the expected outcome of every pair is
known by hand.
"""

from __future__ import annotations

import base64
import json

import pytest

from rlreward.offline.eval import EvalError, build_report, load_items, score_pairs
from rlreward.offline.eval.mm_rewardbench import mm_rewardbench_category
from rlreward.offline.eval.vl_rewardbench import vl_rewardbench_category
from rlreward.schema import ScoreResult
from tests.conftest import noise_png, png_bytes


def rooted(scorer, *roots):
    """The session scorer's model with local image paths allowed under ``roots``."""
    from rlreward.engine.config import MediaPolicy
    from rlreward.engine.scorer import Scorer

    cfg = scorer.config.model_copy(update={"media": MediaPolicy(image_roots=[str(r) for r in roots])})
    return Scorer(cfg, scorer.backbone, scorer.processor, scorer.head)


class CountScorer:
    """Real validation and image loading (the tiny scorer), score = count of '+' in the answer."""

    def __init__(self, scorer) -> None:
        self.scorer = scorer

    def score(self, samples):
        out = []
        for s, r in zip(samples, self.scorer.score(samples)):
            out.append(ScoreResult(score=float(s["response"].count("+"))) if r.ok else r)
        return out


# The official cal.py mapping, written out by hand: id → (category, sub-dataset).
VL_IDS = {
    "RLAIF-V-14": ("hallucination", "rlaif-v"),
    "RLHF-V-Dataset_3": ("hallucination", "rlhf-v"),
    "hallucination_povid_7": ("hallucination", "povid"),
    "mathverse_21": ("reasoning", "reasoning_tasks"),
    "mmmu-pro-5": ("reasoning", "reasoning_tasks"),
    "wildvision-battle-6": ("general", "wildvision-battle"),
    "LRVInstruction-000000007746": ("general", "vlfeedback"),
    "VLFeedback_8": ("general", "vlfeedback"),
    "rlaif-v-9": ("general", "vlfeedback"),  # the official prefix match is case-sensitive
    "mathverse": ("reasoning", "reasoning_tasks"),  # no separator: the whole id is the prefix
}


@pytest.mark.parametrize("rid", sorted(VL_IDS))
def test_vl_rewardbench_category_follows_the_official_id_prefix_rule(rid):
    assert vl_rewardbench_category(rid) == VL_IDS[rid]


@pytest.mark.parametrize(
    "record, category",
    [
        ({"ID": "pairs_12", "Meta": {"Category": "safety"}}, "safety/bias"),
        ({"ID": "hatefulmemes_1", "Meta": {"Category": "safety"}}, "safety/toxicity"),
        ({"ID": "mathvista_3", "Meta": {"Category": "reasoning"}}, "reasoning/math"),
        ({"ID": "EMMA-Coding_4", "Meta": {"Category": "reasoning"}}, "reasoning/coding"),
        (
            {"ID": "nocaps_1", "Meta": {"Category": "open_generation/correctness_task"}},
            "open_generation/correctness_task",
        ),
        ({"ID": "vqa_1", "Meta.Category": "vqa"}, "vqa"),  # pandas-flattened column
        ({"ID": "x_1", "Meta": json.dumps({"Category": "knowledge"})}, "knowledge"),  # stringified in parquet
    ],
)
def test_mm_rewardbench_category_splits_safety_and_reasoning_like_the_official_script(record, category):
    assert mm_rewardbench_category(record) == category


def _vl_fixture(tmp_path):
    """A VL-RewardBench JSONL; each answer's '+' count makes the expected outcome obvious."""
    (tmp_path / "images").mkdir()
    rows, expected = [], {}
    # (id, response[0], response[1], human_ranking, expected correct)
    spec = [
        ("RLAIF-V-1", "good ++", "bad", [0, 1], True),
        ("RLAIF-V-2", "bad", "good ++", [1, 0], True),
        ("RLHF-V-3", "good +", "bad ++", [0, 1], False),
        ("hallucination_4", "tie +", "tie +", [0, 1], False),  # tie: wrong
        ("mathverse_5", "good +++", "bad +", [0, 1], True),
        ("mmmu-6", "bad ++", "good +", [1, 0], False),
        ("mmmu-7", "bad", "good +", [1, 0], True),
        ("wildvision-8", "good +", "bad", [0, 1], True),
        ("LRVInstruction-9", "bad +", "good", [1, 0], False),
    ]
    for k, (rid, a, b, rank, ok) in enumerate(spec):
        name = f"images/{k}.png"
        (tmp_path / name).write_bytes(noise_png(k, (56, 56)))
        rows.append(
            {
                "id": rid,
                "query": f"Describe picture {k}.",
                "image_path": name,
                "response": [a, b],
                "human_ranking": rank,
                "models": ["m1", "m2"],
                "judge": "human",
                "rationale": None,
                "query_source": "x",
                "ground_truth": None,
            }
        )
        expected[rid] = ok
    path = tmp_path / "vlrb.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path, expected


def test_vl_rewardbench_overall_macro_and_categories_match_hand_computed_values(tmp_path, scorer):
    path, expected = _vl_fixture(tmp_path)
    pairs, fmt, base = load_items(str(path))
    assert fmt == "vl-rewardbench" and base == tmp_path.resolve()
    # Relative image paths are read under the dataset folder (the default root of `rlreward score`).
    scorer = rooted(scorer, base)
    outcomes = score_pairs(pairs, CountScorer(scorer), chunk_pairs=4)
    report = build_report(outcomes, dataset=str(path), fmt=fmt, model="count", bootstrap=200)

    assert [o.correct for o in outcomes] == [expected[p.id] for p in pairs]
    by_cat: dict[str, list[bool]] = {}
    for rid, ok in expected.items():
        by_cat.setdefault(VL_IDS.get(rid, vl_rewardbench_category(rid))[0], []).append(ok)
    # hallucination 2/4, reasoning 2/3, general 1/2: written out by hand.
    assert {k: (sum(v), len(v)) for k, v in by_cat.items()} == {
        "hallucination": (2, 4),
        "reasoning": (2, 3),
        "general": (1, 2),
    }
    assert [c.name for c in report.categories] == ["general", "hallucination", "reasoning"]
    cats = {c.name: c for c in report.categories}
    assert cats["hallucination"].accuracy.value == pytest.approx(50.0)
    assert cats["reasoning"].accuracy.value == pytest.approx(100 * 2 / 3, abs=1e-3)
    assert cats["general"].accuracy.value == pytest.approx(50.0)
    assert report.overall.value == pytest.approx(100 * 5 / 9, abs=1e-3)
    assert report.macro.value == pytest.approx(100 * (0.5 + 2 / 3 + 0.5) / 3, abs=1e-3)
    assert report.ties == 1 and cats["hallucination"].ties == 1 and report.errors == 0
    assert report.paper == {
        "general": 66.0,
        "hallucination": 80.0,
        "reasoning": 61.0,
        "overall": 73.1,
        "macro": 69.0,
    }
    assert cats["general"].paper == 66.0


def test_vl_rewardbench_with_the_real_tiny_scorer_matches_per_answer_scores(tmp_path, scorer):
    """The pair's outcome is computed from each answer scored on its own (batch size 1)."""
    path, _ = _vl_fixture(tmp_path)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    pairs, fmt, base = load_items(str(path))
    scorer = rooted(scorer, base)
    outcomes = score_pairs(pairs, scorer, chunk_pairs=3)
    expected_flags = []
    for r in rows:
        img = str(base / r["image_path"])
        s = [
            scorer.score([{"prompt": r["query"], "images": [img], "response": a}])[0].score
            for a in r["response"]
        ]
        best = r["human_ranking"].index(0)
        expected_flags.append(s[best] - s[1 - best] > 1e-5)  # the default tie tolerance
    report = build_report(outcomes, dataset=str(path), fmt=fmt, model="tiny", bootstrap=0)
    assert [o.correct for o in outcomes] == expected_flags
    assert report.correct == sum(expected_flags)
    assert report.overall.value == pytest.approx(100 * sum(expected_flags) / len(rows), abs=1e-3)
    assert report.overall.ci_low is None  # bootstrap off


def test_mm_rewardbench_json_with_real_scores(tmp_path, scorer):
    (tmp_path / "images" / "pairs").mkdir(parents=True)
    recs = []
    ids = ["pairs_1", "hatefulmemes_2", "mathvista_3", "EMMA-Coding_4", "nocaps_5", "vqa_6"]
    cats = ["safety", "safety", "reasoning", "reasoning", "open_generation/correctness_task", "vqa"]
    for k, (rid, cat) in enumerate(zip(ids, cats)):
        rel = f"images/pairs/{k}.png"
        (tmp_path / rel).write_bytes(noise_png(10 + k, (56, 84)))
        recs.append(
            {
                "ID": rid,
                "Text": f"What is in image {k}?",
                "Image": rel,
                "Output1": f"answer one {k}",
                "Output2": f"the second answer {k}",
                "Better": "Output1" if k % 2 else "Output2",
                "Meta": {"Category": cat},
            }
        )
    path = tmp_path / "all_data.json"
    path.write_text(json.dumps(recs))
    pairs, fmt, base = load_items(str(path))
    assert fmt == "mm-rewardbench"
    scorer = rooted(scorer, base)
    outcomes = score_pairs(pairs, scorer)
    flags = []
    for r in recs:
        s = {
            o: scorer.score([{"prompt": r["Text"], "images": [str(base / r["Image"])], "response": r[o]}])[
                0
            ].score
            for o in ("Output1", "Output2")
        }
        worse = "Output2" if r["Better"] == "Output1" else "Output1"
        flags.append(s[r["Better"]] - s[worse] > 1e-5)
    report = build_report(outcomes, dataset=str(path), fmt=fmt, model="tiny", bootstrap=0)
    names = [
        "safety/bias",
        "safety/toxicity",
        "reasoning/math",
        "reasoning/coding",
        "open_generation/correctness_task",
        "vqa",
    ]
    assert [c.name for c in report.categories] == names
    assert [c.correct for c in report.categories] == [int(f) for f in flags]
    assert report.overall.value == pytest.approx(100 * sum(flags) / 6, abs=1e-3)
    assert report.macro.value == pytest.approx(100 * sum(flags) / 6, abs=1e-3)  # one pair per category
    assert report.paper is None


def test_ties_errors_and_missing_images_are_counted_as_documented(tmp_path, scorer):
    """Ties and errored pairs count as wrong, stay in the denominator, and errors are listed."""
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "secret.png").write_bytes(png_bytes("blue"))
    data = tmp_path / "data"
    data.mkdir()
    (data / "ok.png").write_bytes(noise_png(3, (56, 56)))
    rows = [
        {
            "id": "good",
            "prompt": "q",
            "images": ["ok.png"],
            "chosen": "a ++",
            "rejected": "b +",
            "category": "x",
        },
        {
            "id": "tie",
            "prompt": "q",
            "images": ["ok.png"],
            "chosen": "same +",
            "rejected": "same +",
            "category": "x",
        },
        {
            "id": "missing",
            "prompt": "q",
            "images": ["nope.png"],
            "chosen": "a ++",
            "rejected": "b",
            "category": "y",
        },
        {
            "id": "outside",
            "prompt": "q",
            "images": [str(outside / "secret.png")],
            "chosen": "a ++",
            "rejected": "b",
            "category": "y",
        },
        {"id": "malformed", "prompt": "q", "chosen": "only one answer", "category": "y"},
        {
            "id": "b64",
            "prompt": "q",
            "image": base64.b64encode(png_bytes("red")).decode(),
            "chosen": "+",
            "rejected": "",
            "category": "y",
        },  # empty rejected answer: scored as the card's template renders it
    ]
    path = data / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    pairs, fmt, base = load_items(str(path), "pairs")
    scorer = rooted(scorer, base)
    outcomes = score_pairs(pairs, CountScorer(scorer))
    report = build_report(outcomes, dataset=str(path), fmt=fmt, model="count", bootstrap=100)

    assert report.pairs == 6 and report.correct == 2 and report.ties == 1 and report.errors == 3
    errs = {e.id: (e.side, e.code) for e in report.error_list}
    assert errs == {
        "missing": ("both", "image_not_found"),
        "outside": ("both", "path_not_allowed"),
        "malformed": ("record", "invalid_sample"),
    }
    cats = {c.name: c for c in report.categories}
    assert (cats["x"].pairs, cats["x"].correct, cats["x"].ties, cats["x"].errors) == (2, 1, 1, 0)
    assert (cats["y"].pairs, cats["y"].correct, cats["y"].errors) == (4, 1, 3)
    assert cats["x"].accuracy.value == pytest.approx(50.0)
    assert cats["y"].accuracy.value == pytest.approx(25.0)
    assert cats["y"].accuracy_scored == pytest.approx(100.0)  # errors left out
    assert report.overall.value == pytest.approx(200 / 6, abs=1e-3)  # errors stay in the denominator
    assert report.macro.value == pytest.approx(37.5)


def test_parquet_with_hf_style_image_dicts_scores_like_the_jsonl_with_paths(tmp_path, scorer):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path, _ = _vl_fixture(tmp_path)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    table_rows = []
    for r in rows:
        r = dict(r)
        img = (tmp_path / r.pop("image_path")).read_bytes()
        r["image"] = {"bytes": img, "path": "whatever.png"}
        table_rows.append(r)
    pq.write_table(pa.Table.from_pylist(table_rows), tmp_path / "test-00000-of-00001.parquet")
    from_parquet, fmt, _ = load_items(str(tmp_path), split="test")  # a folder: the parquet file wins
    assert fmt == "vl-rewardbench" and len(from_parquet) == len(rows)
    from_jsonl, _, base = load_items(str(path))
    a = score_pairs(from_jsonl, rooted(scorer, base))
    b = score_pairs(from_parquet, scorer)  # bytes need no image root
    # The same pixels from bytes or from a path; two passes, so equal within fp32 noise.
    flat_a = [x for o in a for x in (o.chosen_score, o.rejected_score)]
    flat_b = [x for o in b for x in (o.chosen_score, o.rejected_score)]
    assert None not in flat_a and flat_a == pytest.approx(flat_b, abs=1e-5)
    assert not any(o.errored for o in b)


def test_a_folder_under_a_dot_directory_is_read_and_hidden_names_below_it_are_skipped(tmp_path):
    # Issue 24: the README's own layout (.cache/eval-shapes/hf) was refused as holding no data file.
    folder = tmp_path / ".cache" / "eval-shapes" / "hf"
    (folder / ".partial").mkdir(parents=True)
    row = {"prompt": "p", "chosen": "a", "rejected": "b"}
    (folder / "test.jsonl").write_text(json.dumps({**row, "id": "kept"}) + "\n")
    (folder / ".partial" / "test.jsonl").write_text(json.dumps({**row, "id": "hidden"}) + "\n")
    (folder / ".stale.jsonl").write_text(json.dumps({**row, "id": "stale"}) + "\n")
    items, fmt, base = load_items(str(folder))
    assert (fmt, [i.id for i in items], base) == ("pairs", ["kept"], folder.resolve())
    assert [i.id for i in load_items(str(folder / ".partial"))[0]] == ["hidden"]  # the folder given
    only_hidden = tmp_path / "only-hidden"
    (only_hidden / ".git").mkdir(parents=True)
    (only_hidden / ".git" / "test.jsonl").write_text(json.dumps(row) + "\n")
    with pytest.raises(EvalError, match="holds no .parquet, .jsonl or .json file"):
        load_items(str(only_hidden))


def test_differences_within_the_tie_tolerance_are_ties():
    from rlreward.offline.eval import PairOutcome

    near = PairOutcome("a", "c", -1.4716665, -1.4716667)  # the same answer, two rows of a batch
    assert near.tie and not near.correct
    exact = PairOutcome("a", "c", -1.4716665, -1.4716667, tie_tolerance=0.0)
    assert exact.correct and not exact.tie
    assert PairOutcome("a", "c", 0.0, 0.0, tie_tolerance=0.0).tie
    assert PairOutcome("a", "c", 2.0, 1.0).correct and not PairOutcome("a", "c", 1.0, 2.0).correct


def test_bootstrap_intervals_bracket_the_estimate_and_are_seeded(tmp_path):
    from rlreward.offline.eval import PairOutcome

    outcomes = [PairOutcome(f"{i}", "a" if i % 3 else "b", float(i % 4 != 0), 0.5) for i in range(60)]
    r1 = build_report(outcomes, dataset="d", fmt="pairs", model="m", bootstrap=500, seed=1)
    r2 = build_report(outcomes, dataset="d", fmt="pairs", model="m", bootstrap=500, seed=1)
    r3 = build_report(outcomes, dataset="d", fmt="pairs", model="m", bootstrap=500, seed=2)
    for acc in [r1.overall, r1.macro, *(c.accuracy for c in r1.categories)]:
        assert acc.ci_low <= acc.value <= acc.ci_high
        assert acc.ci_high - acc.ci_low > 1.0
    assert r1.overall == r2.overall and r1.overall != r3.overall
    perfect = [PairOutcome(f"{i}", "a", 1.0, 0.0) for i in range(10)]
    r = build_report(perfect, dataset="d", fmt="pairs", model="m", bootstrap=100)
    assert (r.overall.value, r.overall.ci_low, r.overall.ci_high) == (100.0, 100.0, 100.0)


def test_format_detection_and_hub_errors_say_what_to_do(tmp_path, monkeypatch):
    path = tmp_path / "odd.jsonl"
    path.write_text(json.dumps({"question": "q", "answer": "a"}) + "\n")
    with pytest.raises(EvalError, match="--format"):
        load_items(str(path))
    with pytest.raises(EvalError, match="check --format"):
        load_items(str(path), "pairs")
    monkeypatch.setitem(__import__("sys").modules, "datasets", None)
    with pytest.raises(EvalError, match="pip install datasets"):
        load_items("MMInstruction/VL-RewardBench")
    with pytest.raises(EvalError, match="does not exist"):
        load_items(str(tmp_path / "absent.jsonl"))


def test_example_dataset_holds_the_same_pairs_in_every_format(tmp_path):
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(
        "build_dataset", Path(__file__).parents[2] / "examples" / "eval" / "build_dataset.py"
    )
    builder = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(builder)
    files = builder.build(tmp_path, 12, seed=5)
    loaded = {name: load_items(str(path)) for name, path in files.items()}
    assert {name: fmt for name, (_, fmt, _) in loaded.items()} == {
        "pairs": "pairs",
        "vl-rewardbench": "vl-rewardbench",
        "mm-rewardbench": "mm-rewardbench",
        "vl-rewardbench-parquet": "vl-rewardbench",
    }
    triples = {
        name: [(p.prompt, p.chosen, p.rejected) for p in pairs] for name, (pairs, _, _) in loaded.items()
    }
    assert len({tuple(t) for t in triples.values()}) == 1 and len(triples["pairs"]) == 12
    generic = [p.category for p in loaded["pairs"][0]]
    assert [p.category for p in loaded["mm-rewardbench"][0]] == generic
    as_vl = {"colour": "hallucination", "shape": "reasoning", "describe": "general"}
    assert [p.category for p in loaded["vl-rewardbench"][0]] == [as_vl[c] for c in generic]
    parquet_image = loaded["vl-rewardbench-parquet"][0][0].images[0]
    assert parquet_image["bytes"] == (tmp_path / "images" / "00000.png").read_bytes()
