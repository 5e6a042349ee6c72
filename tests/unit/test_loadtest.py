"""Trace recording and replay without a server (httpx MockTransport): the client's recorder writes the
trace format ``rlreward tune --trace`` reads (sizes, groups, steps, retries; no payload), and
``rlreward loadtest --shape trace`` replays it with the same arrival order and sizes; the loadtest's
counts and the plan shapes."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from rlreward.client import RewardClient
from rlreward.trace import TraceRecorder, sample_sizes
from tests.conftest import noise_png


def _server(received: list[dict], fail_first: set[int] | None = None, bad_marker: str = "BAD"):
    """A fake /v1/score: score = number of response characters; a sample whose response contains
    ``bad_marker`` gets an error; request numbers in ``fail_first`` answer 503 once."""
    seen = {"n": 0}
    failed: set[int] = set()

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        n = seen["n"]
        seen["n"] += 1
        if fail_first and n in fail_first and n not in failed:
            failed.add(n)
            return httpx.Response(503, json={"error": {"code": "overloaded", "message": "busy"}})
        received.append(body)
        results = [
            {"score": None, "error": {"code": "invalid_sample", "message": "bad"}}
            if bad_marker in s["response"]
            else {"score": float(len(s["response"])), "error": None}
            for s in body["samples"]
        ]
        return httpx.Response(200, json={"model": "fake", "results": results})

    return handler


def _grpo_samples(prompts: int, group: int) -> list[list[dict]]:
    out = []
    for p in range(prompts):
        img = noise_png(p, (56 + 28 * p, 84))
        out.append(
            [
                {
                    "prompt": f"prompt number {p} " * (p + 1),
                    "response": "x" * (5 + k + 3 * p),
                    "images": [img],
                }
                for k in range(group)
            ]
        )
    return out


def _records(path) -> list[dict]:
    return [json.loads(line) for line in open(path) if line.strip()]


def test_client_records_sizes_groups_steps_and_retries_but_no_payload(tmp_path):
    path = tmp_path / "run.jsonl"
    received: list[dict] = []
    client = RewardClient(
        url="http://rm",
        transport=httpx.MockTransport(_server(received, fail_first={1})),
        record_trace=str(path),
        chunk_size=4,
        backoff_s=0.01,
    )
    groups = _grpo_samples(prompts=2, group=4)
    for g in groups:  # step 0: one request per group
        client.score(g)
    TraceRecorder.for_path(path).step_done()
    client.score(groups[0][:2] + [{"prompt": "alone", "response": "BAD"}])  # step 1: mixed request

    head, *recs = _records(path)
    assert head["kind"] == "header" and head["format"] == "rlreward-trace"
    assert [r["samples"] for r in recs] == [4, 4, 3]
    assert [r["step"] for r in recs] == [0, 0, 1]
    assert [r["retries"] for r in recs] == [0, 1, 0]  # the second request met one 503
    assert [r["errors"] for r in recs] == [0, 0, 1]
    g0, g1 = recs[0]["group"], recs[1]["group"]
    assert g0 and g1 and g0 != g1
    assert recs[2]["group"] is None and [s["group"] for s in recs[2]["sizes"][:2]] == [g0, g0]
    sizes = recs[0]["sizes"][1]
    assert (sizes["prompt_chars"], sizes["response_chars"], sizes["images"]) == (
        len(groups[0][1]["prompt"]),
        len(groups[0][1]["response"]),
        [[56, 84]],
    )
    assert recs[1]["sizes"][0]["images"] == [[84, 84]]
    text = path.read_text()
    assert "prompt number" not in text and "xxxxx" not in text  # no payload
    assert all(r["latency_s"] >= 0 and r["t"] >= 0 for r in recs)

    from rlreward.offline.tune.workload import read_trace, trace_workload

    wl = trace_workload(read_trace(path))  # rlreward tune --trace reads what the client wrote
    assert [s.samples for s in wl.steps] == [8, 3]


def test_a_recorded_trace_replays_with_the_same_arrival_order_and_sizes(tmp_path):
    import argparse

    from rlreward.commands import loadtest

    original = tmp_path / "original.jsonl"
    client = RewardClient(
        url="http://rm", transport=httpx.MockTransport(_server([])), record_trace=str(original), chunk_size=16
    )
    groups = _grpo_samples(prompts=3, group=3)
    sent: list[list[dict]] = [groups[0], [groups[1][0]], groups[2][:2], [{"prompt": "p", "response": "r"}]]
    for req in sent:  # well-separated arrivals: the order is unambiguous
        client.score(req)
        time.sleep(0.06)
    TraceRecorder.for_path(original).step_done()
    client.score(groups[1][1:])

    received: list[dict] = []
    out = tmp_path / "replay.json"
    parser = argparse.ArgumentParser()
    loadtest.add_arguments(parser)
    args = parser.parse_args(
        [
            "--url",
            "http://rm",
            "--shape",
            "trace",
            "--trace",
            str(original),
            "--json",
            str(out),
            "--no-progress",
        ]
    )
    args.transport = httpx.MockTransport(_server(received))
    assert loadtest.run(args) == 0

    def shape(records):
        return [
            [{k: s[k] for k in ("prompt_chars", "response_chars", "images")} for s in r["sizes"]]
            for r in sorted(records, key=lambda r: r["t"])
        ]

    orig = [r for r in _records(original) if r.get("kind") == "request"]
    # What the server received, in arrival order, has the recorded sizes
    assert [[sample_sizes(s)[1] for s in body["samples"]] for body in received] == shape(orig)
    # and the replay's own trace has the same steps, and group structure
    replay = [r for r in _records(out.with_suffix(".trace.jsonl")) if r.get("kind") == "request"]
    assert shape(replay) == shape(orig)
    assert [r["step"] for r in sorted(replay, key=lambda r: r["t"])] == [0, 0, 0, 0, 1]

    def groups_of(records):
        ids: dict[str, int] = {}
        return [
            [ids.setdefault(s["group"], len(ids)) for s in r["sizes"]]
            for r in sorted(records, key=lambda r: r["t"])
        ]

    assert groups_of(replay) == groups_of(orig)
    report = json.loads(out.read_text())
    assert (report["sent"], report["answered"], report["errors"]) == (9, 9, 0)
    assert [s["samples"] for s in report["steps"]] == [7, 2]
    assert out.with_suffix(".png").stat().st_size > 0


def test_loadtest_counts_errors_retries_and_steps_for_a_grpo_run(tmp_path):
    import argparse

    from rlreward.commands import loadtest

    dataset = tmp_path / "d.jsonl"
    rows = [{"prompt": f"q{i}", "response": "BAD" if i == 2 else f"a{i}"} for i in range(6)]
    dataset.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    received: list[dict] = []
    parser = argparse.ArgumentParser()
    loadtest.add_arguments(parser)
    out = tmp_path / "g.json"
    args = parser.parse_args(
        [
            "--url",
            "http://rm",
            "--shape",
            "grpo",
            "--steps",
            "2",
            "--prompts",
            "2",
            "--group",
            "3",
            "--update-s",
            "0.05",
            "--dataset",
            str(dataset),
            "--json",
            str(out),
            "--no-progress",
            "--retry-budget-s",
            "5",
        ]
    )
    args.transport = httpx.MockTransport(_server(received, fail_first={0}))
    assert loadtest.run(args) == 0
    report = json.loads(out.read_text())
    assert (report["sent"], report["answered"], report["errors"], report["retries"]) == (12, 12, 2, 1)
    assert [(s["samples"], s["requests"]) for s in report["steps"]] == [(6, 2), (6, 2)]
    assert sum(len(b["samples"]) for b in received) == 12
    assert all(s["reward_stage_s"] > 0 for s in report["steps"])
    assert (
        report["timeline"] == [] and report["server"] is None
    )  # a server without GET /v1/stats: client counts only
    assert report["latency_p50_s"] <= report["latency_p99_s"]


def test_stream_plan_sends_one_sample_per_request_and_grpo_plan_one_group_per_request():
    from rlreward.offline.loadtest.plan import SampleMaker, grpo_plan, stream_plan

    maker = SampleMaker(prompt_chars=(30, 30), response_chars=(5, 9), image_size=None)
    s = stream_plan(samples=10, concurrency=4, maker=maker, steps=2, update_s=1.0, group=5)
    assert [len(r.samples) for st in s.steps for r in st.requests] == [1] * 20
    assert [st.gap_s for st in s.steps] == [0.0, 1.0] and s.steps[0].concurrency == 4
    first_group = [r.samples[0]["prompt"] for r in s.steps[0].requests[:5]]
    assert len(set(first_group)) == 1 and s.steps[0].requests[5].samples[0]["prompt"] != first_group[0]
    g = grpo_plan(steps=1, prompts=3, group=4, update_s=0, maker=maker)
    assert [len(r.samples) for r in g.steps[0].requests] == [4, 4, 4]
    assert all(len({x["prompt"] for x in r.samples}) == 1 for r in g.steps[0].requests)
    assert all(len(x["response"]) in range(5, 10) for r in g.steps[0].requests for x in r.samples)


@pytest.mark.parametrize("bad", ["12x", "10x10"])
def test_bad_image_size_is_a_usage_error(bad):
    from rlreward.errors import UsageError
    from rlreward.offline.loadtest.plan import parse_image_size

    with pytest.raises(UsageError):
        parse_image_size(bad)


def test_the_step_done_hint_starts_a_new_step_in_the_trace(tmp_path):
    path = tmp_path / "hinted.jsonl"
    score = _server([])

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/hints":
            return httpx.Response(200, json={"accepted": False, "reason": "no hint policy"})
        return score(request)

    client = RewardClient(url="http://rm", transport=httpx.MockTransport(handler), record_trace=str(path))
    client.score([{"prompt": "a", "response": "b"}])
    client.score([{"prompt": "a", "response": "c"}])  # no pause: the same step
    client.step_done()
    client.score([{"prompt": "a", "response": "d"}])
    assert [r["step"] for r in _records(path)[1:]] == [0, 0, 1]


def test_record_trace_survives_pickling_and_comes_from_the_adapters_client_spec(tmp_path):
    import pickle

    from rlreward.adapters._common import ClientSpec

    path = tmp_path / "spec.jsonl"
    client = ClientSpec(url="http://rm:8000", record_trace=str(path)).build_sync()
    assert client.record_trace == str(path) and client._trace is TraceRecorder.for_path(path)
    clone = pickle.loads(pickle.dumps(client))  # a trainer worker's copy appends to the same trace
    assert clone._trace is TraceRecorder.for_path(path)
    assert ClientSpec(url="http://rm:8000").build_sync()._trace is None  # off by default


def test_http_monitor_reads_the_replicas_from_v1_stats_and_counts_the_awake_ones():
    """``--url`` alone: the timeline from ``GET /v1/stats`` (the key sent), asleep replicas not awake;
    a server without the route is refused with what it answered."""
    from rlreward.offline.loadtest.runner import ServeMonitor, replica_seconds

    seen: list[str | None] = []
    replicas = [
        {"replica_id": "a", "state": "awake", "backlog_samples": 3, "cpu_s": 1.0, "samples": 5},
        {"replica_id": "b", "state": "asleep", "backlog_samples": 0, "cpu_s": 2.0, "samples": 7},
    ]

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("authorization"))
        if request.url.path == "/v1/stats":
            return httpx.Response(200, json={"replicas": replicas, "reward": {}})
        return httpx.Response(404, json={"error": {"code": "not_found", "message": "no"}})

    monitor = ServeMonitor.over_http("http://rm", "k", transport=httpx.MockTransport(handler))
    assert seen == ["Bearer k"] and monitor.counters()["samples"] == 12
    monitor.start(time.perf_counter())
    for _ in range(200):
        if monitor.timeline:
            break
        time.sleep(0.01)
    monitor.stop()
    row = monitor.timeline[0]
    assert (row["replicas"], row["awake"], row["queue"]) == (2, 1, 3)
    assert replica_seconds([{**row, "t": 0.0}], 10.0, "awake") == 10.0
    assert replica_seconds([{**row, "t": 0.0}], 10.0) == 20.0

    def missing(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, json={"error": {"code": "not_found"}})

    with pytest.raises(RuntimeError, match="GET /v1/stats answered 404"):
        ServeMonitor.over_http("http://rm", transport=httpx.MockTransport(missing))
