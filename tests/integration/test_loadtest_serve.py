"""``rlreward loadtest`` against a real Serve app on CPU: its counts (sent, answered, errors) match what
the replica's own counters saw; the Serve timeline is read; a run's recorded trace replays over HTTP
with the same requests, in order, and the same counts."""

from __future__ import annotations

import argparse
import json

import pytest

from tests.conftest import noise_png


@pytest.fixture(scope="module")
def lt_app(deploy_app):
    app = deploy_app("loadtest", **{"replica.max_ongoing_requests": 64})
    yield app
    app.delete()


def _args(*argv: str) -> argparse.Namespace:
    from rlreward.commands import loadtest

    p = argparse.ArgumentParser()
    loadtest.add_arguments(p)
    return p.parse_args([*argv, "--no-progress", "--poll-s", "0.2"])


def _replica_counters(app) -> dict[str, int]:
    stats = app.replica.broadcast("stats").results(timeout_s=30)
    return {k: sum(s[k] for s in stats) for k in ("samples", "errors", "requests")}


def test_loadtest_counts_match_the_replicas_counters_and_the_trace_replays(ray_cluster, lt_app, tmp_path):
    from rlreward.commands import loadtest

    img = noise_png(3, (84, 56))
    import base64

    b64 = base64.b64encode(img).decode()
    rows = [
        {"prompt": f"Describe picture {i // 3}.", "response": f"answer {i}", "images": [b64]}
        for i in range(11)
    ]
    rows.insert(4, {"prompt": "broken", "response": "x", "images": ["data:image/png;base64,AAAA"]})
    dataset = tmp_path / "samples.jsonl"
    dataset.write_text("".join(json.dumps(r) + "\n" for r in rows))

    before = _replica_counters(lt_app)
    out = tmp_path / "grpo.json"
    args = _args(
        "--app-name", lt_app.name, "--ray-address", ray_cluster.address, "--shape", "grpo",
        "--steps", "2", "--prompts", "2", "--group", "3", "--update-s", "0.5",
        "--dataset", str(dataset), "--json", str(out),
    )  # fmt: skip
    assert loadtest.run(args) == 0
    report = json.loads(out.read_text())
    after = _replica_counters(lt_app)
    server = {k: after[k] - before[k] for k in after}
    # 2 steps x 2 prompts x 3 = 12 samples from the 12-row dataset: one broken image among them
    assert (report["sent"], report["answered"], report["errors"]) == (12, 12, 1)
    assert (server["samples"], server["errors"], server["requests"]) == (12, 1, 4)
    assert report["server"] == server
    assert report["retries"] == 0 and report["failed_requests"] == 0
    assert [s["samples"] for s in report["steps"]] == [6, 6]
    assert report["timeline"] and all(p["replicas"] == 1 for p in report["timeline"])
    assert report["replica_seconds"] > 0

    # Replay the run's own trace over HTTP: same requests in the same order, same counts at the server.
    trace = out.with_suffix(".trace.jsonl")
    replay = tmp_path / "replay.json"
    before = _replica_counters(lt_app)
    args = _args("--url", lt_app.url, "--shape", "trace", "--trace", str(trace), "--json", str(replay))
    assert loadtest.run(args) == 0
    rep = json.loads(replay.read_text())
    after = _replica_counters(lt_app)
    assert (rep["sent"], rep["answered"]) == (12, 12)
    # HTTP alone: the timeline comes from GET /v1/stats (issue 21)
    assert rep["timeline"] and all(p["replicas"] == 1 for p in rep["timeline"])
    assert after["samples"] - before["samples"] == 12 and after["requests"] - before["requests"] == 4

    def order(path):
        recs = [json.loads(line) for line in open(path) if '"request"' in line]
        return [(r["step"], r["samples"]) for r in sorted(recs, key=lambda r: r["t"])]

    assert order(replay.with_suffix(".trace.jsonl")) == order(trace)
