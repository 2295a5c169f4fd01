"""Frame sources: a video file (through PyAV) or an image sequence, as float32 RGB frames.

Each source yields :class:`SourceFrame` objects in presentation order, each carrying its own
timestamp (so variable frame rate survives) and the audio/subtitle packets demuxed before it
(so the encoder can copy them interleaved, without re-encoding and without holding a whole
soundtrack in memory). A frame FFmpeg cannot decode is reported with its timestamp and handled
per ``on_error``: ``skip`` drops it, ``repeat`` puts the previous frame in its place (keeping
the frame count and timing), ``fail`` stops the run.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from .colour import PlaneLayout, layout, planes_to_rgb, resolve
from .errors import VideoError, ffmpeg_reason
from .probe import VideoInfo, describe_container, open_input, rgb_format

ON_ERROR = ("skip", "repeat", "fail")


@dataclass
class SourceFrame:
    index: int  # position in the output
    pts: int  # presentation timestamp in ``time_base`` (one nominal frame on from the last where the source has none)
    time_base: Fraction  # (no duration: the muxer derives each from the next frame's pts, as the source's did)
    rgb: np.ndarray  # HxWx3 float32 in [0, 1]
    packets: list = field(default_factory=list)  # other streams' packets to mux before this frame
    rotation: int = 0  # display rotation, degrees counter-clockwise
    depth: int = 8  # bits per sample of the source
    name: str | None = None  # an image sequence's file name: a folder output keeps it, whatever was skipped


def timestamp(seconds: float | None) -> str:
    """``00:01:02.345`` (or ``?``): how a corrupt frame's position is reported."""
    if seconds is None:
        return "?"
    m, s = divmod(max(seconds, 0.0), 60)
    h, m = divmod(int(m), 60)
    return f"{h:02d}:{m:02d}:{s:06.3f}"


class _ErrorPolicy:
    """Applies ``on_error`` to a frame that failed; remembers the last good frame for ``repeat``."""

    def __init__(self, on_error: str, where: str, report: Callable[[str], None]) -> None:
        if on_error not in ON_ERROR:
            raise VideoError(f"--on-error {on_error!r}: choose from {', '.join(ON_ERROR)}")
        self.on_error, self.where, self.report = on_error, where, report
        self.previous: np.ndarray | None = None

    def handle(self, seconds: float | None, reason: str) -> np.ndarray | None:
        """The pixels to emit in the failed frame's place, or None to drop it; raises for ``fail``."""
        what = f"{self.where}: corrupt frame at {timestamp(seconds)} ({reason})"
        if self.on_error == "fail":
            raise VideoError(f"{what}; --on-error skip or repeat carries on past it")
        if self.on_error == "repeat" and self.previous is not None:
            self.report(f"{what}: repeated the previous frame")
            return self.previous
        self.report(f"{what}: skipped")
        return None

    def ended_early(self, decoded: int, promised: int) -> None:
        """The stream stopped short of what its header promises (a truncated file): ``fail``
        refuses it, ``skip``/``repeat`` keep the frames there are and say so."""
        what = f"{self.where}: the video ends after {decoded} of the {promised} frames its header promises (truncated?)"
        if self.on_error == "fail":
            raise VideoError(f"{what}; --on-error skip keeps the {decoded} frames")
        self.report(what)


def frame_to_rgb(frame, cache: dict) -> np.ndarray:
    """A decoded ``av.VideoFrame`` -> HxWx3 float32 RGB, with its own colour tags.

    Planar YUV, gray and planar RGB are read directly (:mod:`.colour`); anything else (NV12,
    P010, packed RGB, alpha formats) is first repacked by FFmpeg into a planar 16-bit form, which
    changes the layout only, not the colours.
    """
    name = frame.format.name
    lay = layout(name)
    if lay is None:
        if rgb_format(name):
            return frame.to_ndarray(format="rgb48le").astype(np.float32) / 65535.0
        frame = frame.reformat(format="yuv444p16le")
        lay = layout("yuv444p16le")
    key = (lay.name, int(frame.colorspace or 0), int(frame.color_range or 0), frame.height)
    if key not in cache:
        cache[key] = resolve(key[1], key[2], frame.height, lay)
    return planes_to_rgb(read_planes(frame, lay), lay, cache[key])


def read_planes(frame, lay: PlaneLayout) -> list[np.ndarray]:
    """The frame's planes as 2-D integer arrays (views without FFmpeg's line padding)."""
    planes = []
    for plane in frame.planes:
        data = np.frombuffer(plane, lay.dtype)
        planes.append(data.reshape(plane.height, plane.line_size // lay.dtype.itemsize)[:, :plane.width])
    return planes


class VideoSource:
    """Decode a video file's first video stream; pass its audio and subtitle packets along."""

    def __init__(self, path: str | os.PathLike, on_error: str = "fail",
                 report: Callable[[str], None] = lambda text: None) -> None:
        self.path = Path(path)
        self.container = open_input(self.path)
        try:
            self.info: VideoInfo = describe_container(self.path, self.container)
        except VideoError:
            self.container.close()
            raise
        self.policy = _ErrorPolicy(on_error, str(self.path), report)
        self.copied = [s for s in self.container.streams if s.type in ("audio", "subtitle")]
        self.tail: list = []  # packets after the last frame, muxed before the output closes

    @property
    def streams(self) -> list:
        return self.copied

    def frames(self) -> Iterator[SourceFrame]:
        import av

        stream = self.container.streams.video[0]
        # Slice threads only: frame threads would report a damaged packet's error a few packets
        # later, against the wrong frame (and the decoder is rarely the slow stage here).
        stream.thread_type = "SLICE"
        copied = set(self.copied)
        pending: list = []
        cache: dict = {}
        index = 0
        last: int | None = None  # the previous frame's pts
        try:
            for packet in self.container.demux(*self.container.streams):
                if packet.stream in copied:
                    if packet.dts is not None:
                        pending.append(packet)
                    continue
                if packet.stream is not stream:
                    continue
                try:
                    decoded = packet.decode()
                except av.FFmpegError as exc:
                    seconds = float(packet.pts * packet.time_base) if packet.pts is not None else None
                    rgb = self.policy.handle(seconds, ffmpeg_reason(exc))
                    decoded = [] if rgb is None else [_Stand(packet, rgb)]
                for frame in decoded:
                    if isinstance(frame, _Stand):
                        rgb = frame.rgb
                    elif frame.is_corrupt:
                        rgb = self.policy.handle(frame.time, "the decoder marked it corrupt")
                        if rgb is None:
                            continue
                    else:
                        rgb = frame_to_rgb(frame, cache)
                        self.policy.previous = rgb
                    time_base = frame.time_base or stream.time_base
                    pts = frame.pts
                    if pts is None:  # some AVI/raw streams: one nominal frame after the previous
                        step = round(1 / (self.info.base_rate * time_base)) if self.info.base_rate else 1
                        pts = last + max(step, 1) if last is not None else 0
                    last = pts
                    yield SourceFrame(index, pts, time_base, rgb, pending,
                                      rotation=getattr(frame, "rotation", 0) or 0, depth=self.info.depth)
                    pending = []
                    index += 1
        except av.FFmpegError as exc:  # the demuxer itself gave up (a truncated file)
            raise VideoError(f"{self.path}: cannot read past frame {index} ({ffmpeg_reason(exc)})") from None
        self.tail = pending
        if index == 0:
            raise VideoError(f"{self.path}: no video frame could be decoded")
        if self.info.promised and index < self.info.promised - 1:
            self.policy.ended_early(index, self.info.promised)

    def close(self) -> None:
        self.container.close()


@dataclass
class _Stand:
    """A placeholder 'frame' for a packet that failed to decode, with the pixels chosen for it."""

    packet: object
    rgb: np.ndarray

    @property
    def pts(self) -> int | None:
        return self.packet.pts

    @property
    def time_base(self) -> Fraction:
        return self.packet.time_base


_PRINTF = re.compile(r"%(0?)(\d*)d")


def is_sequence_pattern(text: str) -> bool:
    """``frames/%05d.png``: a printf pattern naming numbered frames."""
    return bool(_PRINTF.search(os.path.basename(str(text))))


def sequence_files(source: str | os.PathLike) -> list[Path]:
    """The frames of a folder (every image, sorted by name) or a printf pattern (sorted by number)."""
    from irdeploy.core.images import SUFFIXES

    text = str(source)
    if is_sequence_pattern(text):
        folder, name = os.path.split(text)
        m = _PRINTF.search(name)
        digits = r"\d+" if not m[2] else (rf"\d{{{m[2]}}}" if m[1] else rf"\s*\d{{1,{m[2]}}}")
        regex = re.compile(re.escape(name[:m.start()]) + f"({digits})" + re.escape(name[m.end():]) + "$")
        base = Path(folder or ".")
        found = sorted(((int(g[1]), p) for p in base.iterdir() if (g := regex.match(p.name))), key=lambda t: t[0]) \
            if base.is_dir() else []
        files = [p for _, p in found]
    else:
        folder = Path(text)
        files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in SUFFIXES)
    if not files:
        raise VideoError(f"{text}: no frames ({', '.join(SUFFIXES)} files) found")
    return files


class SequenceSource:
    """Numbered image files as frames at ``fps`` (their own bit depth, 16-bit PNG/TIFF kept)."""

    def __init__(self, source: str | os.PathLike, fps: Fraction, on_error: str = "fail",
                 report: Callable[[str], None] = lambda text: None) -> None:
        self.source = str(source)
        self.files = sequence_files(source)
        self.fps = Fraction(fps)
        self.policy = _ErrorPolicy(on_error, self.source, report)
        self.tail: list = []
        self.streams: list = []
        self.depth = 8

    @property
    def frame_count(self) -> int:
        return len(self.files)

    def frames(self) -> Iterator[SourceFrame]:
        from irdeploy.core.images import ImageError, load_image, to_channels

        time_base = 1 / self.fps
        index = 0
        for number, path in enumerate(self.files):
            try:
                image = load_image(path)
            except ImageError as exc:
                rgb = self.policy.handle(float(number * time_base), str(exc).removeprefix(f"{path}: "))
                if rgb is None:
                    continue
            else:
                rgb = to_channels(image.pixels, 3)
                self.depth = max(self.depth, image.bit_depth)
                self.policy.previous = rgb
            yield SourceFrame(index, number, time_base, rgb, depth=self.depth, name=path.name)
            index += 1
        if index == 0:
            raise VideoError(f"{self.source}: no frame could be read")

    def close(self) -> None:
        pass
