"""``irdeploy restore``: image files and folders in, restored files of the same name out.

The loop keeps the backend busy: a small thread pool decodes the next images and encodes the
finished ones while the main thread runs inference (Pillow, OpenCV, ONNX Runtime, torch and
TensorRT all release the GIL in their heavy parts). Consecutive images of one size are batched;
images larger than the tile (``tile``, or by default an engine profile's largest H and W) are
processed in overlapping tiles (:mod:`irdeploy.runtime.tiling`).

What is kept from the input: the name (under ``out_dir``, keeping sub-folders of a folder
input), the bit depth (16-bit in, 16-bit out where the format stores it), grayscale (converted
to RGB for an RGB model and back) and alpha (set aside, reattached untouched). A file that cannot
be read, restored or written is reported by name and the rest go on; an existing output is kept
unless ``overwrite``; writes are atomic, so no output is ever partial.
"""

from __future__ import annotations

import contextlib
import glob
import os
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from irdeploy.core.images import (NO_ALPHA_SUFFIXES, SIXTEEN_BIT_SUFFIXES, SUFFIXES, DecodedImage, ImageError,
                                    from_batch, load_image, to_batch, to_channels, write_image)
from irdeploy.core.backend import Backend

from .tiling import fits, infer_tiled, tile_size

FORMATS = ("png", "jpg", "jpeg", "bmp", "tif", "tiff")


@dataclass(frozen=True)
class Job:
    source: Path
    target: Path


@dataclass
class RestoreReport:
    backend: str
    written: list[Path] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    megapixels: float = 0.0
    tiled: int = 0

    @property
    def images_per_second(self) -> float:
        return len(self.written) / self.seconds if self.seconds > 0 else 0.0

    @property
    def exit_code(self) -> int:
        """0 when every input was restored or deliberately skipped, 1 when some failed."""
        return 1 if self.failed else 0

    def note(self, text: str) -> None:
        if text not in self.notes:  # said once, however many images it concerns
            self.notes.append(text)

    def summary(self) -> str:
        lines = [f"note: {n}" for n in self.notes]
        lines += [f"skipped {path}: {why}" for path, why in self.skipped]
        lines += [f"failed {path}: {why}" for path, why in self.failed]
        lines.append(
            f"restored {len(self.written)} image(s) with {self.backend} in {self.seconds:.2f} s "
            f"({self.images_per_second:.2f} images/s, {self.megapixels / max(self.seconds, 1e-9):.2f} megapixels/s"
            f"{f', {self.tiled} in tiles' if self.tiled else ''}); "
            f"{len(self.skipped)} skipped, {len(self.failed)} failed"
        )
        return "\n".join(lines)


def collect_inputs(inputs: Sequence[str | os.PathLike], out_dir: Path, fmt: str) -> tuple[list[Job], list[tuple[Path, str]]]:
    """Jobs for files, folders (recursive, sorted) and globs, and the inputs that name nothing.

    A folder's images keep their sub-folders under ``out_dir``; files and glob matches land in it
    directly. Two inputs that would write one output, or an output that would replace its input,
    are failures rather than silent overwrites.
    """
    jobs: list[Job] = []
    problems: list[tuple[Path, str]] = []
    seen: dict[Path, Path] = {}

    def add(source: Path, relative: Path) -> None:
        target = out_dir / relative.with_suffix(f".{fmt}")
        if source.resolve() in seen.values():
            return  # named twice (a file and its folder, overlapping globs): restore it once
        if target in seen:
            problems.append((source, f"its output {target} is already written from {seen[target]}"))
        elif target.resolve() == source.resolve():
            problems.append((source, f"its output {target} would replace it; choose another output folder or format"))
        else:
            seen[target] = source.resolve()
            jobs.append(Job(source, target))

    def add_folder(folder: Path) -> None:
        for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES):
            add(path, path.relative_to(folder))

    for item in inputs:
        path = Path(item)
        if path.is_dir():
            add_folder(path)
        elif path.is_file():
            add(path, Path(path.name))
        else:
            matches = sorted(glob.glob(str(item), recursive=True))
            if not matches:
                problems.append((path, "no such file or folder, and no glob match"))
            for match in map(Path, matches):
                if match.is_dir():
                    add_folder(match)
                elif match.suffix.lower() in SUFFIXES:
                    add(match, Path(match.name))
    return jobs, problems


def restore(inputs: Sequence[str | os.PathLike], out_dir: str | os.PathLike, backend: Backend, *,
            tile: int | None = None, overlap: int = 32, batch: int = 1, fmt: str = "png",
            overwrite: bool = False, workers: int = 2, progress: bool = False) -> RestoreReport:
    """Restore every image named by ``inputs`` into ``out_dir`` with ``backend``.

    ``tile``: largest tile side (rounded down to the network's multiple); by default an engine
    profile's max H and W, or no tiling. ``overlap``: pixels neighbouring tiles share. ``batch``:
    most same-size images per inference call (also tiles of one image). ``fmt``: output format.
    ``progress``: a progress bar on stderr. Raises ``ValueError`` only for bad arguments or when
    no input names an image; per-file problems are in the report.
    """
    fmt = fmt.lower().lstrip(".")
    if fmt not in FORMATS:
        raise ValueError(f"unknown output format {fmt!r}; choose from {', '.join(FORMATS)}")
    if batch < 1 or workers < 1 or overlap < 0:
        raise ValueError(f"batch ({batch}) and workers ({workers}) must be positive and overlap ({overlap}) not negative")
    out_dir = Path(out_dir)
    jobs, problems = collect_inputs(inputs, out_dir, fmt)
    report = RestoreReport(backend=backend.name, failed=list(problems))
    if not jobs and not problems:
        raise ValueError(f"no images ({', '.join(SUFFIXES)}) found in {', '.join(map(str, inputs))}")
    todo = []
    for job in jobs:
        if job.target.exists() and not overwrite:
            report.skipped.append((job.source, f"{job.target} exists (--overwrite replaces it)"))
        else:
            todo.append(job)
    tiles = tile_size(tile, backend.max_shape, backend.alignment)
    limit = min(batch, backend.max_shape[0]) if backend.max_shape else batch
    ahead = workers + limit  # images decoded (or encoding) ahead: enough to fill a batch while others wait
    start = time.perf_counter()
    with _progress(progress, len(todo)) as advance, ThreadPoolExecutor(workers, thread_name_prefix="irdeploy-io") as pool:
        runner = _Runner(backend, report, tiles, overlap, limit, pool, advance, ahead)
        queue: deque[tuple[Job, Future]] = deque()
        for job in todo:
            queue.append((job, pool.submit(_decode, job, backend.channels)))
            if len(queue) >= ahead:
                runner.take(*queue.popleft())
        while queue:
            runner.take(*queue.popleft())
        runner.flush()
        runner.settle(0)
    report.seconds = time.perf_counter() - start
    return report


@dataclass
class _Decoded:
    image: DecodedImage
    model_input: np.ndarray  # HxWx(model channels)


def _decode(job: Job, channels: int) -> _Decoded:
    image = load_image(job.source)
    return _Decoded(image, to_channels(image.pixels, channels))


class _Runner:
    """Groups decoded images into batches, runs them, and hands the results to the encoders."""

    def __init__(self, backend: Backend, report: RestoreReport, tile: tuple[int, int] | None, overlap: int,
                 limit: int, pool: ThreadPoolExecutor, advance: Callable[[], None], ahead: int) -> None:
        self.backend, self.report, self.tile, self.overlap, self.limit = backend, report, tile, overlap, limit
        self.pool, self.advance, self.ahead = pool, advance, ahead
        self.pending: list[tuple[Job, _Decoded]] = []
        self.writes: deque[tuple[Job, Future]] = deque()

    def take(self, job: Job, future: Future) -> None:
        try:
            decoded = future.result()
        except ImageError as exc:
            self.report.failed.append((job.source, str(exc).removeprefix(f"{job.source}: ")))
            self.advance()
            return
        h, w = decoded.model_input.shape[:2]
        if self.pending and (self.pending[0][1].model_input.shape[:2] != (h, w) or len(self.pending) >= self.limit):
            self.flush()
        if fits(h, w, self.tile):
            self.pending.append((job, decoded))
        else:
            self._run([(job, decoded)], tiled=True)

    def flush(self) -> None:
        if self.pending:
            self._run(self.pending, tiled=False)
            self.pending = []

    def _run(self, items: list[tuple[Job, _Decoded]], tiled: bool) -> None:
        batch = to_batch(*(d.model_input for _, d in items))
        try:
            if tiled:
                out = infer_tiled(self.backend.infer, batch, self.tile, overlap=self.overlap,
                                  alignment=self.backend.alignment, max_batch=self.limit)
            else:
                out = self.backend.infer(batch)
        except Exception as exc:  # noqa: BLE001 - ONNX Runtime's errors share no base class; one bad batch must not end the run
            reason = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
            for job, _ in items:
                self.report.failed.append((job.source, f"inference failed ({reason})"))
                self.advance()
            return
        self.report.tiled += len(items) if tiled else 0
        for (job, decoded), restored in zip(items, from_batch(out)):
            self.report.megapixels += restored.shape[0] * restored.shape[1] / 1e6
            self.writes.append((job, self.pool.submit(_encode, job, decoded.image, restored, self.backend.channels)))
        self.settle(self.ahead)

    def settle(self, keep: int) -> None:
        """Collect finished writes, oldest first, until at most ``keep`` are outstanding (bounds
        the restored images held in memory when encoding is slower than inference)."""
        while len(self.writes) > keep:
            job, future = self.writes.popleft()
            try:
                notes = future.result()
            except (ImageError, OSError) as exc:
                self.report.failed.append((job.source, str(exc).removeprefix(f"{job.target}: ")))
            else:
                self.report.written.append(job.target)
                for note in notes:
                    self.report.note(note)
            self.advance()


def _encode(job: Job, image: DecodedImage, restored: np.ndarray, model_channels: int) -> list[str]:
    """Write one result like its input (channels, alpha, depth); returns notes for the report."""
    notes = []
    suffix = job.target.suffix.lower()
    pixels = restored
    if image.pixels.shape[-1] != model_channels:
        pixels = to_channels(restored, image.pixels.shape[-1])
        kind = "grayscale" if image.pixels.shape[-1] == 1 else "colour"
        notes.append(f"{kind} inputs are converted to the model's {model_channels} channel(s) and back")
    alpha = image.alpha
    if alpha is not None and suffix in NO_ALPHA_SUFFIXES:
        alpha = None
        notes.append(f"alpha channels are dropped: {suffix} keeps none (use --format png or tiff)")
    depth = image.bit_depth
    if depth == 16 and suffix not in SIXTEEN_BIT_SUFFIXES:
        depth = 8
        notes.append(f"16-bit inputs are written as 8-bit {suffix} (use --format png or tiff)")
    job.target.parent.mkdir(parents=True, exist_ok=True)
    write_image(job.target, pixels, alpha=alpha, bit_depth=depth)
    return notes


@contextlib.contextmanager
def _progress(enabled: bool, total: int) -> Iterator[Callable[[], None]]:
    """A rich progress bar on stderr with the running images/s; yields the per-image ``advance``."""
    if not enabled:
        yield lambda: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from irdeploy.core.progress import stderr_console

    start = time.perf_counter()
    with Progress(TextColumn("restoring"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("{task.fields[rate]}"), console=stderr_console()) as bar:
        task = bar.add_task("restore", total=total, rate="")

        def advance() -> None:
            done = bar.tasks[0].completed + 1
            bar.update(task, advance=1, rate=f"{done / max(time.perf_counter() - start, 1e-9):.2f} images/s")

        yield advance
