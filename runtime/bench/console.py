"""The terminal side of a benchmark: a rich table of the results and a progress bar while it runs.

The table shows the columns a reader picks a setting by; the files written by ``--out`` hold all
of them. The progress bar goes to stderr so that stdout stays the table alone.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from .measure import Progress
from .results import COLUMNS, BenchResult

TERMINAL_COLUMNS = ("model", "shape", "threads", "backend", "precision", "median ms", "p90 ms", "min ms",
                    "compute ms", "img/s", "GMAC/s", "% peak", "PSNR dB", "vs eager", "status")
# Piped output has no terminal width to fit; this keeps one line per row.
PIPE_WIDTH = 200


def print_table(result: BenchResult, title: str = "irdeploy bench") -> None:
    """Print ``result`` as a rich table on stdout, with its machine, ceilings and notes below."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console()
    if not console.is_terminal:
        console = Console(width=PIPE_WIDTH)
    table = Table(title=title, caption=Text(result.machine_line()))
    for header in TERMINAL_COLUMNS:
        table.add_column(header, justify="left" if header in ("model", "shape", "backend", "precision", "status")
                         else "right", overflow="fold")
    for row in result.rows:
        style = None if row.status == "ok" else "dim"
        table.add_row(*(Text(COLUMNS[h](row)) for h in TERMINAL_COLUMNS), style=style)  # Text: no markup
    console.print(table)
    console.print(Text(result.ceilings_line()))
    for note in result.notes:
        console.print(Text(f"- {note}"))


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
