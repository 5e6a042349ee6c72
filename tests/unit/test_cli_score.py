"""``rlreward score``: one output line per input line, same order; clear failures for unreadable inputs."""

from __future__ import annotations

import json
import subprocess
import sys

from rlreward.commands.main import main
from tests.conftest import noise_png


def test_score_file_keeps_order_and_reports_per_line_errors(tiny_model_dir, scorer, tmp_path, capsys):
    (tmp_path / "img.png").write_bytes(noise_png(5))
    samples = [
        {"prompt": "What is it?", "response": "A picture.", "images": ["img.png"]},
        {"prompt": "2+2?", "response": "4"},
        {"messages": [{"role": "user", "content": "no answer"}]},
        {"prompt": "q", "response": "a", "images": ["/etc/passwd"]},
    ]
    lines = [json.dumps(s) for s in samples]
    lines.insert(2, "{not json")
    inp = tmp_path / "in.jsonl"
    inp.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out.jsonl"
    code = main(["score", str(inp), "--model", tiny_model_dir, "--device", "cpu", "-o", str(out)])
    assert code == 0
    results = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(results) == 5
    # The relative image path resolves against the input file's folder, which is allowed by default.
    in_process = scorer.score([{"prompt": "2+2?", "response": "4"}])[0].score
    assert results[0]["error"] is None and isinstance(results[0]["score"], float)
    assert abs(results[1]["score"] - in_process) <= 1e-6
    assert results[2]["error"]["code"] == "invalid_sample" and "line 3" in results[2]["error"]["message"]
    assert results[3]["error"]["code"] == "missing_assistant_turn"
    assert results[4]["error"]["code"] == "path_not_allowed"
    assert "errors" in capsys.readouterr().err


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "rlreward", *args], capture_output=True, text=True, timeout=300
    )


def test_missing_input_file_fails_with_a_message(tiny_model_dir, tmp_path):
    r = _cli("score", str(tmp_path / "absent.jsonl"), "--model", tiny_model_dir)
    assert r.returncode != 0
    assert "cannot read" in r.stderr and "Traceback" not in r.stderr


def test_missing_model_fails_with_a_message(tmp_path):
    inp = tmp_path / "in.jsonl"
    inp.write_text('{"prompt": "q", "response": "a"}\n')
    r = _cli("score", str(inp), "--model", str(tmp_path / "no-model"))
    assert r.returncode != 0
    assert "error" in r.stderr and "Traceback" not in r.stderr
    assert "model directory" in r.stderr and "does not exist" in r.stderr and "Repo id" not in r.stderr


def test_progress_without_a_terminal_is_plain_lines(tiny_model_dir, tmp_path):
    """stderr captured (not a terminal, as in CI logs): progress is whole lines, no carriage returns."""
    inp = tmp_path / "in.jsonl"
    inp.write_text('{"prompt": "q", "response": "a"}\n{"prompt": "q", "response": "b"}\n')
    r = _cli("score", str(inp), "--model", tiny_model_dir, "--device", "cpu")
    assert r.returncode == 0, r.stderr
    assert "\r" not in r.stderr
    assert "scoring: 2/2 samples (100%)" in r.stderr.splitlines()[-2]


def test_make_tiny_is_deterministic(tmp_path):
    from rlreward.offline.tiny import make_tiny

    a = make_tiny(tmp_path / "a", seed=3)
    b = make_tiny(tmp_path / "b", seed=3)
    for name in ("model.safetensors", "value_head.safetensors", "tokenizer.json", "config.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    c = make_tiny(tmp_path / "c", seed=4)
    assert (a / "value_head.safetensors").read_bytes() != (c / "value_head.safetensors").read_bytes()
