"""The trainer example scripts, dry-run as a new user would (``DRY_RUN=1``): they run, pass the
reward the right way for each form, and every OpenRLHF flag they pass exists in the installed
OpenRLHF's own argument parser (read from its source: the parser is built under ``__main__``)."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HF_ID = "Skywork/Skywork-VL-Reward-7B"


def _dry_run(script: str, **env: str) -> list[str]:
    out = subprocess.run(
        ["bash", str(ROOT / script)],
        env={**os.environ, "DRY_RUN": "1", **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return out.stdout.splitlines()


def _openrlhf_flags() -> set[str]:
    import importlib.util

    spec = importlib.util.find_spec("openrlhf.cli.train_ppo_ray")
    if spec is None or spec.origin is None:
        pytest.skip("openrlhf is not installed")
    return set(re.findall(r"add_argument\(\s*\"(--[\w.\-]+)\"", Path(spec.origin).read_text()))


@pytest.mark.parametrize(
    "form, reward",
    [
        ("agent", ["--train.agent_func_path", str(ROOT / "examples/openrlhf/agent_func.py")]),
        ("file", ["--reward.remote_url", str(ROOT / "examples/openrlhf/reward_func.py")]),
        ("http", ["--reward.remote_url", "http://rm.test:8000/get_reward"]),
    ],
)
def test_openrlhf_example_dry_run_passes_flags_openrlhf_knows(form, reward):
    args = _dry_run("examples/openrlhf/train_grpo_vl.sh", FORM=form, RLREWARD_URL="http://rm.test:8000")
    assert args[-2:] == reward
    if form != "http":
        assert Path(reward[1]).is_file()
    flags = [a for a in args if a.startswith("--")]
    unknown = sorted(set(flags) - _openrlhf_flags())
    assert not unknown, f"flags OpenRLHF's train_ppo_ray does not define: {unknown}"


@pytest.mark.parametrize("form", ["manager", "function"])
def test_verl_example_dry_run_points_at_the_server(form):
    overrides = _dry_run(
        "examples/verl/run_grpo_qwen2_5_vl.sh", FORM=form, RLREWARD_URL="http://rm.test:8000"
    )
    assert "reward.reward_model.enable=False" in overrides
    assert any(o.endswith("url=http://rm.test:8000") for o in overrides)
    assert not any("@RLREWARD_URL@" in o for o in overrides)


def test_examples_name_the_real_hugging_face_id():
    # The model's only id on the Hub; an invented one fails on the first `rlreward serve`.
    seen = []
    for path in [
        *ROOT.glob("examples/**/*"),
        *ROOT.glob("configs/*"),
        ROOT / "README.md",
        *ROOT.glob("docs/*.md"),
    ]:
        if path.is_file() and path.suffix in {".py", ".sh", ".md", ".yaml", ".overrides", ""}:
            for ref in re.findall(r"Skywork/[\w.\-]+", path.read_text(errors="replace")):
                seen.append((path.name, ref))
    assert seen  # the examples do name it
    assert all(ref == HF_ID for _, ref in seen), [s for s in seen if s[1] != HF_ID]
