"""The fenced blocks of README.md and docs/*.md, and how the docs test runs them.

The convention (docs/architecture.md, "Development"): a block fenced as ```bash or ```python runs in
the test suite as written; ```bash server starts the server the next blocks talk to (the test checks
its arguments and serves the same app itself); ```bash skip / ```python skip do not run and carry a
visible note right above them ("needs a GPU", "needs a hub", or "not run by the docs test: why").
Other fences (text, yaml, json, ...) are quoted output or files, never run. Blocks are read by
pytest-codeblocks' extractor (its `<!--pytest-codeblocks:cont-->` and `expected-output` comments
work); the fence's first word is the language, the others are options.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from pytest_codeblocks import extract_from_file

ROOT = Path(__file__).resolve().parent.parent
#: the documents whose blocks run, in the order a newcomer reads them
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RUN = {"bash", "python"}
#: the fence languages a command or a snippet may use (others are never run; ``sh``, ``py`` would hide
#: a command from the test)
FORBIDDEN = {"sh", "shell", "console", "zsh", "py", "python3", "pycon", "ipython"}
SKIP_NOTE = re.compile(r"needs (?:a )?GPUs?|needs a hub|not run by the docs test", re.IGNORECASE)


@dataclass(frozen=True)
class Block:
    path: Path
    lineno: int  # the line of the opening fence, 1-based
    lang: str
    options: frozenset[str]
    code: str
    expected_output: str | None
    expected_ignore_whitespace: bool

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.lineno}"

    @property
    def runs(self) -> bool:
        return self.lang in RUN and not self.options & {"skip", "server"}


def blocks(path: Path) -> list[Block]:
    out = []
    for b in extract_from_file(path):
        lang, *options = (b.syntax or "").split()
        out.append(
            Block(
                path=path,
                lineno=b.lineno,
                lang=lang,
                options=frozenset(options),
                code=b.code,
                expected_output=b.expected_output,
                expected_ignore_whitespace=b.expected_output_ignore_whitespace,
            )
        )
    return out


def note_above(block: Block, lines_up: int = 3) -> str:
    """The text of the few non-blank lines right above the block's fence, joined by spaces."""
    lines = block.path.read_text(encoding="utf-8").splitlines()
    above = [ln for ln in lines[max(0, block.lineno - 1 - 8) : block.lineno - 1] if ln.strip()]
    return " ".join(ln.strip() for ln in above[-lines_up:])
