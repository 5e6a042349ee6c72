"""``rlreward tune``: simulate Ray Serve's autoscaler on an RL reward workload and recommend a config.

* :mod:`.workload` — what the trainer sends: a described GRPO run or a recorded trace (JSONL).
* :mod:`.policy` — Ray Serve 2.60's autoscaling math, pure: the configuration modelled, metric
  cadence, window aggregation, scaling factors, delays, bounds.
* :mod:`.simulator` — the deterministic discrete-event loop around it: the handle's metrics, the
  control loop, the router, the replicas and the phase hints.
* :mod:`.sweep` — the grid of configurations, the Pareto front of replica-seconds vs reward-stage
  time per step, the recommendation (an ``AppConfig`` YAML) and the plot.

No Ray import anywhere here: the simulator runs on a laptop.
"""
