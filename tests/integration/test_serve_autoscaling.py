"""Autoscaling on real Ray Serve: sustained load takes the app from 1 to 2 replicas, idleness back to 1.

The app scales on the replicas' sample backlog (``record_autoscaling_stats`` +
``SampleBacklogPolicy``); Ray 2.60 pushes metrics every ``metrics_interval_s`` (10 s), so a
scale-up takes tens of seconds here. No exact counts inside fixed windows: conditions are awaited
with generous limits.
"""

from __future__ import annotations

import threading

import pytest

from rlreward.client import RewardClient
from tests.integration.conftest import wait_for


# A short look-back (2 s) keeps the window to the latest pushes; Serve warns it is below the
# deprecated metrics_interval_s (10 s), which in Ray 2.60 still sets the push interval.
@pytest.mark.filterwarnings("ignore:`look_back_period_s`:FutureWarning")
def test_sustained_load_scales_1_to_2_and_idle_scales_back_to_1(deploy_app):
    app = deploy_app(
        "autoscale",
        **{
            "replica.autoscaling": {
                "min_replicas": 1,
                "max_replicas": 2,
                "target_backlog_samples": 8,
                # Serve's request-count policy alone would never scale at this target (4 callers):
                # scaling up proves the sample-backlog policy and the replicas' stats drive it.
                "target_ongoing_requests": 100,
                "upscale_delay_s": 1,
                "downscale_delay_s": 3,
                "look_back_period_s": 2,
            }
        },
    )
    assert app.running_replicas() == 1

    stop = threading.Event()
    errors: list[BaseException] = []
    samples = [
        {"prompt": f"question {i}", "response": f"a fairly long answer number {i} " * 4} for i in range(16)
    ]

    def load():
        client = RewardClient(app_name=app.name, chunk_size=16)
        while not stop.is_set():
            try:
                assert all(r.ok for r in client.score(samples))
            except BaseException as exc:  # surfaced below
                errors.append(exc)
                return

    workers = [threading.Thread(target=load, daemon=True) for _ in range(4)]
    for w in workers:
        w.start()
    try:
        wait_for(lambda: app.running_replicas() == 2, 180, what="a second replica under load")
    finally:
        stop.set()
        for w in workers:
            w.join(60)
    assert not errors, errors[:1]
    wait_for(lambda: app.running_replicas() == 1, 180, what="scale-down to 1 replica when idle")
    app.delete()  # free its CPU share for later tests
