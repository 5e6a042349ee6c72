"""``rlreward monitor``: watch a served app's reward health (``GET /v1/stats``) from a terminal.

::

    rlreward monitor --url http://127.0.0.1:8000                # live table, redrawn every 2 s
    rlreward monitor --url http://127.0.0.1:8000 --once         # one table, then exit
    rlreward monitor --url http://127.0.0.1:8000 --json         # the raw /v1/stats object
    rlreward monitor --url http://127.0.0.1:8000 --plot health.png   # distributions + alerts

The token comes from ``--api-key`` or ``$RLREWARD_API_KEY``. An unreachable server, a 401 or a
server without reward health prints one line and returns 2.
"""

from __future__ import annotations

import argparse
import os


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", required=True, help="HTTP base URL of the app, e.g. http://127.0.0.1:8000")
    p.add_argument("--api-key", default=None, help="bearer token (default $RLREWARD_API_KEY)")
    p.add_argument("--interval", type=float, default=2.0, help="seconds between redraws (default 2)")
    p.add_argument("--once", action="store_true", help="print the table once and exit")
    p.add_argument("--json", action="store_true", help="print the /v1/stats JSON and exit")
    p.add_argument(
        "--plot", metavar="PNG", default=None, help="write reward distributions and alerts per step"
    )


def run(args: argparse.Namespace) -> int:
    from rlreward.offline.monitor import run as monitor

    return monitor(
        args.url,
        args.api_key or os.environ.get("RLREWARD_API_KEY"),
        interval_s=args.interval,
        once=args.once,
        json_out=args.json,
        plot_path=args.plot,
    )
