"""The frame progress bar of a video restore: frames done of total, frames per second, ETA."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator


@contextlib.contextmanager
def frame_progress(enabled: bool, total: int, label: str) -> Iterator[Callable[[int], None]]:
    """A rich bar on stderr (``enabled``: a terminal) or else one progress step (the command
    line's plain "restoring ..." line); yields ``update(frames_done)``, callable from any thread
    (rich locks its state). ``total`` 0 (a container without index or duration): no ETA."""
    from irdeploy.core.progress import step, stderr_console

    if not enabled:
        with step(label):
            yield lambda done: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    start = time.perf_counter()
    with Progress(TextColumn("restoring"), BarColumn(), MofNCompleteColumn(), TextColumn("frames"),
                  TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                  console=stderr_console(), transient=False) as bar:
        task = bar.add_task("restore", total=total or None, rate="")

        def update(done: int) -> None:
            rate = done / max(time.perf_counter() - start, 1e-9)
            bar.update(task, completed=done, rate=f"{rate:.1f} fps")

        yield update
