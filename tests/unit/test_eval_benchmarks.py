"""Per-benchmark loaders and official metrics (``rlreward.offline.benchmarks``), on given scores.

Every fixture is written here in the benchmark's own schema (not copied from the data), and every
expected number is computed by hand in the test from the scores the test chose, following the rule
of the benchmark's official scoring code (cited per test).
"""

from __future__ import annotations

import random

import pytest

from rlreward.offline.benchmarks import (
    PAPER,
    REWARDBENCH_EXAMPLE_COUNTS,
    REWARDBENCH_SECTIONS,
    Group,
    Pair,
    best_of_k_correct,
    detect_format,
    mm_rewardbench_credit,
    mm_rlhf_category,
    mm_rlhf_scores,
    ranked_pairs_accuracy,
    records_to_items,
    rewardbench_scores,
    rewardbench_sections,
    verdict,
    vl_rewardbench_key,
    vl_rewardbench_official,
)


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


def test_format_detection_for_every_benchmark_schema():
    assert detect_format({"id": "x", "query": "q", "response": [], "human_ranking": []}) == "vl-rewardbench"
    assert detect_format({"ID": "x", "Output1": "", "Output2": "", "Better": ""}) == "mm-rewardbench"
    assert detect_format({"prompt": "", "chosen": "", "rejected": "", "subset": "hep-go"}) == "rewardbench"
    assert detect_format({"prompt": "", "chosen": "", "rejected": ""}) == "pairs"
    assert detect_format({"prompt": "", "responses": [], "ranking": []}) == "best-of-k"
