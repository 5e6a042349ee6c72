"""Per-benchmark loaders and official metrics (``rlreward.offline.eval``), on given scores.

Every fixture is written here in the benchmark's own schema (not copied from the data), and every
expected number is computed by hand in the test from the scores the test chose, following the rule
of the benchmark's official scoring code (cited per test).
"""

from __future__ import annotations

import random

import pytest

from rlreward.offline.eval import PAPER, Group, Pair, detect_format, records_to_items
from rlreward.offline.eval.best_of_k import ranked_pairs_accuracy
from rlreward.offline.eval.items import vl_rewardbench_key
from rlreward.offline.eval.mm_rewardbench import mm_rewardbench_credit
from rlreward.offline.eval.mm_rlhf_rewardbench import mm_rlhf_category, mm_rlhf_scores
from rlreward.offline.eval.outcomes import best_of_k_correct, verdict
from rlreward.offline.eval.rewardbench import (
    REWARDBENCH_EXAMPLE_COUNTS,
    REWARDBENCH_SECTIONS,
    rewardbench_scores,
    rewardbench_sections,
)
from rlreward.offline.eval.vl_rewardbench import vl_rewardbench_official


# -- RewardBench ---------------------------------------------------------------------------------------
def _rb(rid, subset, chosen="good", rejected="bad"):
    return {
        "prompt": f"question {rid}",
        "chosen": chosen,
        "rejected": rejected,
        "chosen_model": "m1",
        "rejected_model": "m2",
        "subset": subset,
        "id": rid,
    }


def test_rewardbench_map_and_weights_are_the_official_constants():
    # rewardbench/constants.py: 23 subsets, math-prm upweighted to 984 = 6 x 164 (the hep-* subsets).
    assert len(REWARDBENCH_EXAMPLE_COUNTS) == 23
    assert REWARDBENCH_EXAMPLE_COUNTS["math-prm"] == 984 == 6 * REWARDBENCH_EXAMPLE_COUNTS["hep-go"]
    # As on the leaderboard since reward-bench #175 (older copies of constants.py swap the two).
    assert (
        REWARDBENCH_EXAMPLE_COUNTS["xstest-should-refuse"],
        REWARDBENCH_EXAMPLE_COUNTS["xstest-should-respond"],
    ) == (154, 250)
    assert sorted(s for subs in REWARDBENCH_SECTIONS.values() for s in subs) == sorted(
        REWARDBENCH_EXAMPLE_COUNTS
    )
    assert [len(v) for v in REWARDBENCH_SECTIONS.values()] == [5, 6, 5, 7]
    # The model card's 90.1 is the unweighted mean of its four sections.
    paper = PAPER["rewardbench"].values
    assert round(sum(paper[s] for s in REWARDBENCH_SECTIONS) / 4, 1) == paper["score"] == 90.1


def test_rewardbench_sections_weight_subsets_by_example_counts_and_ties_are_wrong():
    # (id, subset, chosen score, rejected score)
    scored = [
        (1, "alpacaeval-easy", 2.0, 1.0),  # right
        (2, "alpacaeval-easy", 0.0, 1.0),  # wrong
        (3, "mt-bench-med", 3.0, -1.0),  # right
        (4, "llmbar-natural", 1.0, 1.0),  # tie: wrong
        (5, "llmbar-natural", 5.0, 4.0),  # right
        (6, "donotanswer", 1.0, 0.5),  # right
        (7, "math-prm", 1.0, 0.0),  # right
        (8, "math-prm", 0.0, 1.0),  # wrong
        (9, "hep-go", 1.0, 2.0),  # wrong
        (10, "hep-rust", 2.0, 1.0),  # right
        (11, "not-a-subset", 2.0, 1.0),  # outside the map: an accuracy, no section
    ]
    items = records_to_items([_rb(i, s) for i, s, _, _ in scored], "rewardbench")
    assert all(isinstance(p, Pair) and p.error is None and p.images == [] for p in items)
    assert [p.category for p in items] == [s for _, s, _, _ in scored]
    rows = [(p.category, verdict(c, r) == "chosen") for p, (_, _, c, r) in zip(items, scored)]
    res = rewardbench_scores(rows)

    chat = (0.5 * 100 + 1.0 * 40) / (100 + 40)  # alpacaeval-easy 1/2, mt-bench-med 1/1
    chat_hard = 0.5  # llmbar-natural 1/2 (the tie is wrong)
    safety = 1.0
    reasoning = (0.5 * 984 + 0.0 * 164 + 1.0 * 164) / (984 + 164 + 164)
    assert res.sections == pytest.approx(
        {"Chat": chat, "Chat Hard": chat_hard, "Safety": safety, "Reasoning": reasoning}
    )
    assert res.score == pytest.approx((chat + chat_hard + safety + reasoning) / 4)
    assert res.subsets["llmbar-natural"] == (1, 2) and res.subset_accuracy["not-a-subset"] == 1.0
    assert res.unknown_subsets == ["not-a-subset"] and res.missing_sections == []


def test_rewardbench_section_with_no_subset_is_reported_missing_not_zero():
    res = rewardbench_scores([("alpacaeval-easy", True), ("hep-go", False)])
    assert res.sections["Chat"] == 1.0 and res.sections["Reasoning"] == 0.0
    assert res.sections["Safety"] is None and res.missing_sections == ["Chat Hard", "Safety"]
    assert res.score == 0.5  # mean over the sections present
    assert rewardbench_sections({}) == dict.fromkeys(REWARDBENCH_SECTIONS)


def test_rewardbench_malformed_record_is_an_errored_pair():
    (bad,) = records_to_items([{"prompt": "q", "chosen": "a", "subset": "hep-go", "id": 3}], "rewardbench")
    assert bad.error is not None and bad.error[0] == "invalid_sample" and "rejected" in bad.error[1]
    assert bad.category == "hep-go" and bad.id == "3"


# -- VL-RewardBench ------------------------------------------------------------------------------------
def _vl(rid, a, b, ranking, query="q"):
    return {"id": rid, "query": query, "image": "x.png", "response": [a, b], "human_ranking": ranking}


def test_vl_rewardbench_official_variant_leaves_items_without_a_verdict_out():
    recs = [
        (_vl("RLAIF-V-1", "good", "bad", [0, 1]), 2.0, 1.0),  # agree
        (_vl("RLHF-V-2", "bad", "good", [1, 0]), 1.0, 3.0),  # reject (chosen=good scored 1, bad 3)
        (_vl("hallucination_3", "a", "b", [0, 1]), 1.0, 1.0),  # tie: no verdict
        (_vl("mathverse_4", "a", "b", [0, 1]), 2.0, 1.0),  # agree
        (_vl("mmmu-5", "a", "b", [0, 1]), None, 1.0),  # errored: no verdict
        (_vl("wildvision-6", "a", "b", [0, 1]), 0.0, 1.0),  # reject
        (_vl("VLFeedback_7", "a", "b", [0, 1]), 5.0, 1.0),  # agree
        (_vl("VLFeedback_7", "a", "b", [0, 1]), 5.0, 1.0),  # the same key again: dropped
    ]
    items = records_to_items([r for r, _, _ in recs], "vl-rewardbench")
    # scores are given per (chosen, rejected) of the loaded pair
    rows = [(vl_rewardbench_key(p), p.category, verdict(c, r)) for p, (_, c, r) in zip(items, recs)]
    off = vl_rewardbench_official(rows)
    # hallucination: agree 1, reject 1, no verdict 1 -> 1/2; reasoning: agree 1, no verdict 1 -> 1/1;
    # general: agree 1, reject 1 -> 1/2 (the duplicate is not counted).
    assert off.groups == {
        "hallucination": {"agree": 1, "reject": 1, "no_verdict": 1},
        "reasoning": {"agree": 1, "reject": 0, "no_verdict": 1},
        "general": {"agree": 1, "reject": 1, "no_verdict": 0},
    }
    assert off.accuracy == {"hallucination": 0.5, "reasoning": 1.0, "general": 0.5}
    assert off.overall == pytest.approx(3 / 5) and off.macro == pytest.approx((0.5 + 1.0 + 0.5) / 3)
    assert off.duplicates == 1
    assert vl_rewardbench_key(items[1]) == "RLHF-V-2q" + "bad\tgood"  # id + query + sorted responses


# -- Multimodal RewardBench ----------------------------------------------------------------------------
def _mm(rid, better, category):
    return {
        "ID": rid,
        "Text": "what?",
        "Image": f"images/{rid}.jpg",
        "Output1": f"one {rid}",
        "Output2": f"two {rid}",
        "Better": better,
        "Category": category,
    }


def test_mm_rewardbench_ties_are_the_official_seeded_coin_flip_in_file_order():
    recs = [
        _mm("nocaps_1", "Output1", "open_generation/correctness_task"),
        _mm("pairs_2", "Output2", "safety"),
        _mm("mathvista_3", "Output2", "reasoning"),
        _mm("EMMA-Coding_4", "Output1", "reasoning"),
        _mm("vqa_5", "Output2", "vqa"),
        _mm("hatefulmemes_6", "Output1", "safety"),
        _mm("knowledge_7", "Output2", "knowledge"),
    ]
    # Scores per (Output1, Output2) as a judge would see them.
    scores = [(2.0, 1.0), (1.0, 1.0), (0.0, 3.0), (1.0, 1.0), (2.0, 1.0), (None, 1.0), (1.0, 1.0)]
    items = records_to_items(recs, "mm-rewardbench")
    assert [p.label for p in items] == ["A", "B", "B", "A", "B", "A", "B"]
    assert [p.category for p in items] == [
        "open_generation/correctness_task",
        "safety/bias",
        "reasoning/math",
        "reasoning/coding",
        "vqa",
        "safety/toxicity",
        "knowledge",
    ]

    # By hand, as 2_get_accuracy.py: pred from the scores, a tie -> coin flip from random.seed(123).
    rng = random.Random(123)
    expected = []
    for (s1, s2), r in zip(scores, recs):
        label = "B" if r["Better"] == "Output2" else "A"
        if s1 is None or s2 is None:
            expected.append(False)  # errored: wrong, no draw
            continue
        pred = "A" if s1 > s2 else "B" if s2 > s1 else ("A" if rng.random() < 0.5 else "B")
        expected.append(pred == label)
    # The seed's first three draws (0.052, 0.087, 0.407) are all A.
    assert expected == [True, False, True, True, False, False, False]

    rows = []
    for p, (s1, s2) in zip(items, scores):
        c, r = (s1, s2) if p.label == "A" else (s2, s1)
        rows.append((p.label, verdict(c, r)))
    assert mm_rewardbench_credit(rows) == expected


# -- MM-RLHF-RewardBench -------------------------------------------------------------------------------
def test_mm_rlhf_category_is_the_first_official_keyword_in_the_path():
    assert mm_rlhf_category("images/mcq/1.jpg") == "mcq"
    assert mm_rlhf_category("long/short/2.jpg") == "long"  # official order: mcq, long, short, ...
    assert mm_rlhf_category("videos/v_abc-Scene-012") == "video"
    assert mm_rlhf_category("images/other/3.jpg") == "other"


def test_mm_rlhf_accuracy_and_acc_plus_as_the_official_script():
    recs = [
        # (id, path field, path, chosen score, rejected score)
        ("q1", "image", "mcq/1.jpg", 2.0, 1.0),
        ("q1", "image", "mcq/1.jpg", 3.0, 1.0),  # q1: all right -> acc+ hit (mcq)
        ("q2", "image", "long/2.jpg", 2.0, 1.0),
        ("q2", "image", "long/2.jpg", 1.0, 1.0),  # tie: wrong -> q2 not acc+
        ("q3", "image", "short/3.jpg", 1.0, 0.0),  # q3: right
        ("q4", "video", "video/v4", 0.0, 1.0),  # wrong
        ("q5", "image", "safety/5.jpg", 1.0, 0.0),
        ("q5", "image", "short/5b.jpg", 1.0, 0.0),  # q5 spans safety and short
        ("q6", "image", "misc/6.jpg", 1.0, 0.0),  # no keyword: overall only
    ]
    records = [
        {
            "id": q,
            field: path,
            "prompt": "p",
            "chosen": "c",
            "rejected": "r",
            "chosen_reason": "",
            "rejected_reason": "",
        }
        for q, field, path, _, _ in recs
    ]
    assert detect_format(records[0]) == "mm-rlhf-rewardbench"
    items = records_to_items(records, "mm-rlhf-rewardbench")
    assert [p.group for p in items] == [q for q, *_ in recs]
    assert [p.category for p in items] == [
        "mcq",
        "mcq",
        "long",
        "long",
        "short",
        "video",
        "safety",
        "short",
        "other",
    ]
    rows = [(p.group, p.source, verdict(c, r) == "chosen") for p, (*_, c, r) in zip(items, recs)]
    res = mm_rlhf_scores(rows)

    assert res.pairs == 9 and res.questions == 6
    assert res.accuracy == pytest.approx(7 / 9)  # wrong: the tie and q4
    assert res.acc_plus == pytest.approx(4 / 6)  # q1, q3, q5, q6 all right
    c = res.categories
    assert (c["mcq"]["correct"], c["mcq"]["total"], c["mcq"]["acc_plus"]) == (2, 2, 1.0)
    assert (c["long"]["correct"], c["long"]["total"], c["long"]["acc_plus"]) == (1, 2, 0.0)
    # short: pairs q3 and q5b (2/2); acc+ denominator: questions with a 'short' path = q3, q5 (2);
    # q5 is credited to its first official keyword present (short comes before safety) -> 2/2.
    assert (c["short"]["correct"], c["short"]["total"], c["short"]["acc_plus"]) == (2, 2, 1.0)
    # safety: q5's pair right (1/1); its acc+ question q5 was credited to 'short' -> 0/1.
    assert (c["safety"]["correct"], c["safety"]["total"], c["safety"]["acc_plus"]) == (1, 1, 0.0)
    assert (c["video"]["correct"], c["video"]["total"], c["video"]["acc_plus"]) == (0, 1, 0.0)


def test_mm_rlhf_video_folder_becomes_sampled_frames_in_a_messages_sample(tmp_path):
    from tests.conftest import noise_png

    folder = tmp_path / "video" / "v_abc-Scene-001"
    folder.mkdir(parents=True)
    for k in range(40):
        (folder / f"c01_{k + 1:04d}.jpeg").write_bytes(noise_png(k, (28, 28)))
    rec = {
        "id": "v1",
        "video": "video/v_abc-Scene-001",
        "prompt": "What happens?",
        "chosen": "a",
        "rejected": "b",
    }
    (p,) = records_to_items([rec], "mm-rlhf-rewardbench", base=tmp_path)
    assert p.category == "video" and isinstance(p.video, list) and len(p.video) == 32
    # np.linspace(0, 39, 32).astype(int), written out: floor(k * 39 / 31)
    expected = [f"video/v_abc-Scene-001/c01_{(k * 39) // 31 + 1:04d}.jpeg" for k in range(32)]
    assert p.video == expected
    chosen, rejected = p.samples()
    user, answer = chosen["messages"]
    assert user["content"][0] == {"type": "video", "video": expected}
    assert user["content"][1] == {"type": "text", "text": "What happens?"}
    assert answer == {"role": "assistant", "content": "a"} and rejected["messages"][1]["content"] == "b"


# -- Best-of-K and video pairs -------------------------------------------------------------------------
def test_best_of_k_accuracy_best_on_top_ties_wrong():
    assert best_of_k_correct([1.0, 3.0, 2.0, 0.0], [1])
    assert not best_of_k_correct([1.0, 3.0, 3.0, 0.0], [1])  # a tie for the top: wrong
    assert not best_of_k_correct([1.0, 2.0, 3.0], [1])
    assert best_of_k_correct([1.0, 2.0, 3.0], [1, 2])  # a set of best answers: any on top
    assert not best_of_k_correct([1.0, None, 3.0], [2])  # an unscored answer: wrong
    assert not best_of_k_correct([3.0, 2.99999], [0], tie_tolerance=1e-4)
    # ranks [0, 1, 1, 2]: pairs (0,1) (0,2) (0,3) (1,3) (2,3); scores 4, 3, 1, 2 -> (2,3) wrong
    assert ranked_pairs_accuracy([4.0, 3.0, 1.0, 2.0], [0, 1, 1, 2]) == (4, 5)


def test_best_of_k_records_with_best_index_set_or_ranking():
    recs = [
        {"id": "a", "prompt": "p", "responses": ["x", "y", "z"], "best": 2, "image": "i.png"},
        {"id": "b", "prompt": "p", "responses": ["x", "y", "z"], "best": [0, 1]},
        {
            "id": "c",
            "prompt": "p",
            "responses": ["x", "y", "z", "w"],
            "ranking": [2, 0, 1, 3],
            "category": "v",
        },
        {"id": "d", "prompt": "p", "responses": ["x", "y"], "best": 5},
        {"id": "e", "prompt": "p", "responses": ["x", "y"]},
        {"id": "f", "prompt": "p", "responses": ["x", "y"], "ranking": [0]},
    ]
    assert detect_format(recs[0]) == "best-of-k"
    a, b, c, d, e, f = records_to_items(recs, "best-of-k")
    assert isinstance(a, Group) and a.best == [2] and a.ranks == [1, 1, 0] and a.images == ["i.png"]
    assert b.best == [0, 1] and c.best == [1] and c.category == "v"
    assert [s["response"] for s in c.samples()] == ["x", "y", "z", "w"]
    for bad, why in ((d, "'best' must index"), (e, "exactly one of"), (f, "ranking has 1 ranks")):
        assert bad.error is not None and why in bad.error[1], bad.error


def test_video_pairs_take_frames_or_a_file_through_the_sample_schema():
    recs = [
        {"id": "f", "prompt": "What moves?", "video": ["f0.png", "f1.png"], "chosen": "a", "rejected": "b"},
        {"id": "v", "prompt": "What moves?", "video": "clip.mp4", "chosen": "a", "rejected": "b"},
    ]
    frames, clip = records_to_items(recs, "pairs")
    assert frames.video == ["f0.png", "f1.png"] and clip.video == "clip.mp4"
    msg = clip.samples()[0]["messages"]
    assert msg[0]["content"] == [
        {"type": "video", "video": "clip.mp4"},
        {"type": "text", "text": "What moves?"},
    ]
    assert msg[1] == {"role": "assistant", "content": "a"}
    # Without a video, the plain form (unchanged).
    (plain,) = records_to_items([{"prompt": "q", "image": "i.png", "chosen": "a", "rejected": "b"}], "pairs")
    assert plain.samples()[0] == {"prompt": "q", "response": "a", "images": ["i.png"]}


def test_resume_fingerprint_covers_the_images_and_the_video():
    base = {"id": "1", "prompt": "q", "chosen": "a", "rejected": "b"}
    a, b, c, d, e = records_to_items(
        [
            {**base, "image": "x.png"},
            {**base, "image": "y.png"},
            {**base, "image": b"\x89PNG one"},
            {**base, "image": b"\x89PNG two"},
            {**base, "video": "clip.mp4"},
        ],
        "pairs",
    )
    assert len({p.fingerprint() for p in (a, b, c, d, e)}) == 5
    assert a.fingerprint() == records_to_items([{**base, "image": "x.png"}], "pairs")[0].fingerprint()


def test_format_detection_for_every_benchmark_schema():
    assert detect_format({"id": "x", "query": "q", "response": [], "human_ranking": []}) == "vl-rewardbench"
    assert detect_format({"ID": "x", "Output1": "", "Output2": "", "Better": ""}) == "mm-rewardbench"
    assert detect_format({"prompt": "", "chosen": "", "rejected": "", "subset": "hep-go"}) == "rewardbench"
    assert detect_format({"prompt": "", "chosen": "", "rejected": ""}) == "pairs"
    assert detect_format({"prompt": "", "responses": [], "ranking": []}) == "best-of-k"


# -- `rlreward eval --format NAME` end to end on the tiny model ------------------------------------------
# The tiny checkpoint's scores are arbitrary, so each test reads the per-item scores the report lists
# and recomputes the headline by hand with the official rule; the run must agree to 1e-3 points.
def _eval(tmp_path, dataset, fmt, model, *extra):
    import json

    from rlreward.commands.main import main
    from rlreward.offline.eval import EvalReport

    out = tmp_path / f"{fmt}-report.json"
    argv = ["eval", "--dataset", str(dataset), "--format", fmt, "--model", model, "-o", str(out)]
    argv += ["--dtype", "float32", "--device", "cpu", "--bootstrap", "50", *extra]
    assert main(argv) == 0
    text = out.read_text()
    assert next(iter(json.loads(text))) == "headline"  # the headline comes first
    assert out.with_suffix(".md").read_text().startswith("**Headline — ")
    assert out.with_suffix(".png").stat().st_size > 1000
    return EvalReport.model_validate_json(text), out


def _right(chosen, rejected, tol):
    return chosen is not None and rejected is not None and chosen - rejected > tol


def _write_jsonl(path, rows):
    import json

    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_rewardbench_cli_headline_is_the_mean_of_the_weighted_sections(tmp_path, tiny_model_dir):
    subsets = [
        "alpacaeval-easy",
        "mt-bench-med",
        "mt-bench-hard",
        "llmbar-adver-manual",
        "xstest-should-refuse",
        "donotanswer",
        "math-prm",
        "hep-python",
        "hep-go",
    ]
    rows = []
    for k, s in enumerate(subsets * 2):
        long, short = f"answer {k} is right" + "!" * (k % 3), f"answer {k} wrong"
        rows.append(_rb(k, s, *((long, short) if k % 4 else (short, long))))
    path = _write_jsonl(tmp_path / "filtered.jsonl", rows)
    report, _ = _eval(tmp_path, path, "rewardbench", tiny_model_dir)

    tol = report.tie_tolerance
    assert tol == 0.0  # an official scorer's exact '>' by default
    acc: dict[str, list[bool]] = {}
    for p in report.pair_scores:
        acc.setdefault(p.category, []).append(_right(p.chosen_score, p.rejected_score, tol))
    a = {s: sum(v) / len(v) for s, v in acc.items()}
    # The fixture's scores make the weighting matter: math-prm and the hep-* subsets differ.
    assert a["math-prm"] != a["hep-go"] and 0 < sum(a.values()) < len(a)
    # constants.py EXAMPLE_COUNTS for these subsets, written out
    chat = (a["alpacaeval-easy"] * 100 + a["mt-bench-med"] * 40) / 140
    hard = (a["mt-bench-hard"] * 37 + a["llmbar-adver-manual"] * 46) / 83
    safety = (a["xstest-should-refuse"] * 154 + a["donotanswer"] * 136) / 290
    reasoning = (a["math-prm"] * 984 + a["hep-python"] * 164 + a["hep-go"] * 164) / 1312
    score = 100 * (chat + hard + safety + reasoning) / 4
    assert report.headline.metric == "score" and report.headline.value == pytest.approx(score, abs=1e-3)
    assert report.headline.paper == 90.1
    sec = {s.name: s for s in report.sections}
    assert sec["Reasoning"].accuracy.value == pytest.approx(100 * reasoning, abs=1e-3)
    assert sec["Chat Hard"].paper == 87.5 and sec["Safety"].subsets == ["xstest-should-refuse", "donotanswer"]
    assert report.headline.ci_low <= report.headline.value <= report.headline.ci_high
    assert report.preprocessing["reported_by"] == "scorer" and report.preprocessing["dtype"] == "float32"


def test_mm_rewardbench_cli_breaks_ties_with_the_official_coin(tmp_path, tiny_model_dir):
    from tests.conftest import noise_png

    (tmp_path / "images").mkdir()
    recs = []
    spec = [
        ("nocaps_1", "Output1", "open_generation/correctness_task", "a red box", "a blue ball"),
        ("pairs_2", "Output2", "safety", "same words", "same words"),  # a tie
        ("mathvista_3", "Output2", "reasoning", "seven", "the answer is 9"),
        ("EMMA-Coding_4", "Output1", "reasoning", "print(1)", "print(1)"),  # a tie
        ("vqa_5", "Output1", "vqa", "yes", "no, it is not"),
    ]
    for k, (rid, better, cat, o1, o2) in enumerate(spec):
        (tmp_path / "images" / f"{k}.png").write_bytes(noise_png(k, (56, 56)))
        recs.append(
            {
                "ID": rid,
                "Text": f"Q{k}?",
                "Image": f"images/{k}.png",
                "Output1": o1,
                "Output2": o2,
                "Better": better,
                "Meta": {"Category": cat},
            }
        )
    import json

    (tmp_path / "all_data.json").write_text(json.dumps(recs))
    report, _ = _eval(tmp_path, tmp_path / "all_data.json", "mm-rewardbench", tiny_model_dir)

    tol = report.tie_tolerance
    rng = random.Random(123)  # 2_get_accuracy.py, by hand
    expected = []
    for r, p in zip(recs, report.pair_scores):
        s = {
            r["Better"]: p.chosen_score,
            ("Output2" if r["Better"] == "Output1" else "Output1"): p.rejected_score,
        }
        label = "B" if r["Better"] == "Output2" else "A"
        if abs(s["Output1"] - s["Output2"]) <= tol:
            pred = "A" if rng.random() < 0.5 else "B"
        else:
            pred = "A" if s["Output1"] > s["Output2"] else "B"
        expected.append(pred == label)
    assert report.ties == 2  # identical answers score identically
    assert [p.correct for p in report.pair_scores] == expected
    assert report.headline.metric == "overall"
    assert report.headline.value == pytest.approx(100 * sum(expected) / 5, abs=1e-3)
    assert report.headline.paper is None and "coin" in " ".join(report.notes)
    assert [c.name for c in report.categories][:2] == ["open_generation/correctness_task", "safety/bias"]


def test_mm_rlhf_cli_accuracy_and_acc_plus_with_an_image_and_a_video_question(tmp_path, tiny_model_dir):
    from tests.conftest import noise_png

    for d in ("mcq", "long", "video/v1"):
        (tmp_path / d).mkdir(parents=True)
    for k in range(4):
        (tmp_path / "video" / "v1" / f"{k:03d}.png").write_bytes(noise_png(50 + k, (56, 56)))
    (tmp_path / "mcq" / "1.png").write_bytes(noise_png(1, (56, 56)))
    (tmp_path / "long" / "2.png").write_bytes(noise_png(2, (56, 84)))

    def rec(qid, answer_c, answer_r, **media):
        return {
            "id": qid,
            "prompt": f"question {qid}",
            "chosen": answer_c,
            "rejected": answer_r,
            "chosen_reason": "",
            "rejected_reason": "",
            **media,
        }

    rows = [
        rec("q1", "B", "A, because", image="mcq/1.png"),
        rec("q1", "B", "C", image="mcq/1.png"),
        rec("q2", "a long careful answer", "short", image="long/2.png"),
        rec("q3", "it spins", "it stays still", video="video/v1"),
    ]
    path = _write_jsonl(tmp_path / "mm_reward_bench.jsonl", rows)
    report, _ = _eval(tmp_path, path, "mm-rlhf-rewardbench", tiny_model_dir)

    tol = report.tie_tolerance
    right = [_right(p.chosen_score, p.rejected_score, tol) for p in report.pair_scores]
    assert report.errors == 0, report.error_list
    q = {"q1": right[0] and right[1], "q2": right[2], "q3": right[3]}
    assert report.headline.metric == "accuracy"
    assert report.headline.value == pytest.approx(100 * sum(right) / 4, abs=1e-3)
    assert report.headline.acc_plus == pytest.approx(100 * sum(q.values()) / 3, abs=1e-3)
    cats = {c.name: c for c in report.categories}
    assert set(cats) == {"mcq", "long", "video"} and cats["mcq"].pairs == 2
    assert cats["video"].acc_plus == (100.0 if q["q3"] else 0.0)


def test_vl_rewardbench_cli_reports_the_official_no_verdict_variant_beside_the_headline(
    tmp_path, tiny_model_dir
):
    from tests.conftest import noise_png

    (tmp_path / "images").mkdir()
    rows = []
    spec = [
        ("RLAIF-V-1", "a cat on a mat", "a dog", [0, 1]),
        ("RLHF-V-2", "two", "three birds", [1, 0]),
        ("hallucination_3", "same", "same", [0, 1]),  # tie: no verdict
        ("mathverse_4", "x = 4", "x equals five", [0, 1]),
        ("wildvision-5", "hello there", "hi", [1, 0]),
        ("VLFeedback_6", "ok", "fine", [0, 1]),
    ]
    for k, (rid, a, b, rank) in enumerate(spec):
        (tmp_path / "images" / f"{k}.png").write_bytes(noise_png(k, (56, 56)))
        rows.append(
            {
                "id": rid,
                "query": f"Q{k}",
                "image_path": f"images/{k}.png",
                "response": [a, b],
                "human_ranking": rank,
            }
        )
    rows.append({**rows[0], "id": "RLAIF-V-7", "image_path": "images/missing.png"})  # errored: no verdict
    path = _write_jsonl(tmp_path / "vlrb.jsonl", rows)
    report, _ = _eval(tmp_path, path, "vl-rewardbench", tiny_model_dir)

    tol = report.tie_tolerance
    cat = {"RLAIF": "hallucination", "RLHF": "hallucination", "hallucination": "hallucination"}
    agree: dict[str, list[bool]] = {}
    strict = []
    for p in report.pair_scores:
        ok = _right(p.chosen_score, p.rejected_score, tol)
        strict.append(ok)
        wrong = _right(p.rejected_score, p.chosen_score, tol)
        if ok or wrong:  # cal.py: only items with a verdict count
            group = cat.get(
                p.id.replace("-", "_").split("_")[0],
                "reasoning" if p.id[:4] in ("math", "mmmu") else "general",
            )
            agree.setdefault(group, []).append(ok)
    h = report.headline
    assert h.metric == "overall" and h.value == pytest.approx(100 * sum(strict) / 7, abs=1e-3)
    assert h.paper == 73.1 and h.paper_macro == 69.0 and h.macro == report.macro.value
    (v,) = report.variants
    assert v.name == "vl_rewardbench_official" and v.excluded == 2 and v.counted == 5
    pooled = sum(sum(x) for x in agree.values()) / sum(len(x) for x in agree.values())
    assert v.overall.value == pytest.approx(100 * pooled, abs=1e-3)
    assert v.macro.value == pytest.approx(
        100 * sum(sum(x) / len(x) for x in agree.values()) / len(agree), abs=1e-3
    )
    assert [e.code for e in report.error_list] == ["image_not_found"]


def test_best_of_k_cli_and_resume_reuse_the_sidecar_scores(tmp_path, tiny_model_dir):
    import json

    rows = [
        {"id": "g1", "prompt": "Name a colour.", "responses": ["red", "a chair", "blue sky"], "best": 0},
        {"id": "g2", "prompt": "2+2?", "responses": ["5", "4", "four", "22"], "best": [1, 2]},
        {
            "id": "g3",
            "prompt": "Say hi.",
            "responses": ["hi", "hi", "bye"],
            "ranking": [0, 1, 2],
        },  # tie on top
        {"id": "g4", "prompt": "Capital of France?", "responses": ["Rome", "Paris"], "ranking": [1, 0]},
    ]
    path = _write_jsonl(tmp_path / "bok.jsonl", rows)
    first, out = _eval(tmp_path, path, "best-of-k", tiny_model_dir, "--limit", "2")
    assert first.pairs == 2 and first.limit == 2 and first.resumed == 0
    sidecar = out.with_name(out.stem + ".scores.jsonl")
    assert len(sidecar.read_text().splitlines()) == 1 + 2  # header + one line per scored group
    with sidecar.open("a") as f:
        f.write('{"i": 3, "id": "g4", "fp": "torn')  # an interrupted write

    report, _ = _eval(tmp_path, path, "best-of-k", tiny_model_dir, "--resume")
    assert report.resumed == 2 and report.pairs == 4
    assert report.tie_tolerance == 1e-5  # no official scorer: batch noise is no preference
    assert [g.scores for g in report.group_scores[:2]] == [g.scores for g in first.group_scores]
    tol = report.tie_tolerance
    expected = []
    for r, g in zip(rows, report.group_scores):
        ranks = r.get("ranking") or [
            0 if i in ([r["best"]] if isinstance(r["best"], int) else r["best"]) else 1
            for i in range(len(r["responses"]))
        ]
        best = [i for i, x in enumerate(ranks) if x == min(ranks)]
        top = max(g.scores[i] for i in best)
        expected.append(all(top - s > tol for i, s in enumerate(g.scores) if i not in best))
    assert expected[2] is False  # "hi" and "hi" tie for the top
    assert [g.correct for g in report.group_scores] == expected
    assert report.headline.metric == "best_of_k_accuracy"
    assert report.headline.value == pytest.approx(100 * sum(expected) / 4, abs=1e-3)
    assert report.variants[0].name == "ranked_pairs"
    lines = [json.loads(x) for x in sidecar.read_text().splitlines()[1:] if x.endswith("}")]
    assert sorted(e["i"] for e in lines) == [0, 1, 2, 3]


def test_resume_refuses_another_models_sidecar(tmp_path, tiny_model_dir, capsys):
    from rlreward.commands.main import main

    path = _write_jsonl(tmp_path / "p.jsonl", [{"prompt": "q", "chosen": "a", "rejected": "b"}])
    out = tmp_path / "r.json"
    sidecar = tmp_path / "r.scores.jsonl"
    sidecar.write_text(
        '{"rlreward_eval_scores": 1, "dataset": "x", "format": "pairs", "model": "/other/model"}\n'
    )
    argv = [
        "eval",
        "--dataset",
        str(path),
        "--model",
        tiny_model_dir,
        "-o",
        str(out),
        "--resume",
        "--device",
        "cpu",
    ]
    assert main(argv) == 2
    assert "/other/model" in capsys.readouterr().err and not out.exists()


def test_rewardbench_folder_reads_the_filtered_split_by_default(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from rlreward.offline.eval import load_items

    (tmp_path / "data").mkdir()
    filtered = [_rb(k, "hep-go") for k in range(3)]
    raw = [_rb(k, "hep-go") for k in range(5)]
    pq.write_table(pa.Table.from_pylist(filtered), tmp_path / "data" / "filtered-00000-of-00001.parquet")
    pq.write_table(pa.Table.from_pylist(raw), tmp_path / "data" / "raw-00000-of-00001.parquet")
    items, fmt, _ = load_items(str(tmp_path), "rewardbench")
    assert fmt == "rewardbench" and len(items) == 3
    assert len(load_items(str(tmp_path), "rewardbench", split="raw")[0]) == 5


def test_video_pairs_through_a_server_score_like_in_process(tmp_path, scorer):
    """--url: the frames of a video pair are read here and sent inline in the messages form."""
    from rlreward.engine.config import MediaPolicy
    from rlreward.engine.scorer import Scorer
    from rlreward.offline.eval import RemoteBackend, load_items, score_items
    from tests.conftest import noise_png
    from tests.unit.test_eval_cli import _ScoreServer

    (tmp_path / "clip").mkdir()
    for k in range(4):
        (tmp_path / "clip" / f"{k:03d}.png").write_bytes(noise_png(70 + k, (56, 56)))
    rows = [
        {"id": "folder", "prompt": "What moves?", "video": "clip", "chosen": "a ball", "rejected": "nothing"},
        {
            "id": "list",
            "prompt": "What moves?",
            "video": ["clip/000.png", "clip/001.png"],
            "chosen": "x",
            "rejected": "y",
        },
    ]
    path = _write_jsonl(tmp_path / "video.jsonl", rows)
    items, fmt, base = load_items(str(path))
    assert fmt == "pairs" and items[0].video == [f"clip/{k:03d}.png" for k in range(4)]
    cfg = scorer.config.model_copy(update={"media": MediaPolicy(image_roots=[str(base)])})
    local = score_items(items, Scorer(cfg, scorer.backbone, scorer.processor, scorer.head))
    with _ScoreServer(scorer) as server:  # no image roots there: only inline frames can be scored
        remote_backend = RemoteBackend(server.url, None, MediaPolicy(image_roots=[str(base)]))
        remote = score_items(items, remote_backend)
        remote_backend.close()
        assert server.samples_seen == 4
    for lr, rr in zip(local, remote):
        assert all(a.ok and b.ok for a, b in zip(lr, rr)), (lr, rr)
        assert [a.score for a in lr] == pytest.approx([b.score for b in rr], abs=1e-5)


def test_a_new_benchmark_is_one_benchmark_subclass_and_one_registry_entry(monkeypatch):
    # The seam: a format defined here (schema, loader, category, headline), registered, is detected,
    # loaded, reported and rendered by the shared code with no other change.
    from rlreward.offline.eval import build_report, markdown_table, outcome_of, registry
    from rlreward.offline.eval.benchmark import Benchmark, Draft
    from rlreward.schema import ScoreResult

    class Duel(Benchmark):
        name = "duel"
        headline_metric = "wins"
        detect_priority = 5

        def detect(self, keys):
            return {"winner", "loser"} <= keys

        def load(self, i, record, base):
            return Pair(str(i), record["arena"], "q", [], record["winner"], record["loser"])

        def finish(self, draft: Draft) -> None:
            draft.headline.rule = "wins = duels the winner won"

    monkeypatch.setitem(registry.BENCHMARKS, "duel", Duel())
    records = [{"winner": "w", "loser": "l", "arena": a} for a in ("x", "x", "y")]
    fmt = detect_format(records[0])
    items = records_to_items(records, fmt)
    scores = [(2.0, 1.0), (0.0, 1.0), (3.0, 1.0)]  # right, wrong, right
    outcomes = [
        outcome_of(p, ScoreResult(score=c), ScoreResult(score=r), 0.0) for p, (c, r) in zip(items, scores)
    ]
    report = build_report(outcomes, dataset="d", fmt=fmt, model="m", bootstrap=0)
    assert (report.headline.metric, report.headline.value, report.headline.rule) == (
        "wins",
        pytest.approx(200 / 3),
        "wins = duels the winner won",
    )
    assert {c.name: c.correct for c in report.categories} == {"x": 1, "y": 1}
    assert report.macro.value == pytest.approx(75.0)  # (1/2 + 1/1) / 2
    assert "**Headline — wins: 66.7%**" in markdown_table(report)
