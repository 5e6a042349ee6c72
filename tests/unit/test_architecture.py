"""The package's shape: arrows only point down, and the trainer side stays light.

* No import cycles among ``rlreward`` modules (every ``import`` / ``from ... import``, at any depth
  of a function, parsed from the source), and no ``importlib`` module loading inside the package.
* Layers: commands → offline / serving → engine → schema; the trainer side (``schema``,
  ``errors``, ``client``, ``transport``, ``rewards``, ``trace``, ``adapters``) never imports
  ``engine``, ``serving``, ``offline`` or ``commands``. ``protocols`` (foreign wire formats: vLLM's, OpenRLHF's) sits between: serving and
  the adapters import it, it imports only ``schema``, ``errors`` and ``rewards``.
* In a fresh interpreter the trainer-side and protocol modules load no ``torch``, ``transformers``,
  ``ray.serve`` or engine module (``rlreward.adapters.verl`` may load ``torch``: verl's contract
  is tensors).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import rlreward

PACKAGE = Path(rlreward.__file__).parent


def _modules() -> dict[str, Path]:
    mods = {}
    for f in PACKAGE.rglob("*.py"):
        parts = ("rlreward",) + f.relative_to(PACKAGE).with_suffix("").parts
        mods[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    return mods


def _targets(mods: dict[str, Path], current: str, is_pkg: bool, node: ast.AST) -> set[str]:
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        assert isinstance(node, ast.ImportFrom)
        base: list[str] = []
        if node.level:
            base = current.split(".") if is_pkg else current.split(".")[:-1]
            base = base[: len(base) - (node.level - 1)]
        mod = ".".join(base + ([node.module] if node.module else []))
        names = [mod] + [f"{mod}.{a.name}" for a in node.names]
    out = set()
    for name in names:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        if name:
            out.add(name)
    return out


def import_graph() -> dict[str, set[str]]:
    """module → rlreward modules it imports anywhere in its source (package parents excluded)."""
    mods = _modules()
    graph = {}
    for name, path in mods.items():
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                edges |= _targets(mods, name, path.name == "__init__.py", node)
        graph[name] = {e for e in edges if e != name and not name.startswith(e + ".")}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m) :] + [m]
            if m not in state and (found := visit(m)):
                return found
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state and (found := visit(n)):
            return found
    return None


def test_cycle_finder_finds_a_planted_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_package_has_no_import_cycles():
    graph = import_graph()
    assert len(graph) > 30, "the parser found too few modules"
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])


def test_no_importlib_module_loading_in_the_package():
    offenders = []
    for name, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and node.attr == "import_module":
                offenders.append(name)
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "__import__":
                offenders.append(name)
    assert offenders == []


TRAINER_SIDE = (
    "rlreward.schema",
    "rlreward.errors",
    "rlreward.client",
    "rlreward.transport",
    "rlreward.rewards",
    "rlreward.adapters",
    "rlreward.trace",
)
#: What the protocols layer may import from rlreward: pure data modules.
PROTOCOL_DEPS = ("rlreward.schema", "rlreward.errors", "rlreward.rewards")
LAYERS = {
    # layer → layers it must not import
    "rlreward.engine": (
        "rlreward.serving",
        "rlreward.offline",
        "rlreward.commands",
        "rlreward.adapters",
        "rlreward.protocols",
    ),
    "rlreward.serving": ("rlreward.offline", "rlreward.commands"),
    "rlreward.offline": ("rlreward.commands",),
    **{
        m: ("rlreward.engine", "rlreward.serving", "rlreward.offline", "rlreward.commands")
        for m in TRAINER_SIDE
    },
}


def test_arrows_point_down():
    wrong = []
    for mod, deps in import_graph().items():
        for layer, forbidden in LAYERS.items():
            if mod == layer or mod.startswith(layer + "."):
                wrong += [f"{mod} -> {d}" for d in deps if d.startswith(forbidden)]
    assert wrong == []


def test_protocols_import_only_pure_data_modules_and_are_used_by_serving_and_adapters():
    graph = import_graph()
    protocols = {m for m in graph if m.startswith("rlreward.protocols")}
    assert {"rlreward.protocols.vllm", "rlreward.protocols.openrlhf"} <= protocols
    wrong = [
        f"{m} -> {d}"
        for m in protocols
        for d in graph[m]
        if not d.startswith("rlreward.protocols") and d not in PROTOCOL_DEPS
    ]
    assert wrong == []
    users = {
        m.split(".")[1] for m, deps in graph.items() for d in deps if d.startswith("rlreward.protocols.")
    }
    assert {"serving", "adapters"} <= users


HEAVY = ("torch", "transformers", "ray.serve")


@pytest.mark.parametrize(
    ("module", "allowed"),
    [
        ("rlreward", ()),
        ("rlreward.schema", ()),
        ("rlreward.errors", ()),
        ("rlreward.client", ()),
        ("rlreward.transport", ()),
        ("rlreward.rewards", ()),
        ("rlreward.trace", ()),
        ("rlreward.adapters.trl", ()),
        ("rlreward.adapters.openrlhf", ()),
        ("rlreward.adapters.verl", ("torch",)),
        ("rlreward.protocols.vllm", ()),
        ("rlreward.protocols.openrlhf", ()),
    ],
)
def test_trainer_side_imports_light_in_a_fresh_interpreter(module, allowed):
    code = (
        "import sys\n"
        f"import {module}\n"
        f"heavy = sorted(m for m in {HEAVY!r} if m in sys.modules and m not in {allowed!r})\n"
        "engine = sorted(m for m in sys.modules if m.startswith(('rlreward.engine', 'rlreward.serving',"
        " 'rlreward.offline')))\n"
        "print(','.join(heavy + engine))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "", f"{module} loaded {r.stdout.strip()}"


#: Functions that are argument tables (one ``add_argument`` call after another), exempt from the
#: function-length bound.
ARGUMENT_TABLES = {"add_arguments"}


def test_rooms_stay_small_enough_to_read():
    """No module over 700 lines, no function over 120 (argument tables aside)."""
    too_long = []
    for name, path in _modules().items():
        text = path.read_text()
        if len(text.splitlines()) > 700:
            too_long.append(f"{name}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name not in ARGUMENT_TABLES:
                length = node.end_lineno - node.lineno + 1
                if length > 120:
                    too_long.append(f"{name}.{node.name}: {length} lines")
    assert not too_long, f"split these: {too_long}"
