"""``rlreward eval`` end to end: in-process and through a server (``--url``), report files."""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from rlreward.commands.main import main
from rlreward.offline.eval import EvalError, EvalReport, RemoteBackend, load_items, score_pairs
from rlreward.schema import ScoreResult
from tests.conftest import noise_png
from tests.unit.test_eval_metrics import _vl_fixture, rooted


class _ScoreServer:
    """A local HTTP server speaking ``POST /v1/score`` with the real tiny scorer. It has no image
    roots, so it can score only inline images; ``status`` makes it refuse every request."""

    def __init__(self, scorer, status: int = 200) -> None:
        self.samples_seen = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if status != 200:
                    out, code = {"error": {"code": "unauthorized", "message": "wrong token"}}, status
                else:
                    outer.samples_seen += len(body["samples"])
                    results = scorer.score(body["samples"])
                    out, code = {"model": "tiny", "results": [r.model_dump() for r in results]}, 200
                data = json.dumps(out).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def _scores(report: EvalReport) -> list[tuple]:
    return [(p.id, p.chosen_score, p.rejected_score, p.correct) for p in report.pair_scores]


def test_eval_cli_in_process_writes_json_markdown_and_png(tmp_path, tiny_model_dir, scorer, capsys):
    from PIL import Image

    path, _ = _vl_fixture(tmp_path)
    out = tmp_path / "out" / "report.json"
    rc = main(
        [
            "eval",
            "--dataset",
            str(path),
            "--model",
            tiny_model_dir,
            "--dtype",
            "float32",
            "--device",
            "cpu",
            "-o",
            str(out),
            "--bootstrap",
            "200",
            "--chunk-pairs",
            "4",
        ]
    )
    assert rc == 0
    report = EvalReport.model_validate_json(out.read_text())
    assert report.format == "vl-rewardbench" and report.pairs == 9 and report.bootstrap == 200
    # The command's scores are the library's (the dataset folder is the default image root).
    pairs, _, base = load_items(str(path))
    expected = score_pairs(pairs, rooted(scorer, base), chunk_pairs=4)
    # Another scorer instance, another pass: the same pairs and verdicts, scores within fp32 noise.
    assert [(p.id, p.correct) for p in report.pair_scores] == [(o.id, o.correct) for o in expected]
    for (_, *got), o in zip(_scores(report), expected):
        assert got[:2] == pytest.approx([o.chosen_score, o.rejected_score], abs=1e-5)
    md = out.with_suffix(".md").read_text()
    assert "| general |" in md and "| **overall** |" in md and "paper %" in md and "73.1" in md
    assert md in capsys.readouterr().out
    with Image.open(out.with_suffix(".png")) as img:
        assert img.format == "PNG" and img.width > 300


def test_eval_cli_through_a_server_matches_in_process_and_reads_images_locally(tmp_path, scorer):
    path, _ = _vl_fixture(tmp_path)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    outside = tmp_path.parent / f"{tmp_path.name}-outside.png"
    outside.write_bytes(noise_png(99, (56, 56)))
    rows.append({**rows[0], "id": "RLAIF-V-outside", "image_path": str(outside)})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))

    with _ScoreServer(scorer) as server:
        out = tmp_path / "remote.json"
        assert (
            main(["eval", "--dataset", str(path), "--url", server.url, "-o", str(out), "--bootstrap", "0"])
            == 0
        )
    remote = EvalReport.model_validate_json(out.read_text())
    pairs, _, base = load_items(str(path))
    local = score_pairs(pairs, rooted(scorer, base))
    assert [p.id for p in remote.pair_scores] == [o.id for o in local]
    for p, o in zip(remote.pair_scores, local):  # JSON round trip of fp32 scores: equal to ~1e-7
        for a, b in ((p.chosen_score, o.chosen_score), (p.rejected_score, o.rejected_score)):
            assert (a is None and b is None) or a == pytest.approx(b, abs=1e-6)
    # The path outside the dataset folder was refused here, never sent.
    assert [(e.id, e.side, e.code) for e in remote.error_list] == [
        ("RLAIF-V-outside", "both", "path_not_allowed")
    ]
    assert server.samples_seen == 2 * 9
    assert remote.model == server.url


def test_eval_cli_stops_with_a_clear_message_when_the_server_refuses(tmp_path, scorer, capsys):
    path, _ = _vl_fixture(tmp_path)
    with _ScoreServer(scorer, status=401) as server:
        rc = main(["eval", "--dataset", str(path), "--url", server.url, "-o", str(tmp_path / "r.json")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "refused" in err and "401" in err and "RLREWARD_API_KEY" in err
    assert not (tmp_path / "r.json").exists()


def test_unreachable_server_at_the_start_is_an_error_not_a_zero_score():
    from rlreward.engine.config import MediaPolicy

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: nothing listens there
    backend = RemoteBackend(f"http://127.0.0.1:{port}", None, MediaPolicy(), retries=0)
    with pytest.raises(EvalError, match="is the server up"):
        backend.score([{"prompt": "q", "response": "a", "images": []}])
    backend._answered = True  # later in a run, a failing call marks its samples and the run goes on
    results = backend.score([{"prompt": "q", "response": "a", "images": []}])
    assert results == [results[0]] and not results[0].ok and results[0].error.code == "unavailable"
    assert isinstance(results[0], ScoreResult)
