"""Progress of long offline work on stderr: a tqdm bar on a terminal, plain lines elsewhere.

``progress(total, desc, unit)`` is a context manager with ``update(n)``. On a terminal it is tqdm's
bar; where stderr is no terminal (CI logs, ``2> file``) it is :class:`LineProgress`: one line
``desc: n/total units (p%), r units/s, t s`` every ``interval_s`` seconds and one at the end, so a
log shows a long run is alive without carriage-return noise.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO


class LineProgress:
    """A progress that prints a whole line every ``interval_s`` seconds and once at the end."""

    def __init__(self, total: int, desc: str, unit: str, file: TextIO, interval_s: float = 10.0) -> None:
        self.total, self.desc, self.unit, self.file, self.interval_s = total, desc, unit, file, interval_s
        self.n = 0
        self._start = self._last = time.monotonic()

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if now - self._last >= self.interval_s:
            self._last = now
            self._line(now)

    def _line(self, now: float) -> None:
        elapsed = now - self._start
        pct = 100.0 * self.n / self.total if self.total else 100.0
        rate = self.n / elapsed if elapsed > 0 else 0.0
        print(
            f"{self.desc}: {self.n}/{self.total} {self.unit}s ({pct:.0f}%), {rate:.1f} {self.unit}s/s, "
            f"{elapsed:.0f} s",
            file=self.file,
            flush=True,
        )

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *exc: Any) -> None:
        if exc[0] is None:
            self._line(time.monotonic())


def progress(total: int, desc: str, unit: str, file: TextIO | None = None) -> Any:
    """tqdm's bar when ``file`` (default stderr) is a terminal, else :class:`LineProgress`."""
    out = file if file is not None else sys.stderr
    if out.isatty():
        from tqdm import tqdm

        return tqdm(total=total, desc=desc, unit=unit, file=out)
    return LineProgress(total, desc, unit, out)
