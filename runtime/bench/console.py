"""The terminal side of a benchmark: a table of the results and progress while it runs.

The table shows the columns a reader picks a setting by, within 80 columns; the files written by
``--out`` hold all of them. Progress goes to stderr so that stdout stays the table alone.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from typing import Any

from .measure import Progress, Row
from .results import BenchResult, fmt
from .stats import UNSTABLE_HINT

# Terminal tables fit 80 columns: short headers, numbers never cut, a skipped row's reason as a
# numbered note under the table. The files written by --out keep every column and the full reasons.
WIDTH = 80


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}" if value >= 1000 else f"{value:.1f}"


def _cells(row: Row, notes: list[str], columns: list[str]) -> list[str]:
    s = row.stats
    shape = "x".join(map(str, row.shape[2:] if row.shape[0] == 1 else [row.shape[0], *row.shape[2:]]))
    if row.status != "ok":
        notes.append(f"{row.backend} {row.precision} {row.shape_text}: skipped: {row.reason}")
        flag = f"[{len(notes)}]"
    else:
        flag = "unstable" if s is not None and s.unstable else ""
    cell = {
        "model": row.model, "shape": shape, "thr": fmt(row.threads, "d"), "backend": row.backend,
        "prec": row.precision, "median": _ms(s and s.median),
        "p10-p90": "-" if s is None or s.p10 is None else f"{_ms(s.p10)}-{_ms(s.p90)}",
        "compute": fmt(row.compute_stats and row.compute_stats.median, ".2f"),
        "PSNR": fmt(row.psnr_db, ".1f"),
        "speed": fmt(row.speedup_vs_eager, ".2f") + ("x" if row.speedup_vs_eager is not None else ""),
        "note": flag,
    }
    return [cell[c] for c in columns]


def print_table(result: BenchResult, title: str = "irdeploy bench", console: Any = None) -> None:
    """Print ``result`` on stdout as a table that fits 80 columns (latencies in ms, ``speed`` =
    eager fp32's median over the row's), with numbered notes, the unstable hint and the machine."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = console or Console(width=min(Console().width, WIDTH))
    rows = result.rows
    columns = ["shape", "thr", "backend", "prec", "median", "p10-p90", "compute", "PSNR", "speed", "note"]
    if len({r.model for r in rows}) > 1:
        columns.insert(0, "model")
    if all(r.threads is None for r in rows):
        columns.remove("thr")
    if all(r.compute_stats is None for r in rows):
        columns.remove("compute")
    notes: list[str] = []
    table = Table(title=title, box=None, pad_edge=False, padding=(0, 1), show_header=True, header_style="bold")
    for header in columns:
        table.add_column(header, justify="left" if header in ("model", "shape", "backend", "prec", "note") else "right",
                         no_wrap=True)
    for row in rows:
        table.add_row(*(Text(c) for c in _cells(row, notes, columns)), style=None if row.status == "ok" else "dim")
    console.print(table)
    for i, note in enumerate(notes, 1):
        console.print(Text(f"[{i}] {note}"))
    if any(r.stats is not None and r.stats.unstable for r in rows):
        console.print(Text(UNSTABLE_HINT))
    for note in result.notes:
        console.print(Text(f"- {note}"))
    console.print(Text(result.machine_line()), style="dim")
    console.print(Text(result.ceilings_line()), style="dim")


@contextlib.contextmanager
def progress_bar(enabled: bool = True) -> Iterator[Progress | None]:
    """A :data:`~irdeploy.runtime.bench.measure.Progress` callback that reports each group (model,
    shape, threads) to :mod:`irdeploy.core.progress` (a bar on a terminal, one line per phase
    elsewhere); ``None`` when disabled (``--quiet``)."""
    if not enabled:
        yield None
        return
    from irdeploy.core.progress import advance, finish

    current: list[str] = []

    def update(group: str, phase: str, done: int, total: int) -> None:
        if current and current[0] != group:
            finish(f"bench {current.pop()}")
        if not current:
            current.append(group)
        advance(f"bench {group}", f"bench {group}: {phase}", done, total)

    try:
        yield update
    finally:
        for group in current:
            finish(f"bench {group}")
