"""Reward-health statistics and the board's step/alert/canary logic, without Ray.

References are written here from the definitions (plain Python ranks, statistics.pstdev, numpy's
linear percentile), never with the module's own helpers.
"""

from __future__ import annotations

import random
import statistics

import numpy as np
import pytest

from rlreward.serving.config import HealthOptions
from rlreward.serving.health import HealthBoard, Record, spearman, step_statistics
from rlreward.serving.health_replica import sample_identity


def _ranks(xs: list[float]) -> list[float]:
    # rank = 1 + (number smaller) + (number equal - 1) / 2
    return [1 + sum(y < x for y in xs) + (sum(y == x for y in xs) - 1) / 2 for x in xs]


def _spearman_ref(x: list[float], y: list[float]) -> float:
    rx, ry = _ranks(x), _ranks(y)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    num = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    den = (sum((a - mx) ** 2 for a in rx) * sum((b - my) ** 2 for b in ry)) ** 0.5
    return num / den


def _percentile_ref(xs: list[float], q: float) -> float:
    s = sorted(xs)
    pos = (len(s) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def test_spearman_with_ties_matches_the_definition_and_is_null_when_degenerate():
    rng = random.Random(0)
    x = [rng.randint(1, 6) for _ in range(40)]  # many ties
    y = [rng.choice([0.1, 0.2, 0.3, 0.5]) + 0.01 * xi for xi in x]
    assert spearman(x, y) == pytest.approx(_spearman_ref(x, y), abs=1e-12)
    assert spearman([1, 2], [3, 4]) is None
    assert spearman([1, 1, 1], [1, 2, 3]) is None
    assert spearman([1, 2, 3], [5, 5, 5]) is None
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)


def test_step_statistics_match_definitions():
    rng = random.Random(1)
    recs, expected_dups, seen = [], 0, set()
    for i in range(60):
        conv = f"c{i % 7}"
        ans = f"a{rng.randint(0, 12)}"
        score = rng.gauss(0, 1) if i % 11 else None
        error = None if score is not None else "invalid_sample"
        recs.append(
            Record(t=float(i), conv=conv, answer=ans, tokens=rng.randint(1, 30), score=score, error=error)
        )
    scored = [r for r in recs if r.score is not None]
    for r in scored:
        expected_dups += (r.conv, r.answer) in seen
        seen.add((r.conv, r.answer))
    # a constant group
    recs += [Record(100.0 + k, "same", f"x{k}", 3, 0.25) for k in range(3)]
    scored += recs[-3:]
    scores = [r.score for r in scored]
    stats = step_statistics(list(reversed(recs)), step=4)
    assert (
        stats["step"] == 4 and stats["samples"] == len(scored) and stats["errors"] == len(recs) - len(scored)
    )
    assert stats["mean"] == pytest.approx(statistics.fmean(scores), abs=1e-12)
    assert stats["std"] == pytest.approx(statistics.pstdev(scores), abs=1e-12)
    for q, key in ((5, "p05"), (50, "p50"), (95, "p95")):
        assert stats[key] == pytest.approx(_percentile_ref(scores, q), abs=1e-12)
    groups: dict[str, list[float]] = {}
    for r in scored:
        groups.setdefault(r.conv, []).append(r.score)
    multi = [g for g in groups.values() if len(g) >= 2]
    assert stats["groups"] == len(multi)
    assert stats["zero_variance_groups"] == sum(max(g) - min(g) <= 1e-6 for g in multi) == 1
    assert stats["length_corr"] == pytest.approx(_spearman_ref([r.tokens for r in scored], scores), abs=1e-12)
    assert stats["duplicate_answers"] == expected_dups
    assert sum(stats["histogram"]["counts"]) == len(scored)


def _board(**over) -> tuple[HealthBoard, list[float]]:
    now = [1000.0]
    opts = HealthOptions.model_validate(
        {"step_window_s": 10, "alerts": {"length_corr_min_samples": 8}, **over}
    )
    return HealthBoard(opts.model_dump(), clock=lambda: now[0], metrics=False), now


def _rec(t, conv, ans, tokens, score, error=None):
    return [t, conv, ans, tokens, score, error]


def test_time_windows_without_hints_then_steps_end_only_at_hints():
    board, now = _board()
    board.record([_rec(1000.0, "c", "a", 1, 0.1), _rec(1005.0, "c", "b", 2, 0.2)])
    now[0] = 1011.0  # window of the first step (1000..1010) is over
    board.record([_rec(1010.5, "c", "d", 3, 0.3)])
    snap = board.snapshot()
    assert snap["mode"] == "window"
    assert [(s["step"], s["samples"], s["open"]) for s in snap["steps"]] == [(0, 2, False), (1, 1, True)]
    # A hint closes the open step at its time; records scored before it but arriving later join it.
    board.step_done(t=1012.0)
    board.step_done(t=1012.5)  # another process's hint of the same step: ignored (nothing before it)
    board.record([_rec(1011.5, "c", "e", 4, 0.4), _rec(1013.0, "z", "f", 5, 0.5)])
    now[0] = 1100.0  # no window closes the step now: hints rule
    snap = board.snapshot()
    assert snap["mode"] == "hints"
    assert [(s["step"], s["samples"], s["open"]) for s in snap["steps"]] == [
        (0, 2, False),
        (1, 2, False),
        (2, 1, True),
    ]


def test_alerts_on_degenerate_steps_and_none_on_a_healthy_one():
    board, now = _board()
    t = 1000.0
    # healthy: 4 groups of 4 distinct answers, scores unrelated to length
    rng = random.Random(3)
    healthy = []
    for g in range(4):
        for k in range(4):
            t += 0.01
            healthy.append(_rec(t, f"p{g}", f"ans{g}-{k}", rng.choice([5, 9, 13, 17]) + k, rng.gauss(0, 1)))
    lens, scs = [r[3] for r in healthy], [r[4] for r in healthy]
    assert abs(_spearman_ref(lens, scs)) <= 0.7  # the construction is healthy
    board.record(healthy)
    board.step_done(t=t + 1)
    # identical answers in every group
    t += 2
    board.record([_rec(t + 0.01 * i, f"p{i % 4}", "same", 3, 0.5) for i in range(16)])
    board.step_done(t=t + 1)
    # score ordered by length, and errors
    t += 2
    board.record([_rec(t + 0.01 * i, f"q{i}", f"a{i}", i + 1, 0.1 * i) for i in range(10)])
    board.record([_rec(t + 0.5, "q", "bad", None, None, "invalid_sample")])
    board.step_done(t=t + 1)
    now[0] = t + 2
    # canary: a replica whose scores moved
    board.canary({"replica_id": "r1", "scores": [0.1, 0.2], "t": now[0]})
    board.canary({"replica_id": "r2", "scores": [0.1, 0.2], "t": now[0]})
    board.canary({"replica_id": "r2", "scores": [0.1, 0.2 + 5e-3], "t": now[0] + 1})
    snap = board.snapshot()
    by_step: dict[int, set[str]] = {}
    for a in snap["alerts"]:
        by_step.setdefault(a["step"], set()).add(a["signal"])
        assert a["value"] > a["threshold"]
    assert 0 not in by_step
    assert by_step[1] == {"zero_variance_groups", "duplicate_answers"}
    assert by_step[2] >= {"length_corr", "error_rate"}
    assert {a.get("replica_id") for a in snap["alerts"] if a["signal"] == "canary_drift"} == {"r2"}
    drift = {e["replica_id"]: e["max_abs_drift"] for e in snap["canary"]["replicas"]}
    assert drift["r1"] == 0.0 and drift["r2"] == pytest.approx(5e-3)


def test_ring_is_bounded_and_thresholds_are_configurable():
    board, now = _board(ring_steps=3, alerts={"error_rate": 0.9, "length_corr_min_samples": 8})
    for step in range(6):
        t = 1000.0 + step
        board.record([_rec(t, "c", "a", 1, None, "invalid_sample"), _rec(t + 0.1, "c", "b", 2, 0.3)])
        board.step_done(t=t + 0.5)
    snap = board.snapshot()
    assert [s["step"] for s in snap["steps"]] == [3, 4, 5]
    assert not [a for a in snap["alerts"] if a["signal"] == "error_rate"]  # 50% errors < 90%


def test_sample_identity_groups_both_forms_and_splits_the_answer():
    a = sample_identity({"prompt": "Hi", "response": "Hello"})
    b = sample_identity({"messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]},
                                      {"role": "assistant", "content": "Hello"}]})  # fmt: skip
    c = sample_identity({"prompt": "Hi", "response": "Bye"})
    assert a is not None and b is not None and c is not None
    assert a[0] == b[0] == c[0] and a[1] == b[1] != c[1] and a[2] == "Hello"
    assert sample_identity({"prompt": "Hi"}) is None
    r = sample_identity(
        {"rendered_text": "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nYo<|im_end|>\n"}
    )
    assert r is not None and r[2] == "Yo"


def test_health_options_reject_bad_values():
    with pytest.raises(ValueError):
        HealthOptions.model_validate({"alerts": {"error_rate": 2}})
    with pytest.raises(ValueError):
        HealthOptions.model_validate({"ring_steps": 0})
    with pytest.raises(ValueError):
        HealthOptions.model_validate({"unknown": 1})


def test_numpy_percentile_is_linear():  # the definition the issue asks for
    xs = [3.0, 1.0, 2.0, 10.0]
    assert np.percentile(xs, 95) == pytest.approx(_percentile_ref(xs, 95))


def test_several_trainer_processes_close_a_step_once_all_have_hinted():
    board, now = _board(step_done_wait_s=5)
    board.record([_rec(1000.0, "c", "a", 1, 0.1), _rec(1000.5, "c", "b", 1, 0.2)])
    assert board.step_done(t=1001.0, source="A")["closed"] == 0  # first step: one hint closes it
    assert board.step_done(t=1001.2, source="B")["closed"] is None  # B hinted the same step: 2 sources
    # step 1: A is done first; B's samples come back after A's hint and still belong to step 1
    board.record([_rec(1010.0, "c", "d", 1, 0.3)])
    assert board.step_done(t=1011.0, source="A")["closed"] is None
    board.record([_rec(1011.5, "c", "e", 1, 0.4)])
    assert board.step_done(t=1012.0, source="B")["closed"] == 1
    # step 2: B never hints; the step closes step_done_wait_s after A's hint, at A's hint
    board.record([_rec(1020.0, "c", "f", 1, 0.5)])
    board.step_done(t=1021.0, source="A")
    now[0] = 1027.0
    board.record([_rec(1026.0, "c", "g", 1, 0.6)])  # after A's hint: the next step
    steps = board.snapshot()["steps"]
    assert [(s["step"], s["samples"], s["open"]) for s in steps] == [
        (0, 2, False),
        (1, 2, False),
        (2, 1, False),
        (3, 1, True),
    ]
    # and from now on one hint closes a step again
    assert board.step_done(t=1028.0, source="A")["closed"] == 3


def test_answer_token_counts_are_the_tokenizers_without_special_tokens(tiny_model_dir):
    from transformers import AutoTokenizer

    from rlreward.serving.health_replica import answer_token_counts

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    texts = ["Hello there.", "It is 4.\n\nBecause 2 + 2 = 4.", "<|im_end|> literal", "数学 ✓"]
    want = [len(tok(t, add_special_tokens=False)["input_ids"]) for t in texts]
    assert answer_token_counts(tok, texts) == want
    assert answer_token_counts(None, texts) == [None] * 4


def test_disabled_health_records_nothing_and_the_page_escapes_what_it_shows():
    from rlreward.serving.dashboard import dashboard_html
    from rlreward.serving.health import IngressHealth
    from rlreward.serving.health_replica import ReplicaHealth

    assert not IngressHealth(None).enabled
    assert not IngressHealth({**HealthOptions(enabled=False).model_dump(), "board": "b"}).enabled
    assert ReplicaHealth(None).sample_infos(None, [{"prompt": "a", "response": "b"}]) == [None]
    hostile = "</script><script>alert(1)</script>"
    page = dashboard_html({"reward": {"alerts": [{"step": 0, "signal": hostile}]}}, "<b>m</b>", "/v1/stats")
    assert hostile not in page and "<b>m</b>" not in page and "&lt;b&gt;m&lt;/b&gt;" in page
