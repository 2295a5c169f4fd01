"""What a long step is doing, told to whoever is listening: the one progress channel of irdeploy.

Library code never prints progress. It wraps each step that can take seconds in
``with step("tracing the graph"):`` (or reports counts with :func:`advance`), and nothing happens
unless a caller installed a reporter with :func:`reporting`: the command line installs a
:class:`ConsoleReporter` (silenced by ``--quiet``), tests install their own callable, and a
library user gets silence by default. The reporter lives in a :class:`~contextvars.ContextVar`,
so no function signature has to carry it through export, build, bench and the quickstart.

On a terminal the console reporter draws the active steps as one transient rich display (a
spinner per step, a bar for counted work) on stderr; anywhere else it writes plain lines without
control codes: one when a step starts and, for steps that took two seconds or more, one when it
ends. Every rich display in irdeploy uses :func:`stderr_console`, one shared console, so that
rich can nest them (a restore bar inside a quickstart stage) instead of fighting over the lines.

Torch-free, and rich is imported only when a console reporter is made.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

# A step that ends sooner than this gets no "done" line in plain output (it said what it started).
SLOW_SECONDS = 2.0


@dataclass(frozen=True)
class Event:
    """One thing a reporter hears: a step starting or ending, or a count of work done.

    ``kind`` is "start", "end" or "advance"; ``key`` identifies a step (starts and ends pair up)
    or a counted task (advances of one task share it); ``done``/``total`` count work
    (``total`` 0: unknown); ``seconds`` is an ended step's duration; ``depth`` how many steps
    enclose this one.
    """

    kind: str
    key: int | str
    message: str
    depth: int = 0
    done: int = 0
    total: int = 0
    seconds: float = 0.0


Reporter = Callable[[Event], None]

_reporter: ContextVar[Reporter | None] = ContextVar("irdeploy_progress_reporter", default=None)
_depth: ContextVar[int] = ContextVar("irdeploy_progress_depth", default=0)
_keys = iter(range(1, 1 << 62))
_keys_lock = threading.Lock()


@contextlib.contextmanager
def reporting(reporter: Reporter | None) -> Iterator[None]:
    """Send the steps run inside this block to ``reporter`` (``None``: silence)."""
    token = _reporter.set(reporter)
    try:
        yield
    finally:
        _reporter.reset(token)


def active() -> bool:
    """Whether anyone listens (callers may skip building expensive messages otherwise)."""
    return _reporter.get() is not None


@contextlib.contextmanager
def step(message: str) -> Iterator[None]:
    """Tell the reporter that ``message`` (what is being done, in words) starts now and when it ends."""
    reporter = _reporter.get()
    if reporter is None:
        yield
        return
    with _keys_lock:
        key = next(_keys)
    depth = _depth.get()
    reporter(Event("start", key, message, depth))
    token = _depth.set(depth + 1)
    start = time.perf_counter()
    try:
        yield
    finally:
        _depth.reset(token)
        reporter(Event("end", key, message, depth, seconds=time.perf_counter() - start))


def advance(key: str, message: str, done: int, total: int = 0) -> None:
    """Counted work of the task ``key``: ``done`` of ``total`` (0: unknown), described by ``message``."""
    reporter = _reporter.get()
    if reporter is not None:
        reporter(Event("advance", key, message, _depth.get(), done=done, total=total))


def finish(key: str) -> None:
    """The counted task ``key`` is over: a terminal display removes its bar."""
    reporter = _reporter.get()
    if reporter is not None:
        reporter(Event("end", key, "", _depth.get()))


_console: Any = None


def stderr_console() -> Any:
    """The one rich console on stderr that every progress display of this process shares."""
    global _console
    if _console is None:
        from rich.console import Console

        _console = Console(stderr=True)
    return _console


class ConsoleReporter:
    """Draws events on a rich console: a live display on a terminal, plain lines elsewhere.

    ``console`` defaults to :func:`stderr_console`; ``plain`` forces plain lines (default: when
    the console is not a terminal). The live display runs only while a step or task is open, so
    other rich displays of the process work between steps as before.
    """

    def __init__(self, console: Any = None, *, plain: bool | None = None, prefix: str = "irdeploy") -> None:
        self.console = console if console is not None else stderr_console()
        self.plain = (not self.console.is_terminal) if plain is None else plain
        self.prefix = prefix
        self._lock = threading.Lock()
        self._tasks: dict[int | str, Any] = {}  # live display: event key -> rich task id
        self._phases: dict[int | str, str] = {}  # plain output: the last message per counted task
        self._bar: Any = None

    def __call__(self, event: Event) -> None:
        with self._lock:
            if self.plain:
                self._line(event)
            else:
                self._draw(event)

    def _line(self, event: Event) -> None:
        indent = "  " * event.depth
        if event.kind == "start":
            self._print(f"{self.prefix}: {indent}{event.message} ...")
        elif event.kind == "end" and event.seconds >= SLOW_SECONDS:
            self._print(f"{self.prefix}: {indent}{event.message}: done in {event.seconds:.1f} s")
        elif event.kind == "advance" and self._phases.get(event.key) != event.message:
            self._phases[event.key] = event.message
            count = f" ({event.total} to do)" if event.total else ""
            self._print(f"{self.prefix}: {indent}{event.message}{count}")
        elif event.kind == "end":
            self._phases.pop(event.key, None)

    def _print(self, text: str) -> None:
        from rich.text import Text

        self.console.print(Text(text), soft_wrap=True, highlight=False)

    def _draw(self, event: Event) -> None:
        if event.kind == "end":
            task = self._tasks.pop(event.key, None)
            if task is not None and self._bar is not None:
                self._bar.remove_task(task)
            if not self._tasks and self._bar is not None:
                self._bar.stop()
                self._bar = None
            return
        if self._bar is None:
            from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

            self._bar = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(bar_width=20),
                                 TextColumn("{task.fields[count]}"), TimeElapsedColumn(), console=self.console,
                                 transient=True)
            self._bar.start()
        description = "  " * event.depth + event.message
        if event.key not in self._tasks:
            self._tasks[event.key] = self._bar.add_task(description, total=None, count="")
        total = event.total or None if event.kind == "advance" else None
        count = f"{event.done}/{total}" if total else ""  # a step has no count: spinner and time only
        self._bar.update(self._tasks[event.key], description=description, completed=event.done, total=total,
                         count=count)
