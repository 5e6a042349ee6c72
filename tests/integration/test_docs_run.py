"""Every ```bash and ```python block of README.md and docs/*.md runs as written (issue 24).

One test per document: its blocks run in order in one fresh folder (each document stands alone),
bash blocks with ``bash -e -o pipefail``, python blocks with this interpreter, ``PATH`` and
``PYTHONPATH`` pointing at this checkout. The folder holds links to ``examples/``, ``configs/``,
``benchmarks/`` and ``.cache/tiny`` (the session's tiny checkpoint, which ``make tiny`` built with
``rlreward make-tiny .cache/tiny``: that line is dropped from the blocks rather than run again).
``http://127.0.0.1:8000`` in a block is the session's served app (the same app ``rlreward serve
--model .cache/tiny`` deploys); a ```bash server block is checked against ``rlreward serve``'s
argument parser, not started. SHORTER lists the only other edits: shorter options for long runs,
which the document says beside the block. A block's quoted output (pytest-codeblocks'
``expected-output`` comment) must be what it printed.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.docs_blocks import DOCS, ROOT, Block, blocks

DOC_URL = "http://127.0.0.1:8000"
PROVIDED = re.compile(r"^\s*rlreward make-tiny \.cache/tiny\s*(#.*)?$", re.MULTILINE)
#: document → [(text in a block, what the test runs instead)]; each is named in the document
SHORTER: dict[str, list[tuple[str, str]]] = {
    "docs/tuning.md": [("--steps 20 --prompts 64", "--steps 2 --prompts 64")],
    "README.md": [("--steps 20 --prompts 64", "--steps 2 --prompts 64")],
}
LINKS = ("examples", "configs", "benchmarks")
BLOCK_TIMEOUT_S = 420


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_ADDRESS", "RLREWARD_API_KEY"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = str(ROOT)
    env["NO_COLOR"] = "1"
    return env


def _adapt(block: Block, url: str) -> str:
    code = PROVIDED.sub("", block.code).replace(DOC_URL, url)
    for text, instead in SHORTER.get(str(block.path.relative_to(ROOT)), []):
        code = code.replace(text, instead)
    return code


def _check_server_block(block: Block) -> None:
    from rlreward.commands import serve

    parser = argparse.ArgumentParser(prog="rlreward serve", exit_on_error=False)
    serve.add_arguments(parser)
    command = re.sub(r"\\\n", " ", block.code)
    for line in command.splitlines():
        words = shlex.split(line, comments=True)
        if not words:
            continue
        assert words[:2] == ["rlreward", "serve"], f"{block.where}: a server block holds {line!r}"
        try:
            args = parser.parse_args(words[2:])
        except (argparse.ArgumentError, SystemExit) as exc:
            pytest.fail(f"{block.where}: `rlreward serve` refuses {line!r}: {exc}")
        assert args.model in (None, ".cache/tiny"), (
            f"{block.where}: the test serves .cache/tiny, not {args.model}"
        )


def _run(block: Block, code: str, cwd: Path, env: dict[str, str]) -> str:
    argv = (
        ["bash", "-e", "-o", "pipefail", "-c", code] if block.lang == "bash" else [sys.executable, "-c", code]
    )
    try:
        done = subprocess.run(
            argv,
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=BLOCK_TIMEOUT_S,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"{block.where}: the block ran past {BLOCK_TIMEOUT_S} s:\n{code}")
    if done.returncode != 0:
        pytest.fail(
            f"{block.where}: the ```{block.lang} block exited {done.returncode}:\n{code}\n"
            f"--- stdout (end)\n{done.stdout[-3000:]}\n--- stderr (end)\n{done.stderr[-3000:]}"
        )
    return done.stdout


def _same_output(block: Block, printed: str) -> bool:
    want = block.expected_output or ""
    if block.expected_ignore_whitespace:
        return re.sub(r"\s+", "", want) == re.sub(r"\s+", "", printed)
    return want == printed


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_block_runs_as_written(doc: Path, serve_app, tiny_model_dir: str, tmp_path: Path) -> None:
    for name in LINKS:
        (tmp_path / name).symlink_to(ROOT / name)
    (tmp_path / ".cache").mkdir()
    (tmp_path / ".cache" / "tiny").symlink_to(tiny_model_dir)
    env = _env()
    ran = 0
    for block in blocks(doc):
        if block.lang == "bash" and "server" in block.options:
            _check_server_block(block)
        elif block.runs:
            printed = _run(block, _adapt(block, serve_app.url), tmp_path, env)
            ran += 1
            if block.expected_output is not None and not _same_output(block, printed):
                pytest.fail(
                    f"{block.where}: printed\n{printed}\nbut the document shows\n{block.expected_output}"
                )
    if not ran:
        pytest.skip(f"{doc.name} has no block to run")
