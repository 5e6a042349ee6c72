"""``rlreward tune``: simulate Ray Serve's autoscaler on an RL reward workload and recommend a config.

* :mod:`.workload` — what the trainer sends: a described GRPO run or a recorded trace (JSONL).
* :mod:`.simulator` — a deterministic discrete-event model of Ray Serve 2.60's autoscaling (metric
  cadence, window aggregation, policy, factors, delays, bounds), the router, the replicas and the
  phase hints; plus the pure policy math it shares with the serving side.
* :mod:`.sweep` — the grid of configurations, the Pareto front of replica-seconds vs reward-stage
  time per step, the recommendation (an ``AppConfig`` YAML) and the plot.

No Ray import anywhere here: the simulator runs on a laptop.
"""
