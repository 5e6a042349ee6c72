"""``rlreward loadtest``: RL-shaped traffic against a served app, and what it did to the app.

* :mod:`~rlreward.offline.loadtest.plan`: the shapes (``grpo`` bursts with the trainer's update
  between them, ``stream`` single-sample requests as OpenRLHF/verl send, ``trace`` replay of a
  recorded run) and their samples (generated to given sizes, or from a dataset file);
* :mod:`~rlreward.offline.loadtest.runner`: sending a plan through the client (HTTP or handle),
  per-request and per-step numbers (reward-stage time, p50/p99 latency, samples/s, retries, errors),
  and the Serve timeline (replicas, queue, CPU seconds) read from the replicas' own stats;
* :mod:`~rlreward.offline.loadtest.report`: the PNG timeline.

The command (:mod:`rlreward.commands.loadtest`) writes the JSON documented there.
"""
