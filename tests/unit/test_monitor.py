"""``rlreward monitor``: the table, the JSON and the PNG from a real board's statistics; clear
errors for an unreachable server."""

from __future__ import annotations

import io
import json
import socket

from rlreward.commands.main import main
from rlreward.offline import monitor
from rlreward.serving.config import HealthOptions
from rlreward.serving.health import HealthBoard


def _stats() -> dict:
    board = HealthBoard(HealthOptions().model_dump(), clock=lambda: 2000.0, metrics=False)
    board.record([[1000.0 + i, f"c{i % 3}", f"a{i}", i + 1, 0.1 * i, None] for i in range(9)])
    board.step_done(t=1010.0)
    board.record([[1011.0 + i, "c", "same", 2, 0.5, None] for i in range(4)])
    board.step_done(t=1020.0)
    board.canary({"replica_id": "r1", "scores": [0.1], "t": 1999.0, "pid": 7})
    return {"reward": board.snapshot()}


def test_table_shows_every_step_and_marks_alerts():
    stats = _stats()
    text = monitor.render(stats, "http://x")
    lines = text.splitlines()
    rows = {
        ln.split()[0].rstrip("!*"): ln for ln in lines if ln.strip() and ln.split()[0].rstrip("!*").isdigit()
    }
    assert set(rows) == {"0", "1"}
    assert f"{stats['reward']['steps'][0]['mean']:.4g}" in rows["0"]
    assert "1!" in rows["1"].split()  # zero-variance groups 1 raised an alert
    assert "step 1: zero_variance_groups" in text and "r1" in text


def test_json_and_png_outputs(tmp_path):
    stats = _stats()
    out = io.StringIO()
    png = tmp_path / "h.png"
    assert monitor.run("http://x", json_out=True, plot_path=str(png), out=out, fetch=lambda u, k: stats) == 0
    assert json.loads(out.getvalue()) == json.loads(json.dumps(stats))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_unreachable_server_is_one_line_and_exit_2(capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: nothing listens
    assert main(["monitor", "--url", f"http://127.0.0.1:{port}", "--once"]) == 2
    err = capsys.readouterr().err
    assert "could not reach" in err and "rlreward serve" in err
    assert main(["monitor", "--url", "http://127.0.0.1:1", "--once", "--interval", "0"]) == 2
