"""deploy/grafana/rlreward.json: every panel queries metrics rlreward exports.

The exported names are read from the source (every ``metrics.Counter/Gauge/Histogram("name", ...)``
in ``rlreward/``) and mapped as Ray's Prometheus exporter names them: ``ray_<name>``, counters with
``_total``, histograms with ``_bucket``/``_sum``/``_count``. The integration test
``tests/integration/test_reward_health.py`` checks the same names on a live scrape.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import rlreward

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "rlreward.json"
SUFFIXES = {"Counter": ("_total",), "Gauge": ("",), "Histogram": ("_bucket", "_sum", "_count")}


def exported_metric_names() -> set[str]:
    names = set()
    for path in Path(rlreward.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in SUFFIXES
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "metrics"
                and node.args
                and isinstance(node.args[0], ast.Constant)
            ):
                names |= {f"ray_{node.args[0].value}{s}" for s in SUFFIXES[node.func.attr]}
    return names


def dashboard_queries() -> list[tuple[str, str]]:
    dash = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return [(p["title"], t["expr"]) for p in dash["panels"] for t in p["targets"]]


def test_every_panel_queries_only_exported_metrics():
    exported = exported_metric_names()
    assert {"ray_rlreward_reward_alerts_total", "ray_rlreward_reward_step_stat"} <= exported
    queries = dashboard_queries()
    dash = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert len(queries) >= len(dash["panels"]) >= 10
    for title, expr in queries:
        used = set(re.findall(r"\bray_[a-z0-9_]+", expr))
        assert used, f"panel {title!r} queries no rlreward metric: {expr}"
        assert used <= exported, f"panel {title!r} queries {sorted(used - exported)}, not exported"
