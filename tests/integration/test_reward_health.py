"""Reward health on real Serve: per-step statistics recomputed here from the scores the server
returned (groups split across requests, two ingress replicas and two model replicas), alerts on
degenerate steps and none on a healthy one, auth and malformed queries on the new routes, the
dashboard in a real headless Chromium, and canary drift on a replica whose head changed.

One app for the module (2 replicas, 2 ingress replicas, an API key, canaries every second) on a
copy of the tiny checkpoint (the last test perturbs its value head).
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from html.parser import HTMLParser
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.integration.conftest import wait_for

KEY = "health-test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}


def _png_uri() -> str:
    import base64
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (28, 28), (10, 200, 40)).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


IMG = _png_uri()


@pytest.fixture(scope="module")
def model_copy(tiny_model_dir, tmp_path_factory) -> Path:
    dst = tmp_path_factory.mktemp("health") / "tiny-copy"
    shutil.copytree(tiny_model_dir, dst)
    return dst


@pytest.fixture(scope="module")
def app(deploy_app, model_copy):
    served = deploy_app(
        "health",
        model=str(model_copy),
        **{
            "replica.num_replicas": 2,
            "http.ingress.num_replicas": 2,
            "http.api_key": KEY,
            "health.canary.interval_s": 1.0,
            "health.step_window_s": 3600,
            "health.alerts.length_corr_min_samples": 8,
            "scorer.batching.batch_wait_timeout_s": 0.02,
        },
    )
    yield served
    served.delete()


@pytest.fixture(scope="module")
def tokenizer(model_copy):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_copy)


def _score(app, samples: list[dict]) -> list[dict]:
    """Each sample alone or in small chunks, concurrently: a group's samples reach both ingress
    replicas and both model replicas. Returns the results in sample order."""
    chunks, i = [], 0
    while i < len(samples):
        n = 1 if i % 3 else 2
        chunks.append((i, samples[i : i + n]))
        i += n

    def post(item):
        start, chunk = item
        r = httpx.post(app.url + "/v1/score", json={"samples": chunk}, headers=AUTH, timeout=120)
        assert r.status_code == 200, r.text
        return start, r.json()["results"]

    out: list[dict] = [None] * len(samples)  # type: ignore[list-item]
    with ThreadPoolExecutor(8) as pool:
        for start, results in pool.map(post, chunks):
            out[start : start + len(results)] = results
    return out


def _stats(app) -> dict:
    r = httpx.get(app.url + "/v1/stats", headers=AUTH, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()


def _step(app, samples: list[dict]) -> tuple[list[dict], dict, list[dict]]:
    """Score ``samples`` as one step (then step_done); the step's results, stats and alerts."""
    before = {s["step"] for s in _stats(app)["reward"]["steps"] if not s["open"]}
    results = _score(app, samples)
    r = httpx.post(
        app.url + "/v1/hints", json={"event": "step_done", "source": "test"}, headers=AUTH, timeout=60
    )
    assert r.status_code == 200, r.text

    def closed():
        reward = _stats(app)["reward"]
        new = [s for s in reward["steps"] if not s["open"] and s["step"] not in before]
        return new and new[0]["samples"] + new[0]["errors"] == len(samples) and (new[0], reward)

    step, reward = wait_for(closed, 60, what="the step closed with all its samples")
    return results, step, [a for a in reward["alerts"] if a["step"] == step["step"]]


def _answer(sample: dict) -> str:
    return sample["response"]


def _ranks(xs):
    return [1 + sum(y < x for y in xs) + (sum(y == x for y in xs) - 1) / 2 for x in xs]


def _spearman(x, y):
    if len(x) < 3 or len(set(x)) < 2 or len(set(y)) < 2:
        return None
    rx, ry = _ranks(x), _ranks(y)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    num = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    return num / (sum((a - mx) ** 2 for a in rx) * sum((b - my) ** 2 for b in ry)) ** 0.5


def _expected(samples, results, tokenizer) -> dict:
    ok = [(s, r["score"]) for s, r in zip(samples, results) if r["error"] is None]
    scores = [sc for _, sc in ok]
    conv = lambda s: json.dumps([s["prompt"], s.get("images")])  # noqa: E731
    groups: dict[str, list[float]] = {}
    for s, sc in ok:
        groups.setdefault(conv(s), []).append(sc)
    multi = [g for g in groups.values() if len(g) >= 2]
    seen, dups = set(), 0
    for s, _ in ok:  # arrival order inside a step is not the send order: duplicates count the same
        key = (conv(s), _answer(s))
        dups += key in seen
        seen.add(key)
    lengths = [len(tokenizer(_answer(s), add_special_tokens=False)["input_ids"]) for s, _ in ok]
    return {
        "samples": len(ok),
        "errors": len(samples) - len(ok),
        "mean": float(np.mean(scores)),
        "std": float(np.std(scores)),
        "p05": float(np.percentile(scores, 5)),
        "p50": float(np.percentile(scores, 50)),
        "p95": float(np.percentile(scores, 95)),
        "groups": len(multi),
        "zero_variance_groups": sum(max(g) - min(g) <= 1e-6 for g in multi),
        "length_corr": _spearman(lengths, scores),
        "duplicate_answers": dups,
    }


def _check(step: dict, expected: dict) -> None:
    for key, want in expected.items():
        if want is None or isinstance(want, int):
            assert step[key] == want, (key, step[key], want)
        else:
            assert step[key] == pytest.approx(want, abs=1e-5), (key, step[key], want)


WORDS = "red blue green small large circle square the a of and is it bright dark".split()


def _calibration() -> tuple[list[dict], list[dict]]:
    rng = random.Random(7)
    by_length = [
        {"prompt": "Describe the picture.", "response": " ".join(rng.choice(WORDS) for _ in range(n))}
        for n in range(1, 61)
    ]
    grouped = [
        {"prompt": f"Question {g}: what colour is it?", "response": f"It is {w} {k}.", "images": [IMG]}
        if g == 0
        else {"prompt": f"Question {g}: what colour is it?", "response": f"It is {w} {k}."}
        for g in range(4)
        for k, w in enumerate(rng.sample(WORDS, 6))
    ]
    return by_length, grouped


def test_statistics_alerts_over_several_steps(app, tokenizer):
    by_length, grouped = _calibration()
    # step 1: every group split over requests and replicas, one duplicate answer, one error
    samples = by_length + grouped + [dict(grouped[3]), {"prompt": "no response"}]
    results, step, _ = _step(app, samples)
    _check(step, _expected(samples, results, tokenizer))
    assert step["groups"] == 5 and step["duplicate_answers"] == 1 and step["errors"] == 1
    score = {
        json.dumps(s, sort_keys=True): r["score"] for s, r in zip(samples, results) if r["error"] is None
    }

    # step 2, healthy: 4 groups of 4 distinct answers, no errors, |Spearman| low (chosen from step 1)
    rng = random.Random(11)
    for _ in range(500):
        healthy = [s for g in range(4) for s in rng.sample(grouped[6 * g : 6 * g + 6], 4)]
        lengths = [len(tokenizer(s["response"], add_special_tokens=False)["input_ids"]) for s in healthy]
        corr = _spearman(lengths, [score[json.dumps(s, sort_keys=True)] for s in healthy])
        if corr is None or abs(corr) < 0.3:
            break
    results, step, alerts = _step(app, healthy)
    _check(step, _expected(healthy, results, tokenizer))
    assert alerts == [], alerts

    # step 3: every group's answers identical
    same = [
        {"prompt": f"Question {g}: what colour is it?", "response": "It is red."}
        for g in range(4)
        for _ in range(4)
    ]
    results, step, alerts = _step(app, same)
    _check(step, _expected(same, results, tokenizer))
    assert step["zero_variance_groups"] == step["groups"] == 4 and step["duplicate_answers"] == 12
    assert {a["signal"] for a in alerts} == {"zero_variance_groups", "duplicate_answers"}

    # step 4: scores ordered by answer length (the longest run of step 1 where both increase)
    pairs = sorted(
        (
            len(tokenizer(s["response"], add_special_tokens=False)["input_ids"]),
            score[json.dumps(s, sort_keys=True)],
            s,
        )
        for s in by_length
    )
    chain = _longest_increasing(pairs)
    assert len(chain) >= 8, f"step 1 gave only {len(chain)} length-ordered answers"
    results, step, alerts = _step(app, chain)
    _check(step, _expected(chain, results, tokenizer))
    assert step["length_corr"] == pytest.approx(1.0)
    assert "length_corr" in {a["signal"] for a in alerts}

    # step 5: errors over 5%
    bad = grouped[:10] + [{"prompt": "no response"}] * 2
    results, step, alerts = _step(app, bad)
    _check(step, _expected(bad, results, tokenizer))
    assert {a["signal"] for a in alerts} == {"error_rate"}
    assert [a["value"] for a in alerts] == [pytest.approx(2 / 12)]


def _longest_increasing(pairs) -> list[dict]:
    """Samples whose token length and score both strictly increase (score gaps over 1e-4)."""
    best: list[list] = []
    for n, sc, s in pairs:
        prev = [c for j, c in enumerate(best) if pairs[j][0] < n and pairs[j][1] < sc - 1e-4]
        best.append(max(prev, key=len, default=[]) + [s])
    return max(best, key=len)


def test_prometheus_scrape_has_every_grafana_metric(app):
    import ray

    from tests.unit.test_grafana_dashboard import dashboard_queries

    wanted = {m for _, expr in dashboard_queries() for m in re.findall(r"\bray_[a-z0-9_]+", expr)}
    ports = {n["MetricsExportPort"] for n in ray.nodes() if n["Alive"] and n.get("MetricsExportPort")}
    assert ports, "no Ray metrics export port"

    def scraped() -> set[str]:
        text = ""
        for port in ports:
            try:
                text += httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
            except httpx.HTTPError:
                pass
        return set(re.findall(r"^(ray_[a-z0-9_]+)", text, re.M))

    # Ray reports metrics every few seconds; the last scrape's missing names are in the failure.
    missing, deadline = sorted(wanted), time.monotonic() + 120
    while missing and time.monotonic() < deadline:
        time.sleep(2)
        missing = sorted(wanted - scraped())
    assert not missing, f"not in Ray's Prometheus scrape: {missing}"


def test_monitor_cli_against_the_server(app, tmp_path, capsys):
    from rlreward.commands.main import main

    png = tmp_path / "health.png"
    assert main(["monitor", "--url", app.url, "--api-key", KEY, "--json", "--plot", str(png)]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["reward"]["steps"] and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["monitor", "--url", app.url, "--api-key", KEY, "--once"]) == 0
    table = capsys.readouterr().out
    for s in shown["reward"]["steps"]:
        if not s["open"]:
            assert f"{s['mean']:.4g}" in table
    assert main(["monitor", "--url", app.url, "--once"]) == 2
    assert "401" in capsys.readouterr().err


def test_new_routes_refuse_missing_or_wrong_keys_and_malformed_queries(app):
    for route in ("/v1/stats", "/dashboard"):
        r = httpx.get(app.url + route, timeout=30)
        assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
        r = httpx.get(app.url + route, headers={"Authorization": "Bearer wrong"}, timeout=30)
        assert r.status_code == 401
        r = httpx.get(app.url + route, auth=("anyone", "wrong"), timeout=30)
        assert r.status_code == 401
        for query in ("steps=abc", "steps=0", "bogus=1"):
            r = httpx.get(f"{app.url}{route}?{query}", headers=AUTH, timeout=30)
            assert r.status_code == 422 and r.json()["error"]["code"] == "malformed_request", (route, query)
    assert httpx.get(app.url + "/dashboard", timeout=30).headers["www-authenticate"].startswith("Basic")
    assert httpx.get(app.url + "/v1/stats", auth=("me", KEY), timeout=30).status_code == 200
    assert httpx.post(app.url + "/v1/stats", headers=AUTH, timeout=30).status_code == 405
    r = httpx.get(app.url + "/v1/stats?steps=2", headers=AUTH, timeout=30)
    assert r.status_code == 200 and len([s for s in r.json()["reward"]["steps"] if not s["open"]]) <= 2


class _Cells(HTMLParser):
    """Collects ``(table id, row data-*, cell data-field, data-value, text)`` from the dumped DOM."""

    def __init__(self) -> None:
        super().__init__()
        self.table = self.row = self.cell = None
        self.cells: list[list] = []
        self.ids: dict[str, str] = {}
        self._id = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table":
            self.table = a.get("id")
        elif tag == "tr":
            self.row = a.get("data-step") or a.get("data-signal") or a.get("data-replica")
        elif tag == "td":
            self.cell = [self.table, self.row, a.get("data-field"), a.get("data-value"), ""]
            self.cells.append(self.cell)
        elif a.get("id") in ("throughput", "backlog", "replica-count", "alert-count"):
            self._id = a["id"]
            self.ids[self._id] = ""

    def handle_endtag(self, tag):
        if tag == "td":
            self.cell = None
        self._id = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell[4] += data
        if self._id:
            self.ids[self._id] += data


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        if os.environ.get("CI"):  # CI runs make setup as root, which installs it: never skip there
            pytest.fail(
                "chromium is missing in CI: make setup should have installed it (apt-get install chromium)"
            )
        pytest.skip(
            "Debian's chromium is not installed (make setup installs it as root: apt-get install chromium)"
        )
    return found


def test_dashboard_in_headless_chromium_shows_what_the_route_returns(app, tmp_path):
    chromium = _chromium()
    wait_for(
        lambda: len(_stats(app)["reward"]["canary"]["replicas"]) >= 2, 120, what="canaries of both replicas"
    )
    url = app.url.replace("http://", f"http://viewer:{KEY}@") + "/dashboard"
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'profile'}",
    ]
    dom = subprocess.run([chromium, *flags, "--dump-dom", url], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    stats = _stats(app)["reward"]
    parser = _Cells()
    parser.feed(dom.stdout)
    steps = {s["step"]: s for s in stats["steps"] if not s["open"]}
    assert steps, "no closed step to show"
    shown = {
        (row, field): (value, text) for table, row, field, value, text in parser.cells if table == "steps"
    }
    for n, s in steps.items():
        for field in ("samples", "errors", "mean", "std", "p05", "p50", "p95", "groups", "length_corr"):
            value, text = shown[(str(n), field)]
            if s[field] is None:
                assert value is None and text == "—"
            else:
                assert float(value) == pytest.approx(s[field], abs=1e-12)
                assert float(text) == pytest.approx(s[field], rel=1e-5, abs=1e-9)
    alert_rows = [c for c in parser.cells if c[0] == "alerts" and c[2] == "signal"]
    assert len(alert_rows) == int(parser.ids["alert-count"]) and alert_rows
    replica_rows = {c[1] for c in parser.cells if c[0] == "replicas"}
    assert {e["replica_id"] for e in stats["canary"]["replicas"]} <= replica_rows
    assert re.fullmatch(r"[0-9.e+-]+", parser.ids["throughput"].strip())
    # A screenshot, kept as a test artifact.
    artifacts = Path(".cache/artifacts")
    artifacts.mkdir(parents=True, exist_ok=True)
    shot = tmp_path / "dashboard.png"
    run = subprocess.run(
        [chromium, *flags, "--window-size=1280,1400", f"--screenshot={shot}", url],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", run.stderr[-2000:]
    shutil.copy(shot, artifacts / "dashboard.png")


def test_canary_drift_on_a_replica_whose_head_changed(app, model_copy):
    import ray
    import torch
    from safetensors.torch import load_file, save_file

    canary = wait_for(
        lambda: (c := _stats(app)["reward"]["canary"])["reference"] and len(c["replicas"]) >= 2 and c,
        120,
        what="reference canary scores",
    )
    assert all(e["max_abs_drift"] <= 1e-5 for e in canary["replicas"]), canary["replicas"]
    head = model_copy / "value_head.safetensors"
    tensors = load_file(head)
    tensors["v_head.summary.bias"] = tensors["v_head.summary.bias"] + torch.tensor([0.05])
    save_file(tensors, head)
    victim = canary["replicas"][0]
    ray.kill(ray.get_actor(victim["actor_name"], namespace="serve"), no_restart=False)

    def drifted():
        c = _stats(app)["reward"]
        fresh = [
            e
            for e in c["canary"]["replicas"]
            if e["replica_id"] not in {x["replica_id"] for x in canary["replicas"]}
        ]
        alerts = [a for a in c["alerts"] if a["signal"] == "canary_drift"]
        return fresh and alerts and (fresh, alerts, c)

    fresh, alerts, reward = wait_for(drifted, 180, what="the restarted replica's canary drift alert")
    assert fresh[0]["reference_drift"] == pytest.approx(0.05, abs=1e-4)
    assert {a["replica_id"] for a in alerts} == {fresh[0]["replica_id"]}
    survivor = [
        e for e in reward["canary"]["replicas"] if e["replica_id"] == canary["replicas"][1]["replica_id"]
    ]
    assert survivor and survivor[0]["max_abs_drift"] <= 1e-5
