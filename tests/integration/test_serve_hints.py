"""Phase hints on real Ray Serve: the trainer's ``expect`` raises the replica target through the
hint policy (``replica.autoscaling.hints``), ``step_done`` lowers it; hints are authenticated and
validated like every other call. Conditions are awaited with generous limits (no timing asserts).
"""

from __future__ import annotations

import httpx
import pytest

from rlreward.client import AuthenticationError, RewardClient
from tests.integration.conftest import wait_for

KEY = "hint-test-key"


def _target(app_name: str) -> int:
    from ray import serve

    from rlreward.serving.config import REPLICA_DEPLOYMENT

    dep = serve.status().applications[app_name].deployments[REPLICA_DEPLOYMENT]
    return dep.replica_states.get("RUNNING", 0) + dep.replica_states.get("STARTING", 0)


@pytest.fixture(scope="module")
def hinted_app(deploy_app):
    return deploy_app(
        "hinted",
        api_key=KEY,
        **{
            "replica.autoscaling": {
                "min_replicas": 1,
                "max_replicas": 2,
                # Load alone never scales this app (no caller sends 100 requests): only hints do.
                "target_ongoing_requests": 100,
                "upscale_delay_s": 0,
                "downscale_delay_s": 0,
                "hints": {"replica_samples_per_s": 10, "release_to": "min"},
            }
        },
    )


@pytest.mark.filterwarnings("ignore:`look_back_period_s`:FutureWarning")
def test_expect_scales_up_and_step_done_scales_back_down(hinted_app):
    app = hinted_app
    client = RewardClient(url=app.url, api_key=KEY)
    assert app.running_replicas() == 1
    # The policy creates the app's hint board on its first control tick after the deploy.
    wait_for(lambda: client.rollout_started().get("accepted"), 60, what="the hint board")
    # 1000 samples within 10 s at 10 samples/s per replica: 10 replicas wanted, max_replicas 2.
    assert client.expect(1000, within_s=10) == {"accepted": True}
    wait_for(lambda: app.running_replicas() == 2, 180, what="a second replica after expect()")
    # Scoring still works while scaled, and results stay with their samples.
    results = client.score([{"prompt": f"q{i}", "response": f"a{i}"} for i in range(8)])
    assert all(r.ok for r in results)
    assert client.step_done() == {"accepted": True}
    wait_for(lambda: _target(app.name) == 1, 180, what="back to one replica after step_done()")


def test_handle_mode_hints_reach_the_same_policy(hinted_app):
    client = RewardClient(app_name=hinted_app.name)
    wait_for(lambda: client.rollout_started().get("accepted"), 60, what="the hint board (handle)")
    assert client.expect(1000, within_s=10) == {"accepted": True}
    wait_for(lambda: _target(hinted_app.name) == 2, 180, what="two replicas after a handle-mode expect()")
    assert client.step_done() == {"accepted": True}
    wait_for(lambda: _target(hinted_app.name) == 1, 180, what="one replica after a handle-mode step_done()")
    with pytest.raises(Exception, match="n_samples"):
        # Handle callers are validated too (the client refuses first; the ingress method as well).
        hinted_app_ingress_post(hinted_app.name, {"event": "expect"})


def hinted_app_ingress_post(app_name: str, body: dict) -> dict:
    from ray import serve

    return (
        serve.get_deployment_handle("RewardIngress", app_name=app_name)
        .post_hint.remote(body)
        .result(timeout_s=30)
    )


@pytest.mark.parametrize(
    "body",
    [
        {"event": "expect"},  # no n_samples
        {"event": "expect", "n_samples": "12"},  # a string, not an int
        {"event": "expect", "n_samples": 0},
        {"event": "expect", "n_samples": 8, "within_s": -1},
        {"event": "scale_to", "n_samples": 8},  # not an event
        {"event": "step_done", "replicas": 4},  # unknown field
        [1, 2, 3],
    ],
)
def test_malformed_hint_is_refused_with_422(hinted_app, body):
    r = httpx.post(
        f"{hinted_app.url}/v1/hints", json=body, headers={"Authorization": f"Bearer {KEY}"}, timeout=30
    )
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == "malformed_request"


def test_unauthenticated_hint_is_refused_with_401(hinted_app):
    body = {"event": "expect", "n_samples": 1000, "within_s": 1}
    assert httpx.post(f"{hinted_app.url}/v1/hints", json=body, timeout=30).status_code == 401
    wrong = {"Authorization": "Bearer not-the-key"}
    assert httpx.post(f"{hinted_app.url}/v1/hints", json=body, headers=wrong, timeout=30).status_code == 401
    with pytest.raises(AuthenticationError):
        RewardClient(url=hinted_app.url, api_key="not-the-key").expect(1000, within_s=1)


def test_app_without_hint_policy_says_hints_are_not_used(serve_app):
    answer = RewardClient(url=serve_app.url, api_key=serve_app.api_key).expect(64, within_s=5)
    assert answer["accepted"] is False and "no hint policy" in answer["reason"]


def test_tune_measure_calibrates_on_a_real_deployment_and_cleans_up(ray_cluster, tiny_model_dir):
    from ray import serve

    from rlreward.offline.tune.measure import CALIBRATION_APP, calibrate
    from rlreward.serving.config import load_app_config

    cfg = load_app_config({"model": tiny_model_dir, "replica.ray_actor_options.num_cpus": 0.1})
    cal = calibrate(cfg, prompts=2, group=4, bursts=2, log=lambda *_: None)
    assert [n for n, _ in cal.bursts] == [8, 8]
    assert cal.samples_per_s == pytest.approx(
        sorted(n / s for n, s in cal.bursts)[0] / 2 + sorted(n / s for n, s in cal.bursts)[1] / 2
    )
    assert cal.cold_start_s is not None and cal.cold_start_s > 0
    assert CALIBRATION_APP not in serve.status().applications
