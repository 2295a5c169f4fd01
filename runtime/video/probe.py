"""What a video file holds, read once before anything is decoded or written.

``restore`` needs the answers up front: whether the input is a video at all (one line, not an
FFmpeg traceback), the frame size and pixel format to choose the output's, the colour tags to
convert with and write back, the rotation and timing to keep, how many frames to expect for the
progress bar, and which audio and subtitle streams to copy.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

from .colour import Colour, PlaneLayout, layout, resolve
from .errors import VideoError, ffmpeg_reason, require_av

VIDEO_SUFFIXES = (".mp4", ".m4v", ".mkv", ".mov", ".webm", ".avi", ".mxf", ".ts", ".mts", ".m2ts", ".nut", ".y4m",
                  ".mpg", ".mpeg", ".flv", ".ogv", ".wmv")
# Decoders whose output is exactly what was encoded: a restored copy should stay lossless too.
LOSSLESS_CODECS = frozenset({"ffv1", "png", "rawvideo", "huffyuv", "ffvhuff", "utvideo", "magicyuv", "qtrle",
                             "v210", "v410", "r210", "zlib", "tiff", "qoi"})


@dataclass(frozen=True)
class VideoInfo:
    """The first video stream of a file and what travels with it.

The rotation is not here: PyAV exposes the display matrix on decoded frames only, so the
pipeline takes it from the first frame.
"""

    path: Path
    codec: str
    width: int
    height: int
    pix_fmt: str
    time_base: Fraction
    rate: Fraction | None  # average frame rate (None when FFmpeg cannot tell)
    base_rate: Fraction | None  # FFmpeg's guess of the nominal rate (25 for a 25 fps clip with pauses)
    frames: int  # from the container's index, or estimated from duration x rate; 0: unknown
    duration: float | None  # seconds, of the video stream
    colorspace: int
    color_range: int
    color_primaries: int
    color_trc: int
    copied: tuple[str, ...] = field(default_factory=tuple)  # "audio aac", "subtitle mov_text"
    # Frames the video stream's own header promises (its frame count, or its duration x rate);
    # 0 when only the container's duration is known, which audio may lengthen.
    promised: int = 0

    @property
    def layout(self) -> PlaneLayout | None:
        return layout(self.pix_fmt)

    @property
    def depth(self) -> int:
        """Bits per sample; a packed format's (rgb48be: 16, p010le: 10) from FFmpeg's table, so a
        16-bit PNG-in-MOV clip chooses 16-bit FFV1 or 10-bit H.264 like a planar one would."""
        lay = self.layout
        if lay is not None:
            return lay.depth
        import av

        return max(c.bits for c in av.VideoFormat(self.pix_fmt).components if not c.is_alpha)

    @property
    def rgb(self) -> bool:
        return rgb_format(self.pix_fmt)

    @property
    def lossless(self) -> bool:
        return self.codec in LOSSLESS_CODECS

    @property
    def colour(self) -> Colour:
        return resolve(self.colorspace, self.color_range, self.height, self.layout)

    def describe(self) -> str:
        rate = f"{float(self.rate):.3g} fps" if self.rate else "unknown rate"
        streams = f"; copying {', '.join(self.copied)}" if self.copied else ""
        return (f"{self.path.name}: {self.codec} {self.width}x{self.height} {self.pix_fmt} ({'RGB' if self.rgb else self.colour.name}), "
                f"{rate}, {self.frames or '?'} frames{f', {self.duration:.2f} s' if self.duration else ''}{streams}")


def rgb_format(pix_fmt: str) -> bool:
    """Samples that are RGB (planar GBR, packed RGB, a palette): no matrix or range applies, so
    neither is read from the stream nor written back."""
    lay = layout(pix_fmt)
    if lay is not None:
        return lay.kind == "gbr"
    import av

    fmt = av.VideoFormat(pix_fmt)
    return fmt.is_rgb or fmt.has_palette


def is_video_file(path: str | os.PathLike) -> bool:
    """A file whose name says video (the decision ``restore`` makes before opening it)."""
    p = Path(path)
    return p.suffix.lower() in VIDEO_SUFFIXES and not p.is_dir()


def open_input(path: str | os.PathLike):
    """``av.open`` for reading, FFmpeg's failure as one :class:`VideoError` line."""
    av = require_av()
    path = Path(path)
    if not path.is_file():
        raise VideoError(f"{path}: no such file")
    try:
        return av.open(str(path), "r")
    except av.EOFError:
        raise VideoError(f"{path}: no frames (the file ends after its header)") from None
    except av.FFmpegError as exc:
        raise VideoError(f"{path}: not a video FFmpeg can read ({ffmpeg_reason(exc)})") from None


def probe(path: str | os.PathLike) -> VideoInfo:
    """Read the container header (no frames decoded) and describe its first video stream."""
    path = Path(path)
    with open_input(path) as container:
        return describe_container(path, container)


def describe_container(path: Path, container) -> VideoInfo:
    if not container.streams.video:
        kinds = ", ".join(s.type for s in container.streams) or "no streams"
        raise VideoError(f"{path}: no video stream ({kinds})")
    stream = container.streams.video[0]
    ctx = stream.codec_context
    if not ctx.width or not ctx.height or ctx.format is None:
        raise VideoError(f"{path}: the video stream has no frame size or pixel format (zero frames, or a broken header)")
    rate = stream.average_rate or stream.guessed_rate
    own = float(stream.duration * stream.time_base) if stream.duration else _tag_seconds(stream.metadata.get("DURATION"))
    duration = own or (container.duration / 1e6 if container.duration else None)
    promised = int(stream.frames or 0) or (round(own * float(rate)) if own and rate else 0)
    frames = promised or (round(duration * float(rate)) if duration and rate else 0)
    copied = tuple(f"{s.type} {s.codec_context.name}" for s in container.streams if s.type in ("audio", "subtitle"))
    return VideoInfo(
        path=path, codec=ctx.name, width=ctx.width, height=ctx.height,
        pix_fmt=ctx.format.name, time_base=stream.time_base, rate=Fraction(rate) if rate else None,
        base_rate=Fraction(stream.guessed_rate or rate) if (stream.guessed_rate or rate) else None, frames=frames,
        duration=duration, colorspace=int(ctx.colorspace or 0),
        color_range=int(ctx.color_range or 0), color_primaries=int(ctx.color_primaries or 0),
        color_trc=int(ctx.color_trc or 0), copied=copied, promised=promised,
    )


def _tag_seconds(text: str | None) -> float | None:
    """Matroska's per-track ``DURATION`` tag, ``HH:MM:SS.nnnnnnnnn``, in seconds."""
    try:
        h, m, sec = str(text).split(":")
        return int(h) * 3600 + int(m) * 60 + float(sec)
    except (AttributeError, ValueError):
        return None

