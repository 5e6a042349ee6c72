"""examples/colocated/run_cpu.py runs as a user runs it (its own local Ray, in a subprocess, so
separate from the session cluster): the replica is awake at the end of every generation and
asleep during every update, and the script says so (exit 0)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_colocated_miniature_sleeps_in_updates_and_is_awake_for_bursts(tiny_model_dir):
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "examples/colocated/run_cpu.py"),
            "--model",
            tiny_model_dir,
            "--steps",
            "2",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert sum("end of generation" in ln and "replica awake" in ln for ln in lines) == 2, done.stdout
    assert sum("during the update" in ln and "replica asleep" in ln for ln in lines) == 2, done.stdout
    assert "awake for every burst: True; asleep in every update: True" in done.stdout
