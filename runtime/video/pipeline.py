"""decode -> infer -> encode as three threads joined by bounded queues.

The decoder thread demuxes and decodes (FFmpeg's own threads under it) and converts YUV to
float RGB; the calling thread batches frames (``batch``; tiles for frames larger than an
engine's profile) and runs the backend; the encoder thread converts back and encodes. Every
heavy step (FFmpeg, numpy, ONNX Runtime, torch, TensorRT) releases the GIL, so the stages
overlap, and the queues (a few batches deep) bound the memory whatever stage is slowest.
Each stage's busy time is measured apart from its waiting, so the summary shows which stage
bounds the throughput.

Stopping: an error in any stage, or Ctrl-C in the calling thread, sets one event that every
queue operation checks; the threads end, the partial output is deleted, and the error (or
:class:`~.errors.Interrupted`) is raised in the caller. A finished run renames its output into
place as the very last step.
"""

from __future__ import annotations

import os
import queue
import textwrap
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path


from .decode import SequenceSource, SourceFrame, VideoSource, is_sequence_pattern
from .encode import SequenceWriter, SourceTags, VideoWriter
from .errors import Interrupted, VideoError
from .probe import is_video_file

STAGES = ("decode", "infer", "encode")
_END = object()


@dataclass
class VideoOptions:
    """What ``irdeploy restore`` passes for a video (its flags, one to one)."""

    codec: str | None = None  # libx264, libx265, libvpx-vp9, ffv1, png; None: see encode.default_codec
    crf: int | None = None
    pix_fmt: str | None = None
    batch: int = 1
    tile: int | None = None
    overlap: int = 32
    on_error: str = "fail"  # skip, repeat or fail
    fps: Fraction = Fraction(25)  # of an image-sequence input
    overwrite: bool = False
    progress: bool = False


@dataclass
class VideoReport:
    source: str
    output: Path
    backend: str
    frames: int = 0
    size: tuple[int, int] = (0, 0)  # (W, H) of the restored frames
    seconds: float = 0.0  # wall time, open to rename
    busy: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    read: str = ""  # what the input is (codec, size, format, colour, rate, copied streams)
    written: str = ""  # codec, format, quality
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # corrupt frames, with their timestamps
    tiled: bool = False

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    @property
    def bound(self) -> str:
        """The stage with the most busy time: the one that limits the frame rate."""
        return max(self.busy, key=self.busy.get)

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def summary(self) -> str:
        """What was read, noted and written, then a table of each stage's busy time, so that a
        user sees which stage bounds the frame rate. Fits 80 columns: long lines wrap at spaces
        (a path is never broken), continuation lines indented."""
        lines = [f"read {self.read}"] if self.read else []
        lines += [f"note: {n}" for n in self.notes] + [f"warning: {p}" for p in self.problems]
        lines.append(f"restored {self.frames} frames ({self.size[0]}x{self.size[1]}{', tiled' if self.tiled else ''}) "
                     f"with {self.backend} in {self.seconds:.2f} s: {self.fps:.2f} fps")
        lines.append(f"wrote {self.output} ({self.written})")
        text = [textwrap.fill(line, 80, subsequent_indent="  ", break_long_words=False, break_on_hyphens=False)
                for line in lines]
        text.append(f"{'stage':<8}{'busy s':>8}{'ms/frame':>10}")
        for stage, seconds in self.busy.items():
            bound = "  bounds the throughput" if stage == self.bound else ""
            text.append(f"{stage:<8}{seconds:>8.2f}{1000 * seconds / max(self.frames, 1):>10.1f}{bound}")
        return "\n".join(text)


def is_video_input(source: str | os.PathLike, output: str | os.PathLike | None = None) -> bool:
    """Whether ``restore`` treats ``source`` as a clip: a video file, a printf frame pattern, or a
    folder of frames written to a video file or a frame pattern (a folder to a folder stays an
    image restore, each file on its own)."""
    text = str(source)
    if is_sequence_pattern(text):
        return True
    if Path(text).is_file():
        return is_video_file(text)
    if Path(text).is_dir() and output is not None:
        return is_video_file(output) or is_sequence_pattern(str(output))
    return False


def _open_source(source: str, options: VideoOptions, report: VideoReport):
    def problem(text: str) -> None:
        report.problems.append(text)

    if is_sequence_pattern(source) or Path(source).is_dir():
        return SequenceSource(source, options.fps, options.on_error, problem)
    return VideoSource(source, options.on_error, problem)


def _output_path(source: str, output: str | os.PathLike, video_in: bool, codec: str | None) -> str:
    """``-o`` as given; for a video file input, a folder (existing, or a name without suffix)
    means ``FOLDER/INPUT_NAME``: the input's container, unless ``--codec png`` asks for frames."""
    out = Path(output)
    folder = out.is_dir() or (not out.suffix and not is_sequence_pattern(str(output)))
    if video_in and folder and codec != "png":
        return str(out / Path(source).name)
    return str(output)


def _open_writer(source, target: str, options: VideoOptions):
    """A :class:`SequenceWriter` for a folder or frame pattern, else a :class:`VideoWriter` (FFmpeg
    picks the container from the suffix)."""
    from irdeploy.core.images import SUFFIXES

    path = Path(target)
    sequence = is_sequence_pattern(target) or path.is_dir() or not path.suffix
    if not sequence and path.suffix.lower() in SUFFIXES:
        raise VideoError(f"{target}: frames are written to a folder or a pattern such as {path.with_name('%06d' + path.suffix)}")
    if not sequence:
        if isinstance(source, VideoSource):
            info = source.info
            tags = SourceTags(info.width, info.height, info.depth, info.lossless, info.base_rate, info.time_base,
                              info.pix_fmt, info.colorspace, info.color_range, info.color_primaries, info.color_trc,
                              source.container.streams.video[0].index)
        else:
            tags = SourceTags(0, 0, 16 if _sixteen_bit(source.files[0]) else 8, True, source.fps, 1 / source.fps)
        return VideoWriter(target, tags, source.streams, codec=options.codec, crf=options.crf, pix_fmt=options.pix_fmt,
                           overwrite=options.overwrite)
    if options.codec not in (None, "png") or options.crf is not None or options.pix_fmt is not None:
        raise VideoError(f"{target}: a folder or frame pattern is written as a PNG sequence; --codec/--crf/--pix-fmt "
                         "need a video file name (.mp4, .mkv, .mov, .webm)")
    names = [p.name for p in source.files] if isinstance(source, SequenceSource) and not is_sequence_pattern(source.source) else None
    return SequenceWriter(target, names, overwrite=options.overwrite, expected=getattr(source, "frame_count", 0))


def _sixteen_bit(path: Path) -> bool:
    from irdeploy.core.images import load_image

    try:
        return load_image(path).bit_depth > 8
    except ValueError:
        return False


def restore_video(source: str | os.PathLike, output: str | os.PathLike, backend, options: VideoOptions | None = None,
                  *, on_frame: Callable[[int], None] | None = None) -> VideoReport:
    """Restore a video file or image sequence into ``output`` with ``backend``.

    ``backend``: any :class:`~irdeploy.core.backend.Backend`, or a function that opens one;
    it is then called only once the input is open and the output writable, and the backend it
    returns is closed at the end. Raises :class:`VideoError` for inputs and outputs that cannot
    work (one line each) and :class:`Interrupted` on Ctrl-C; either way no output file is left.
    ``on_frame``: called with the count of frames written so far.
    """
    options = options or VideoOptions()
    if options.batch < 1 or options.overlap < 0:
        raise VideoError(f"--batch ({options.batch}) must be positive and --overlap ({options.overlap}) not negative")
    source = str(source)
    video_in = Path(source).is_file()
    target = _output_path(source, output, video_in, options.codec)
    if video_in and Path(target).resolve() == Path(source).resolve():
        raise VideoError(f"{target}: the output would replace its input; choose another name")
    report = VideoReport(source, Path(target), getattr(backend, "name", "?"))
    owned = callable(backend) and not hasattr(backend, "infer")
    start = time.perf_counter()
    reader = writer = None
    try:
        reader = _open_source(source, options, report)
        report.read = reader.info.describe() if isinstance(reader, VideoSource) else \
            f"{source}: {reader.frame_count} frames at {float(reader.fps):g} fps"
        writer = _open_writer(reader, target, options)
        if owned:
            backend = backend()
            report.backend = backend.name
        _Run(reader, writer, backend, report, options).go(on_frame)
        report.output = writer.commit()
    except BaseException as exc:
        while writer is not None:
            try:  # a second Ctrl-C while the partial file is deleted must not leave it behind
                writer.abort()
                break
            except KeyboardInterrupt:
                continue
        if isinstance(exc, KeyboardInterrupt):
            raise Interrupted(f"interrupted after {report.frames} frames; nothing written") from None
        raise
    finally:
        if reader is not None:
            reader.close()
        if owned and hasattr(backend, "infer"):
            backend.close()
    report.seconds = time.perf_counter() - start
    report.written = writer.describe()
    for note in writer.notes:
        report.note(note)
    return report


class _Run:
    """The three stages and their queues for one clip."""

    def __init__(self, reader, writer, backend, report: VideoReport, options: VideoOptions) -> None:
        from irdeploy.runtime.tiling import tile_size

        self.reader, self.writer, self.backend, self.report = reader, writer, backend, report
        self.tile = tile_size(options.tile, backend.max_shape, backend.alignment)
        self.overlap, self.progress = options.overlap, options.progress
        self.limit = min(options.batch, backend.max_shape[0]) if backend.max_shape else options.batch
        depth = 2 * self.limit + 2  # frames decoded ahead / restored awaiting encode
        self.decoded: queue.Queue = queue.Queue(depth)
        self.restored: queue.Queue = queue.Queue(depth)
        self.stop = threading.Event()
        self.errors: list[BaseException] = []

    def go(self, on_frame: Callable[[int], None] | None) -> None:
        """Run the three stages under the progress bar, then flush and close the writer."""
        from .progress import frame_progress

        total = self.reader.info.frames if isinstance(self.reader, VideoSource) else self.reader.frame_count
        name = Path(self.report.source).name or self.report.source
        with frame_progress(self.progress, total, f"restoring {total or 'the'} frames of {name}") as advance:
            def written(count: int) -> None:
                advance(count)
                if on_frame is not None:
                    on_frame(count)

            self._go(written)
            # The encoder's look-ahead frames (x264: up to 40) are coded now: still under the bar
            # and counted as encoding time.
            t = time.perf_counter()
            self.writer.finish(self.reader.tail)
            self.report.busy["encode"] += time.perf_counter() - t

    def _go(self, advance: Callable[[int], None]) -> None:
        threads = [threading.Thread(target=self._guard, args=(self._decode,), name="irdeploy-decode", daemon=True),
                   threading.Thread(target=self._guard, args=(self._encode, advance), name="irdeploy-encode", daemon=True)]
        try:  # started inside: a Ctrl-C between two starts still stops the one that runs
            for thread in threads:
                thread.start()
            self._infer()
        except BaseException as exc:  # noqa: BLE001 - Ctrl-C or an inference error: stop the others first
            self.errors.insert(0, exc)
            self.stop.set()
        while any(thread.is_alive() for thread in threads):
            try:  # the writer may only be closed once its thread is out of the encoder
                for thread in threads:
                    thread.join(0.1)
            except KeyboardInterrupt as exc:
                self.errors.insert(0, exc)
                self.stop.set()
        if self.errors:
            raise self.errors[0]

    def _guard(self, stage: Callable, *args) -> None:
        try:
            stage(*args)
        except BaseException as exc:  # noqa: BLE001 - carried to the caller's thread and re-raised there
            self.errors.append(exc)
            self.stop.set()

    def _put(self, q: queue.Queue, item) -> None:
        while not self.stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return
            except queue.Full:
                continue
        raise _Stopped

    def _get(self, q: queue.Queue):
        while not self.stop.is_set():
            try:
                return q.get(timeout=0.1)
            except queue.Empty:
                continue
        raise _Stopped

    def _decode(self) -> None:
        busy = self.report.busy
        frames = self.reader.frames()
        try:
            while True:
                t = time.perf_counter()
                frame = next(frames, _END)
                busy["decode"] += time.perf_counter() - t
                self._put(self.decoded, frame)
                if frame is _END:
                    return
        except _Stopped:
            return

    def _infer(self) -> None:
        pending: list[SourceFrame] = []
        try:
            while True:
                frame = self._get(self.decoded)
                if frame is _END or (pending and (len(pending) >= self.limit or frame.rgb.shape != pending[0].rgb.shape)):
                    self._run(pending)
                    pending = []
                if frame is _END:
                    self._put(self.restored, _END)
                    return
                pending.append(frame)
        except _Stopped:
            return

    def _run(self, frames: list[SourceFrame]) -> None:
        from irdeploy.core.images import from_batch, to_batch
        from irdeploy.runtime.tiling import fits, infer_tiled

        if not frames:
            return
        t = time.perf_counter()
        batch = to_batch(*(f.rgb for f in frames))
        h, w = batch.shape[-2:]
        if fits(h, w, self.tile):
            out = self.backend.infer(batch)
        else:
            self.report.tiled = True
            out = infer_tiled(self.backend.infer, batch, self.tile, overlap=self.overlap,
                              alignment=self.backend.alignment, max_batch=self.limit)
        results = from_batch(out)
        self.report.busy["infer"] += time.perf_counter() - t
        for frame, rgb in zip(frames, results):
            self._put(self.restored, (frame, rgb))

    def _encode(self, advance: Callable[[int], None]) -> None:
        busy = self.report.busy
        try:
            while True:
                item = self._get(self.restored)
                if item is _END:
                    return
                frame, rgb = item
                t = time.perf_counter()
                self.writer.write(frame, rgb)
                busy["encode"] += time.perf_counter() - t
                self.report.frames += 1
                self.report.size = (rgb.shape[1], rgb.shape[0])
                advance(self.report.frames)
        except _Stopped:
            return


class _Stopped(Exception):
    """Another stage failed or the run was interrupted: this one ends quietly."""
