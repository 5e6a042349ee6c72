"""The autoscaling simulator on cases computed by hand (expected values are derived in the comments,
never by running the simulator twice)."""

from __future__ import annotations

import json

import pytest

from rlreward.offline.tune.policy import (
    AutoscalingSpec,
    DelayState,
    HintPolicy,
    MetricStore,
    ReplicaModel,
    ServeTiming,
    ServingSpec,
    WindowAggregate,
    apply_delay_logic,
    apply_scaling_factors,
    autoscaling_decision,
    metric_record_interval_s,
)
from rlreward.offline.tune.simulator import simulate
from rlreward.offline.tune.sweep import SweepPoint, pareto_front, recommend
from rlreward.offline.tune.workload import TraceRecord, grpo_workload, read_trace, trace_workload
from rlreward.serving.autoscaling import hint_desired_replicas


def _burst(t: float, sizes: list[int]) -> object:
    """An open-loop, one-step workload: requests of ``sizes`` samples, all sent at ``t``."""
    return trace_workload([TraceRecord(t=t, samples=s, step=0) for s in sizes])


def _approx(x: float) -> object:
    return pytest.approx(x, abs=1e-6)


# -- one replica, fixed service time -------------------------------------------------------------
def test_one_replica_fifo_queueing_and_reward_stage_time_by_hand():
    # R = 2 samples/s. A: 4 samples at t=0 → 0..2. B: 2 samples at t=1 waits for A (max_ongoing 1:
    # at the handle) → assigned 2, runs 2..3. C: 2 samples at t=5 → 5..6. Stage = 6 - 0.
    wl = trace_workload(
        [
            TraceRecord(t=0, samples=4, step=0),
            TraceRecord(t=1, samples=2, step=0),
            TraceRecord(t=5, samples=2, step=0),
        ]
    )
    res = simulate(wl, ServingSpec(num_replicas=1, max_ongoing_requests=1), ReplicaModel(2.0, 0.0))
    got = [(r.sent_s, r.assigned_s, r.start_s, r.done_s) for r in res.requests]
    assert got == [(0, 0, 0, 2), (1, 2, 2, 3), (5, 5, 5, 6)]
    assert res.steps[0].stage_s == 6
    assert res.replica_seconds == _approx(6.0)


def test_requests_within_max_ongoing_are_accepted_at_once_but_served_fifo():
    wl = trace_workload([TraceRecord(t=0, samples=4, step=0), TraceRecord(t=1, samples=2, step=0)])
    res = simulate(wl, ServingSpec(num_replicas=1, max_ongoing_requests=4), ReplicaModel(2.0, 0.0))
    b = res.requests[1]
    assert (b.assigned_s, b.start_s, b.done_s) == (1, 2, 3)


def test_fixed_pool_replica_seconds_is_replicas_times_horizon():
    # 3 replicas, R = 2; each step 4 requests of 2 samples (1 s each). Step 0 at t=1 (rollout 1):
    # r0, r1, r2 take one each, the 4th queues on r0 (least loaded, oldest) → done at 3.
    # Step 1 at 3 + update 5 + rollout 1 = 9 → done at 11. Horizon 11, 33 replica-seconds.
    wl = grpo_workload(steps=2, prompts=4, group=2, update_s=5, rollout_s=1)
    res = simulate(wl, ServingSpec(num_replicas=3), ReplicaModel(2.0, 30.0))
    assert [(s.first_sent_s, s.last_done_s) for s in res.steps] == [(1, 3), (9, 11)]
    assert res.horizon_s == 11
    assert res.replica_seconds == _approx(3 * 11)
    assert res.mean_stage_s == _approx(2.0)


# -- Serve's autoscaling semantics -----------------------------------------------------------------
def _upscale_case(upscale_delay_s: float):
    # look_back 10 → the handle records every min(0.2 × 10, 10) = 2 s and pushes every 10 s (t = 0, 10, ...).
    # Four 1-sample requests at t=1, R = 0.1 (10 s each), max_ongoing 1: r0 takes one, 3 queue.
    # The push at t=0 saw nothing; the push at t=10 carries records at 2..10 of queued 3 + r0 1 → merged
    # total 4 from t=2 → window mean 4 → desired 4/1 = 4 > 1 from the tick at t=10.0.
    auto = AutoscalingSpec(
        min_replicas=1,
        max_replicas=2,
        target_ongoing_requests=1,
        upscale_delay_s=upscale_delay_s,
        downscale_delay_s=600,
        look_back_period_s=10,
    )
    spec = ServingSpec(autoscaling=auto, max_ongoing_requests=1)
    return simulate(_burst(1.0, [1, 1, 1, 1]), spec, ReplicaModel(0.1, 3.0))


def test_metric_record_interval_is_a_fifth_of_the_look_back_capped_by_the_push_interval():
    assert metric_record_interval_s(10) == 2
    assert metric_record_interval_s(30) == 6
    assert metric_record_interval_s(100) == 10


def test_upscale_delay_postpones_the_new_replica_by_exactly_the_delay():
    now = _upscale_case(0.0)
    late = _upscale_case(5.0)
    # no delay: the tick right after the t=10 push; 5 s delay: desire held from 10.0 to 15.0
    assert now.target_timeline == ((0.0, 1), (10.0, 2))
    assert late.target_timeline == ((0.0, 1), (15.0, 2))
    assert now.replicas[1].created_s == _approx(10.0)
    assert late.replicas[1].created_s == _approx(15.0)
    assert late.replicas[1].ready_s == _approx(18.0)  # + cold start 3 s
    # late: r0 serves 1..11, 11..21, 21..31; r1 takes the third request at 18 → 28. Stage 31 - 1 = 30.
    assert late.steps[0].stage_s == _approx(30.0)
    assert late.replica_seconds == _approx(31 + (31 - 15))


def test_downscale_delay_then_newest_replica_stops():
    # Two warm replicas, no load until one request at t=20. From t=0 the desire is 0 → downscale
    # to max(1, 0) = 1 once it has held for downscale_delay_s = 7 → at 7.0 the newest (r1) stops.
    # The 1 → 0 step is bounded by min_replicas=1. Request at 20 → r0 → done 21.
    auto = AutoscalingSpec(
        min_replicas=1,
        max_replicas=2,
        initial_replicas=2,
        target_ongoing_requests=1,
        upscale_delay_s=0,
        downscale_delay_s=7,
    )
    res = simulate(_burst(20.0, [1]), ServingSpec(autoscaling=auto), ReplicaModel(1.0, 0.0))
    assert res.target_timeline == ((0.0, 2), (7.0, 1))
    assert res.replicas[1].stopped_s == _approx(7.0)
    assert res.replicas[0].stopped_s is None
    assert res.replica_seconds == _approx(2 * 7 + 1 * (21 - 7))


def test_downscale_goes_to_one_first_then_to_zero_after_its_own_delay():
    # min 0, three warm replicas, no load. Serve's downscale to a value > 0 is max(1, desired): at 5.0
    # (downscale_delay_s) the target becomes 1, not 0; the 1 → 0 step starts its own timer on the next
    # tick (5.1) and waits downscale_to_zero_delay_s = 20 → 25.1. The request at t=60 meets 0 replicas:
    # the record at 60 (after the send) shows it, the push at 60 carries it → cold start at 60.0.
    auto = AutoscalingSpec(
        min_replicas=0,
        max_replicas=3,
        initial_replicas=3,
        upscale_delay_s=0,
        downscale_delay_s=5,
        downscale_to_zero_delay_s=20,
    )
    res = simulate(_burst(60.0, [1]), ServingSpec(autoscaling=auto), ReplicaModel(1.0, 0.0))
    assert res.target_timeline == ((0.0, 3), (5.0, 1), (25.1, 0), (60.0, 1))
    assert [r.stopped_s for r in res.replicas[:3]] == [_approx(25.1), _approx(5.0), _approx(5.0)]
    assert res.replica_seconds == _approx(3 * 5 + 1 * 20.1 + 1 * 1)


def test_metric_store_prune_drops_points_at_or_before_the_window_start():
    st = MetricStore()
    for t, v in ((0.0, 1), (2.0, 2), (4.0, 3)):
        st.add({"q": v, "old": 9} if t == 0.0 else {"q": v}, t)
    st.prune(2.0)
    assert st.data == {"q": [(4.0, 3.0)]}


def test_a_stalled_run_is_reported_not_looped_forever():
    # a tiny throughput and no way to reach it: 1e6 samples at 1e-3 samples/s would take 1e9 s
    with pytest.raises(ValueError, match="did not finish"):
        simulate(_burst(0.0, [1000]), ServingSpec(num_replicas=1), ReplicaModel(1e-3, 0.0), max_time_s=1e5)


def test_max_replicas_bounds_a_large_burst():
    auto = AutoscalingSpec(
        min_replicas=1, max_replicas=3, target_ongoing_requests=1, upscale_delay_s=0, look_back_period_s=10
    )
    res = simulate(
        _burst(1.0, [1] * 50), ServingSpec(autoscaling=auto, max_ongoing_requests=1), ReplicaModel(1.0, 1.0)
    )
    assert res.max_target == 3
    assert len(res.replicas) == 3


def test_min_replicas_bounds_downscaling():
    auto = AutoscalingSpec(
        min_replicas=2, max_replicas=3, target_ongoing_requests=1, upscale_delay_s=0, downscale_delay_s=0
    )
    res = simulate(_burst(30.0, [1]), ServingSpec(autoscaling=auto), ReplicaModel(1.0, 0.0))
    assert res.target_timeline == ((0.0, 2),)
    assert all(r.stopped_s is None for r in res.replicas)
    assert res.replica_seconds == _approx(2 * 31)


def test_min_above_max_is_refused():
    with pytest.raises(ValueError, match="min_replicas"):
        AutoscalingSpec(min_replicas=3, max_replicas=2)


def test_cold_start_from_zero_waits_for_a_record_when_the_handle_store_is_stale():
    # 0 replicas. The handle recorded queued=0 at t=0, so the immediate push at the request (t=1)
    # carries that stale 0. Records every 2 s (look_back 10); the t=10 push shows queued 1 → the
    # cold-start path asks for max(ceil(1), 0) = 1 replica at 10.0 (no upscale delay), ready at 14.
    auto = AutoscalingSpec(min_replicas=0, max_replicas=2, upscale_delay_s=30, look_back_period_s=10)
    res = simulate(_burst(1.0, [1]), ServingSpec(autoscaling=auto), ReplicaModel(1.0, 4.0))
    assert res.target_timeline == ((0.0, 0), (10.0, 1))
    assert res.requests[0].start_s == _approx(14.0)
    assert res.steps[0].stage_s == _approx(15.0 - 1.0)
    assert res.replica_seconds == _approx(15.0 - 10.0)


def test_cold_start_from_zero_is_immediate_with_a_fresh_handle():
    # The handle starts with the request (t=1): its store is empty, so the push at once reports the
    # queued request → replica at 1.0, ready at 5, done at 6.
    auto = AutoscalingSpec(min_replicas=0, max_replicas=2, upscale_delay_s=30, look_back_period_s=10)
    res = simulate(
        _burst(1.0, [1]),
        ServingSpec(autoscaling=auto),
        ReplicaModel(1.0, 4.0),
        ServeTiming(handle_start_s=1.0),
    )
    assert res.target_timeline == ((0.0, 0), (1.0, 1))
    assert res.steps[0].stage_s == _approx(5.0)


def test_scaling_factors_and_the_stalled_downscale_step():
    assert apply_scaling_factors(6, 2, upscaling_factor=0.5) == 4  # ceil(2 + 0.5 × 4)
    assert apply_scaling_factors(2.0, 3, downscaling_factor=0.1) == 2  # ceil(2.9) = 3 stalls → 2
    assert apply_scaling_factors(2.5, 3, downscaling_factor=0.1) == 3  # ceil(2.5) = 3: no forced step
    assert apply_scaling_factors(3.2, 0) == 4  # from zero: plain ceil


def test_delay_timer_resets_when_the_desire_falls_back():
    st = DelayState()
    kw = dict(upscale_delay_s=5.0, downscale_delay_s=100.0, downscale_to_zero_delay_s=None, state=st)
    assert apply_delay_logic(3, 1, now_s=0.0, **kw) == 1
    assert apply_delay_logic(3, 1, now_s=4.0, **kw) == 1
    assert apply_delay_logic(1, 1, now_s=4.1, **kw) == 1  # back to target: reset
    assert apply_delay_logic(3, 1, now_s=4.2, **kw) == 1
    assert apply_delay_logic(3, 1, now_s=9.1, **kw) == 1  # 4.9 s since 4.2
    assert apply_delay_logic(3, 1, now_s=9.2, **kw) == 3


def test_cold_start_path_skips_policy_and_delay():
    cfg = AutoscalingSpec(min_replicas=0, max_replicas=4, upscale_delay_s=30, upscaling_factor=2.5)
    got = autoscaling_decision(
        0.0, running=0, current_target=0, total_num_requests=0.5, config=cfg, state=DelayState(), now_s=0.0
    )
    assert got == 3  # max(ceil(1 × 2.5), 0)


def test_window_mean_matches_serves_documented_example():
    # ray/serve/_private/autoscaling_state.py get_total_num_requests docstring: 23.4 / 1.7
    agg = WindowAggregate(
        [[(0.2, 5), (0.8, 7), (1.5, 6)], [(0.1, 3), (0.9, 4), (1.4, 8)], [(0.3, 2), (1.0, 3)]]
    )
    assert agg.window_start == 0.3
    assert agg.value(2.0) == pytest.approx(23.4 / 1.7)
    assert WindowAggregate([[(0.0, 1.0), (4.0, 3.0)]], "max").value(9.0) == 3.0


# -- the hint policy -------------------------------------------------------------------------------
def test_hint_desired_replicas():
    assert hint_desired_replicas(64, 8.0, 4.0, min_replicas=1, max_replicas=4) == 2  # ceil(64 / 32)
    assert hint_desired_replicas(65, 8.0, 4.0, min_replicas=1, max_replicas=4) == 3
    assert hint_desired_replicas(10_000, 1.0, 4.0, min_replicas=1, max_replicas=4) == 4
    assert hint_desired_replicas(0, 1.0, 4.0, min_replicas=1, max_replicas=4) == 1


def _hint_case(hint: HintPolicy | None, steps: int = 1, downscale_delay_s: float = 600):
    # GRPO steps of 8 requests × 8 samples, the first sent at t=20 after a 20 s rollout, each later one
    # 30 s (update) + 20 s (rollout) after the previous step's last score; R = 4 (2 s a request).
    auto = AutoscalingSpec(
        min_replicas=1,
        max_replicas=2,
        target_ongoing_requests=2,
        upscale_delay_s=5,
        downscale_delay_s=downscale_delay_s,
        look_back_period_s=30,
    )
    wl = grpo_workload(steps=steps, prompts=8, group=8, update_s=30, rollout_s=20)
    return simulate(wl, ServingSpec(autoscaling=auto, hint=hint), ReplicaModel(4.0, 10.0))


def test_hint_brings_the_replica_before_the_burst_and_the_default_policy_after():
    # Hinted: sent at rollout start t=0, seen at 0.5, ceil(64 / (4 × 8)) = 2 > 1 → + upscale delay 5
    # → replica at 5.5, ready at 15.5 < 20: the 8 requests split over 2 replicas, 4 × 2 s → stage 8.
    hinted = _hint_case(HintPolicy(within_s=8.0, latency_s=0.5))
    assert hinted.replicas[1].created_s == _approx(5.5)
    assert hinted.steps[0].stage_s == _approx(8.0)
    # Default: records at 0, 6, 12, 18; pushes at 0, 10, 20. The burst at t=20 comes before the t=20
    # push, which has no record of r0 yet and so reports r0's current 8 in flight (Serve's fallback for
    # a key without points): window opens at 20, mean 8 → desire 8 / 2 = 4 from the tick at 20.0 →
    # + delay 5 → 25.0, ready at 35. r0 had already accepted all 8 (max_ongoing 32), so it alone
    # finishes them at 20 + 8 × 2 = 36: stage 16.
    plain = _hint_case(None)
    assert plain.replicas[1].created_s == _approx(25.0)
    assert plain.steps[0].stage_s == _approx(16.0)


def test_released_hint_scales_down_in_the_update_and_back_up_for_the_next_rollout():
    # Step 0 as above: r1 at 5.5, both serve 20..28. Step done at 28, seen at 28.5: released to
    # min_replicas=1 → + downscale delay 5 → target 1 at 33.5 (r1, the newest, stops). Step 1 starts at
    # 28 + 30 + 20 = 78; its hint (sent at 58) is seen at 58.5 → + 5 → r2 at 63.5, ready 73.5, both serve
    # 78..86. Replica-seconds: r0 86 + r1 (33.5 - 5.5) + r2 (86 - 63.5).
    res = _hint_case(HintPolicy(within_s=8.0, latency_s=0.5, release_to="min"), steps=2, downscale_delay_s=5)
    assert res.target_timeline == ((0.0, 1), (5.5, 2), (33.5, 1), (63.5, 2))
    assert [s.stage_s for s in res.steps] == [_approx(8.0), _approx(8.0)]
    assert res.replica_seconds == _approx(86 + 28 + 22.5)
    # Released to the base policy instead, the look-back window still holds the burst at 33.5.
    base = _hint_case(
        HintPolicy(within_s=8.0, latency_s=0.5, release_to="base"), steps=2, downscale_delay_s=5
    )
    assert (33.5, 1) not in base.target_timeline
    assert base.replica_seconds > res.replica_seconds


def test_hint_needs_autoscaling():
    with pytest.raises(ValueError, match="autoscaling"):
        ServingSpec(num_replicas=2, hint=HintPolicy(within_s=1.0))


# -- workloads ---------------------------------------------------------------------------------------
def test_trace_parsing_skips_header_and_unknown_keys(tmp_path):
    lines = [
        {"kind": "header", "started_at": "2026-12-03T06:00:00Z", "version": 1},
        {"t": 0.5, "samples": 8, "group": "p1", "step": 0, "tokens": 900, "request_id": "a", "extra": [1]},
        {"t": 0.6, "samples": 8, "group": None, "step": 0, "tokens": None, "request_id": None},
        {"kind": "response", "request_id": "a"},
        {"t": 40.0, "samples": 4, "step": 1},
    ]
    path = tmp_path / "trace.jsonl"
    path.write_text(
        "\n".join(json.dumps(x) for x in lines[:3])
        + "\n\n"
        + "\n".join(json.dumps(x) for x in lines[3:])
        + "\n"
    )
    recs = read_trace(path)
    assert [(r.t, r.samples, r.step, r.group) for r in recs] == [
        (0.5, 8, 0, "p1"),
        (0.6, 8, 0, None),
        (40.0, 4, 1, None),
    ]
    wl = trace_workload(recs)
    assert not wl.closed_loop  # no latency_s recorded
    assert [s.start_s for s in wl.steps] == [0.5, 40.0]
    assert [s.samples for s in wl.steps] == [16, 4]
    assert [r.offset_s for r in wl.steps[0].requests] == pytest.approx([0.0, 0.1])


def test_trace_with_latencies_replays_closed_loop_keeping_the_trainer_gap():
    recs = [
        TraceRecord(t=1.0, samples=2, step=0, latency_s=3.0),  # step 0 last response back at 4.0
        TraceRecord(t=2.0, samples=2, step=0, latency_s=1.0),
        TraceRecord(t=10.0, samples=2, step=1, latency_s=1.0),  # 6 s after it: update + rollout
    ]
    wl = trace_workload(recs)
    assert wl.closed_loop
    assert [s.gap_s for s in wl.steps] == [1.0, 6.0]


def test_trace_without_steps_splits_on_pauses():
    recs = [TraceRecord(t=t, samples=1) for t in (0.0, 0.2, 1.0, 9.0, 9.5)]
    wl = trace_workload(recs, step_gap_s=5.0)
    assert [len(s.requests) for s in wl.steps] == [3, 2]


def test_trace_errors_name_the_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"t": 0, "samples": 1}\n{"t": 1, "samples": 0}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2: samples"):
        read_trace(path)
    path.write_text('{"t": 0, "samples": 1}\nnot json\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2 is not JSON"):
        read_trace(path)
    with pytest.raises(FileNotFoundError):
        read_trace(tmp_path / "missing.jsonl")


def test_grpo_workload_request_sizes():
    wl = grpo_workload(steps=2, prompts=3, group=4, update_s=1, samples_per_request=5)
    assert [r.samples for r in wl.steps[0].requests] == [5, 5, 2]
    assert wl.steps[1].gap_s == 1


# -- Pareto front and recommendation ---------------------------------------------------------------
def _pt(rs: float, stage: float) -> SweepPoint:
    return SweepPoint(spec=ServingSpec(num_replicas=1), reward_stage_s=stage, replica_seconds=rs, horizon_s=0)


def test_pareto_front_and_recommendation_within_slack():
    pts = [_pt(100, 10.0), _pt(50, 20.0), _pt(80, 10.5), _pt(90, 12.0), _pt(200, 9.9), _pt(60, 25.0)]
    front = pareto_front(pts)
    assert [(p.replica_seconds, p.reward_stage_s) for p in front] == [
        (50, 20.0),
        (80, 10.5),
        (100, 10.0),
        (200, 9.9),
    ]
    # best 9.9 → within 10%: ≤ 10.89 → 80, 100, 200 qualify → the cheapest is 80
    assert recommend(pts, 0.1) is pts[2]
    assert recommend(pts, 0.0) is pts[4]
