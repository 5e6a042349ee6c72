"""Phase hints without a cluster: the hint board's bookkeeping, the hinted policy's desire on a real
Serve ``AutoscalingContext``, the config → Serve policy mapping, and the clients' hint calls going
through the real ingress validation into a real board (an httpx mock transport plays the wire)."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from rlreward.client import AsyncRewardClient, AuthenticationError, RewardClient
from rlreward.serving.autoscaling import HintBoard, HintedPolicy, SampleBacklogPolicy
from rlreward.serving.config import AutoscalingOptions


class _Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_board_sums_active_expectations_and_releases_after_step_done_and_hold():
    clock = _Clock()
    board = HintBoard(hold_s=2.0, clock=clock)
    assert board.snapshot()["active"] == 0 and not board.snapshot()["released"]
    assert board.post("expect", "a", n_samples=512, within_s=8.0) == {"accepted": True}
    assert board.post("expect", "b", n_samples=100, within_s=10.0) == {"accepted": True}
    snap = board.snapshot()
    assert (snap["active"], snap["samples"], snap["rate"]) == (2, 612, 512 / 8 + 100 / 10)
    board.post("step_done", "a")
    clock.t += 1.9  # still held
    assert board.snapshot()["active"] == 2
    clock.t += 0.1
    snap = board.snapshot()
    assert (snap["active"], snap["rate"], snap["released"]) == (1, 10.0, False)  # b still expects
    board.post("step_done", "b")
    clock.t += 2.0
    assert board.snapshot() | {"posted": 0} == {
        "rate": 0,
        "samples": 0,
        "active": 0,
        "released": True,
        "posted": 0,
    }
    # rollout_started re-announces a's last expectation and ends the release.
    board.post("rollout_started", "a")
    snap = board.snapshot()
    assert (snap["active"], snap["rate"], snap["released"]) == (1, 64.0, False)
    # a source that never expected anything: rollout_started changes nothing
    board.post("rollout_started", "new")
    assert board.snapshot()["active"] == 1


def test_board_expires_an_expectation_without_step_done_and_refuses_bad_events():
    clock = _Clock()
    board = HintBoard(default_within_s=5.0, ttl_s=60.0, clock=clock)
    assert board.post("expect", "a", n_samples=50) == {"accepted": True}  # default within_s
    assert board.snapshot()["rate"] == 10.0
    clock.t += 60.0
    snap = board.snapshot()
    assert snap["active"] == 0 and not snap["released"]  # expired: back to the base policy, not min
    assert not HintBoard().post("expect", "a", n_samples=50)["accepted"]  # no within_s anywhere
    assert not board.post("expect", "a", n_samples=0)["accepted"]
    assert not board.post("scale", "a")["accepted"]


def _ctx(*, running: int = 1, total: float = 0.0, queued: float = 0.0, backlogs=None, lo=1, hi=4, tor=2.0):
    from ray.serve._private.common import DeploymentID
    from ray.serve.config import AutoscalingConfig, AutoscalingContext

    return AutoscalingContext(
        deployment_id=DeploymentID(name="RewardReplica", app_name="app"),
        deployment_name="RewardReplica",
        app_name="app",
        current_num_replicas=running,
        target_num_replicas=running,
        running_replicas=[],
        total_num_requests=total,
        total_queued_requests=queued,
        aggregated_metrics={"backlog_samples": backlogs} if backlogs else {},
        raw_metrics={},
        capacity_adjusted_min_replicas=lo,
        capacity_adjusted_max_replicas=hi,
        policy_state={},
        last_scale_up_time=None,
        last_scale_down_time=None,
        current_time=None,
        config=AutoscalingConfig(min_replicas=lo, max_replicas=hi, target_ongoing_requests=tor),
    )


def _snap(rate: float = 0.0, active: int = 0, released: bool = False) -> dict:
    return {"rate": rate, "samples": 0, "active": active, "released": released, "posted": 1}


def test_hinted_policy_raises_the_request_policy_while_a_hint_is_active_and_drops_to_min_after():
    policy = HintedPolicy(replica_samples_per_s=20.0)
    ctx = _ctx(running=1, total=3.0)  # Serve's policy alone: 3 / 2 = 1.5
    assert policy.decide(ctx, None)[0] == 1.5  # no board answer yet: plain Serve autoscaling
    assert policy.decide(ctx, _snap())[0] == 1.5  # before any hint
    # 512 samples within 8 s at 20 samples/s per replica: ceil(3.2) = 4 replicas
    desired, state = policy.decide(ctx, _snap(rate=512 / 8, active=1))
    assert desired == 4 and state["hint"]["hint_replicas"] == 4
    assert policy.decide(ctx, _snap(rate=10_000.0, active=1))[0] == 4  # bounded by max_replicas
    assert policy.decide(_ctx(running=1, total=20.0), _snap(rate=1.0, active=1))[0] == 10  # load wins
    assert policy.decide(ctx, _snap(released=True))[0] == 1  # step done: min_replicas
    base = HintedPolicy(replica_samples_per_s=20.0, release_to="base")
    assert base.decide(ctx, _snap(released=True))[0] == 1.5


def test_hinted_policy_on_the_sample_backlog():
    policy = HintedPolicy(replica_samples_per_s=20.0, target_backlog_samples=64)
    ctx = _ctx(running=2, total=2.0, backlogs={"r1": 200.0, "r2": 200.0}, hi=8)
    assert policy.decide(ctx, None)[0] == SampleBacklogPolicy(64)(ctx)[0] == 7
    assert policy.decide(ctx, _snap(rate=20.0 * 8, active=1))[0] == 8


def test_hint_options_become_the_serve_policy_that_serve_accepts_and_instantiates():
    from ray.serve.config import AutoscalingConfig

    opts = AutoscalingOptions(
        max_replicas=4,
        upscale_delay_s=0,
        target_backlog_samples=32,
        hints={"replica_samples_per_s": 12.5, "default_within_s": 6, "release_to": "base"},
    )
    serve_cfg = AutoscalingConfig(**opts.to_serve())
    fn = serve_cfg.policy.get_policy()
    assert fn.__name__ == "HintedPolicy"
    policy = fn(**serve_cfg.policy.policy_kwargs)
    assert (policy.samples_per_s, policy.target_backlog_samples, policy.release_to) == (12.5, 32, "base")
    assert policy.board_args == {"default_within_s": 6.0, "hold_s": 0.0, "ttl_s": 600.0}
    with pytest.raises(ValueError):
        AutoscalingOptions(hints={"replica_samples_per_s": 0})
    plain = AutoscalingOptions(max_replicas=2).to_serve()
    assert "policy" not in plain and "hints" not in plain


def test_the_simulator_runs_the_served_policy_math():
    from rlreward.offline.tune import simulator
    from rlreward.serving import autoscaling

    for name in (
        "hint_desired_replicas",
        "hinted_policy_desired",
        "backlog_policy_desired",
        "request_policy_desired",
    ):
        assert getattr(simulator, name) is getattr(autoscaling, name)


# -- the clients, through the real ingress validation, into a real board ------------------------
KEY = "k3y"


class _HintServer:
    def __init__(self) -> None:
        self.board = HintBoard()
        self.bodies: list[dict] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        from rlreward.serving.ingress import HintRequest, HttpError, _parse_json, _validate

        assert request.url.path == "/v1/hints"
        if request.headers.get("authorization") != f"Bearer {KEY}":
            return httpx.Response(401, json={"error": {"code": "unauthorized", "message": "wrong token"}})
        self.bodies.append(json.loads(request.content))
        try:
            hint = _validate(HintRequest, _parse_json(request.content))
        except HttpError as exc:
            return httpx.Response(exc.status, json={"error": {"code": exc.code, "message": exc.message}})
        return httpx.Response(200, json=self.board.post(**hint.model_dump(exclude_none=True)))


def test_sync_client_hints_reach_the_board():
    server = _HintServer()
    client = RewardClient(url="http://rm", api_key=KEY, transport=httpx.MockTransport(server))
    assert client.expect(256, within_s=4.0) == {"accepted": True}
    assert server.board.snapshot()["rate"] == 64.0
    assert client.step_done() == {"accepted": True}
    assert server.board.snapshot()["released"]
    assert client.rollout_started() == {"accepted": True}
    assert server.board.snapshot()["rate"] == 64.0
    sources = {b["source"] for b in server.bodies}
    assert len(sources) == 1  # one caller, one source
    assert [b["event"] for b in server.bodies] == ["expect", "step_done", "rollout_started"]
    with pytest.raises(ValueError):
        client.expect(0)
    with pytest.raises(ValueError):
        client.expect(8, within_s=0)
    bad = RewardClient(url="http://rm", api_key="nope", transport=httpx.MockTransport(server))
    with pytest.raises(AuthenticationError):
        bad.expect(8, within_s=1)


def test_async_client_hints_reach_the_board():
    server = _HintServer()

    async def run() -> None:
        client = AsyncRewardClient(url="http://rm", api_key=KEY, transport=httpx.MockTransport(server))
        assert await client.expect(100, within_s=10.0) == {"accepted": True}
        assert server.board.snapshot()["rate"] == 10.0
        assert await client.step_done() == {"accepted": True}
        await client.aclose()

    asyncio.run(run())
    assert server.board.snapshot()["released"]


class _ScoreAndHintServer(_HintServer):
    """/v1/hints into a real board (as above) and /v1/score answering a fixed score per sample."""

    def __init__(self) -> None:
        super().__init__()
        self.log: list[str] = []
        self.rate_while_scoring: float | None = None

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/score":
            if request.headers.get("authorization") != f"Bearer {KEY}":
                return httpx.Response(401, json={"error": {"code": "unauthorized", "message": "wrong"}})
            n = len(json.loads(request.content)["samples"])
            self.log.append(f"score {n}")
            self.rate_while_scoring = self.board.snapshot()["rate"]
            return httpx.Response(200, json={"model": "m", "results": [{"score": 1.5}] * n})
        response = super().__call__(request)
        self.log.append(self.bodies[-1]["event"] if self.bodies else "?")
        return response


def _trl_batch(n: int = 4) -> tuple[list, list]:
    return [f"question {i}" for i in range(n)], [f"answer {i}" for i in range(n)]


@pytest.mark.parametrize("asynchronous", [False, True])
def test_trl_reward_announces_its_batch_before_scoring_and_releases_after(asynchronous):
    from rlreward.adapters.trl import AsyncRewardModelReward, RewardModelReward

    server = _ScoreAndHintServer()
    opts = {"transport": httpx.MockTransport(server)}
    cls = AsyncRewardModelReward if asynchronous else RewardModelReward
    reward = cls("http://rm", api_key=KEY, client_options=opts, hint_within_s=2.0)
    prompts, completions = _trl_batch(4)
    out = reward(prompts=prompts, completions=completions)
    got = asyncio.run(out) if asynchronous else out
    assert got == [1.5] * 4
    assert server.log == ["expect", "score 4", "step_done"]
    assert server.bodies[0]["n_samples"] == 4 and server.bodies[0]["within_s"] == 2.0
    assert server.rate_while_scoring == 2.0  # the board knew the batch while it was being scored
    assert server.board.snapshot()["released"]


def test_trl_reward_scores_even_when_hints_are_refused_and_can_turn_them_off():
    from rlreward.adapters.trl import RewardModelReward

    server = _ScoreAndHintServer()
    opts = {"transport": httpx.MockTransport(server)}
    prompts, completions = _trl_batch(2)
    # wrong token: hints and scoring both get 401 -> the hint is dropped, scoring raises as before
    bad = RewardModelReward("http://rm", api_key="nope", client_options=opts)
    with pytest.raises(AuthenticationError):
        bad(prompts=prompts, completions=completions)
    off = RewardModelReward("http://rm", api_key=KEY, client_options=opts, phase_hints=False)
    server.log.clear()
    assert off(prompts=prompts, completions=completions) == [1.5, 1.5]
    assert server.log == ["score 2"]


def _shipped_configs() -> list:
    from pathlib import Path

    import rlreward

    root = Path(rlreward.__file__).parent
    return sorted((root.parent / "configs").glob("*.yaml")) + sorted((root / "configs").glob("*.yaml"))


def test_every_shipped_config_sets_its_replica_bound_deliberately():
    import yaml

    paths = _shipped_configs()
    assert len(paths) >= 3
    for path in paths:
        replica = yaml.safe_load(path.read_text())["replica"]
        auto = replica.get("autoscaling")
        if auto is None:
            assert "num_replicas" in replica, f"{path}: neither a fixed num_replicas nor autoscaling"
        else:  # Serve's max_replicas default (1) would silently forbid scaling up
            assert "max_replicas" in auto, f"{path}: autoscaling without an explicit max_replicas"


def test_the_commented_hint_examples_in_shipped_configs_are_valid():
    import re

    import yaml

    found = 0
    for path in _shipped_configs():
        text = path.read_text()
        m = re.search(r"^(\s*)# hints:\n((?:\1#   .*\n)+)", text, re.M)
        inline = re.search(r"#\s+hints: (\{.*\})", text)
        if m:
            body = "hints:\n" + "".join(line.replace("#", "", 1) for line in m.group(2).splitlines(True))
            hints = yaml.safe_load(body.replace(m.group(1) + "  ", "  "))["hints"]
        elif inline:
            hints = yaml.safe_load(inline.group(1))
        else:
            continue
        AutoscalingOptions(max_replicas=2, hints=hints)
        found += 1
    assert found >= 2
