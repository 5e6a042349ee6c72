"""What the documents say stays true without running anything (issues 19 and 24).

- Every file a document names exists: paths under ``rlreward/``, ``benchmarks/``, ``configs/``,
  ``examples/``, ``tests/``, ``docs/``, ``deploy/`` and relative Markdown links in README.md,
  docs/*.md, BENCHMARKS.md and examples/*/README.md; the same paths, and any ``NAME.md``, in every
  module docstring under rlreward/; a link to a section (``FILE.md#anchor``) finds its heading.
- The fenced blocks follow the convention of docs/architecture.md ("Development"): commands are
  ```bash / ```python (never ```sh or ```py, which the docs test would not run); a ```... skip block has
  a visible note right above it; options are only ``skip`` and ``server``.
- Every module under rlreward/ states its contract in a docstring of at most 25 lines; README.md
  has at most 400 lines.
(tests/integration/test_docs_run.py runs the blocks.)
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from tests.docs_blocks import DOCS, FORBIDDEN, ROOT, SKIP_NOTE, blocks, note_above

DOCUMENTS = [*DOCS, ROOT / "BENCHMARKS.md", *sorted(ROOT.glob("examples/*/README.md"))]
MODULES = sorted((ROOT / "rlreward").rglob("*.py"))
PATH = re.compile(
    r"(?<![\w./@:-])((?:rlreward|benchmarks|configs|examples|tests|docs|deploy)/[\w./*-]*[\w*/])"
)
LINK = re.compile(r"\]\(([^)\s]+)\)")
MD_NAME = re.compile(r"(?<![\w./-])([\w-]+\.md)\b")
MAX_DOCSTRING_LINES = 25


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def _exists(name: str, base: Path) -> bool:
    if "*" in name:
        return any(base.glob(name.rstrip("/")))
    return (base / name).exists()


def _named_paths(text: str) -> set[str]:
    return {m.group(1) for m in PATH.finditer(text) if not re.search(r"[<>{}]|\.\.\.", m.group(1))}


def _module_docstring(path: Path) -> str:
    return ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")), clean=False) or ""


@pytest.mark.parametrize("doc", DOCUMENTS, ids=_rel)
def test_every_path_a_document_names_exists(doc: Path) -> None:
    text = doc.read_text(encoding="utf-8")
    missing = sorted(p for p in _named_paths(text) if not _exists(p, ROOT))
    for target in LINK.findall(text):
        target = target.split("#", 1)[0]
        if target and not re.match(r"[a-z]+:", target) and not _exists(target, doc.parent):
            missing.append(f"link {target}")
    assert not missing, f"{_rel(doc)} names files that are not in the repository: {missing}"


def test_every_path_a_module_docstring_names_exists() -> None:
    missing = []
    for module in MODULES:
        doc = _module_docstring(module)
        missing += [f"{_rel(module)}: {p}" for p in sorted(_named_paths(doc)) if not _exists(p, ROOT)]
        missing += [
            f"{_rel(module)}: {n}"
            for n in sorted(set(MD_NAME.findall(doc)))
            if not (ROOT / n).exists() and not (ROOT / "docs" / n).exists()
        ]
    assert not missing, f"module docstrings name files that are not in the repository: {missing}"


def test_every_module_states_its_contract_in_at_most_25_lines() -> None:
    too_long = {}
    for module in MODULES:
        doc = _module_docstring(module)
        if not doc.strip():
            too_long[_rel(module)] = "no module docstring"
        elif len(doc.strip().splitlines()) > MAX_DOCSTRING_LINES:
            too_long[_rel(module)] = f"{len(doc.strip().splitlines())} lines"
    assert not too_long, (
        f"module docstrings over {MAX_DOCSTRING_LINES} lines (move the manual to docs/): {too_long}"
    )


def _anchors(doc: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"^```.*?^```", "", doc.read_text(encoding="utf-8"), flags=re.MULTILINE | re.DOTALL)
    heads = re.findall(r"^#{1,6} +(.+?) *$", text, flags=re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in heads}


@pytest.mark.parametrize("doc", DOCUMENTS, ids=_rel)
def test_every_link_to_a_section_finds_its_heading(doc: Path) -> None:
    broken = []
    for target in LINK.findall(doc.read_text(encoding="utf-8")):
        path, _, anchor = target.partition("#")
        if not anchor or re.match(r"[a-z]+:", path):
            continue
        linked = (doc.parent / path) if path else doc
        if linked.suffix == ".md" and linked.is_file() and anchor not in _anchors(linked):
            broken.append(target)
    assert not broken, f"{_rel(doc)} links to sections that do not exist: {broken}"


@pytest.mark.parametrize("doc", DOCS, ids=_rel)
def test_blocks_follow_the_docs_convention(doc: Path) -> None:
    problems = []
    for block in blocks(doc):
        if block.lang in FORBIDDEN:
            problems.append(f"{block.where}: fence ```{block.lang}: use bash or python (or text for output)")
        if block.options - {"skip", "server"}:
            problems.append(f"{block.where}: unknown fence options {sorted(block.options)}")
        if "server" in block.options and block.lang != "bash":
            problems.append(f"{block.where}: only a bash block can be a server block")
        if "skip" in block.options and not SKIP_NOTE.search(note_above(block)):
            problems.append(
                f"{block.where}: a skipped block needs a visible note right above it "
                "('needs a GPU', 'needs a hub' or 'not run by the docs test: why')"
            )
    assert not problems, "\n".join(problems)


def test_the_readme_is_a_door_not_the_manual() -> None:
    lines = (ROOT / "README.md").read_text(encoding="utf-8").count("\n")
    assert lines <= 400, f"README.md has {lines} lines: move the manual to docs/ (issue 19: <= 400)"


def test_the_docs_convention_is_documented() -> None:
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    assert "## Development" in text and "bash skip" in text and "bash server" in text
