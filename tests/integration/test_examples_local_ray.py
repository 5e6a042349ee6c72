"""The examples that start their own local Ray, run as a new user runs them. examples/trl/grpo_vl.py
starts its own local Ray even when the shell has ``RAY_ADDRESS`` set
(users set it for ``ray job submit``; a bare ``ray.init()`` would try to join that address).

Runs in a subprocess, so its Ray instance is separate from the session cluster of the other
integration tests, and is shut down before the subprocess exits.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

_SCRIPT = r"""
import importlib.util, sys
import httpx

spec = importlib.util.spec_from_file_location("grpo_vl", sys.argv[1])
mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mod)
url, shutdown = mod.start_local_server(sys.argv[2])
try:
    r = httpx.post(url + "/v1/score", json={"samples": [{"prompt": "2+2?", "response": "4"}]}, timeout=120)
    r.raise_for_status()
    score = r.json()["results"][0]["score"]
    assert isinstance(score, float), r.text
    print("SCORED", score)
finally:
    shutdown()
"""


def test_grpo_vl_local_server_ignores_ray_address(tiny_model_dir):
    # Nothing listens there: joining it would fail (the http:// form even makes Ray try its client).
    env = {**os.environ, "RAY_ADDRESS": "http://127.0.0.1:9", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-c", _SCRIPT, str(ROOT / "examples/trl/grpo_vl.py"), tiny_model_dir],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "SCORED" in proc.stdout


def test_demo_runs_on_the_port_it_is_given_and_ends_without_raylet_kill_noise(tiny_model_dir):
    from tests.integration.conftest import _free_port

    port = _free_port()
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples/demo.py"), "--model", tiny_model_dir, "--port", str(port)],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "done in" in proc.stdout and f"HTTP at http://127.0.0.1:{port}" in proc.stdout
    out = proc.stdout + proc.stderr
    assert "(raylet)" not in out and "killed by `ray.kill`" not in out, out[-3000:]
