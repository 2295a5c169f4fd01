"""Frame sinks: a video file (PyAV encoder + muxer) or a PNG sequence, both written out of sight.

Nothing half-written: a video goes to a hidden ``.NAME.irdeploy-partial.EXT`` beside the
target and a sequence to a hidden folder; :meth:`commit` renames it into place once the last
frame is flushed, :meth:`abort` (an error, Ctrl-C) deletes it. An existing output is never
touched unless ``overwrite``, and then only replaced by a complete file.

Choices the user does not make (see :func:`default_codec` and :func:`default_pix_fmt`):
visually lossless H.264 (CRF 17) in 4:2:0 at the source's bit depth, FFV1 when the source was
lossless, VP9 where the container takes no H.264 (WebM). Timestamps are the source's, frame by
frame (variable frame rate survives); rotation, colour tags and the copied audio/subtitle
packets travel unchanged.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from .colour import Colour, PlaneLayout, layout, resolve, rgb_to_planes
from .decode import SourceFrame
from .errors import VideoError, ffmpeg_reason, require_av
from .probe import rgb_format

ENCODERS = ("libx264", "libx265", "libvpx-vp9", "ffv1", "png")
DEFAULT_CRF = {"libx264": 17, "libx265": 19, "libvpx-vp9": 24}
# Encoders that cannot code a subsampled picture of odd size: the frame is edge-padded instead.
_EVEN_ONLY = ("libx264", "libx265")


@dataclass(frozen=True)
class SourceTags:
    """What the writer keeps from the source: colour tags, bit depth, losslessness, rate, size."""

    width: int
    height: int
    depth: int
    lossless: bool
    rate: Fraction | None  # nominal: the encoder's rate control and the last frame's duration follow it
    time_base: Fraction
    pix_fmt: str | None = None  # the source's, for FFV1 (None: an image sequence)
    colorspace: int = 2  # AVCOL_SPC_UNSPECIFIED
    color_range: int = 0
    color_primaries: int = 2
    color_trc: int = 2
    video_index: int = 0  # the video stream's position among the source's streams (kept in the output)


# Containers where FFV1 is at home (players of MP4/MOV rarely decode it).
_FFV1_CONTAINERS = ("matroska", "avi", "nut")


def default_codec(source: SourceTags, supported: set[str], container: str = "matroska") -> str:
    """FFV1 for lossless sources in MKV/AVI/NUT, else H.264; VP9 where the container holds no H.264."""
    if source.lossless and "ffv1" in supported and any(name in container for name in _FFV1_CONTAINERS):
        return "ffv1"
    if "h264" in supported:
        return "libx264"
    if "vp9" in supported:
        return "libvpx-vp9"
    raise VideoError("the output container holds neither H.264 nor VP9; name the codec with --codec")


def default_pix_fmt(codec: str, source: SourceTags) -> str:
    """The source's format for FFV1 (lossless stays lossless: planar RGB for an RGB source or an
    image sequence), else 4:2:0 at the source's depth where the encoder has it (libvpx-vp9 in
    PyAV's FFmpeg has no 10-bit formats), RGB for PNG."""
    import av

    formats = [f.name for f in av.Codec(codec, "w").video_formats or []]
    if codec == "png":
        return "rgb48be" if source.depth > 8 else "rgb24"
    if codec == "ffv1" and source.pix_fmt in formats and writable(source.pix_fmt):
        return source.pix_fmt
    if codec == "ffv1" and (source.pix_fmt is None or rgb_format(source.pix_fmt)):  # sequence, bgr0, rgb48...
        # (PyAV's FFV1 has no 8-bit gbrp; 8-bit samples survive a 10-bit plane exactly)
        wanted = ("gbrp16le",) if source.depth > 8 else ("gbrp", "gbrp10le")
        return next((f for f in wanted if f in formats), "yuv444p16le")
    if codec == "ffv1" and layout(source.pix_fmt) is None:
        planar = source.pix_fmt.replace("yuva", "yuv", 1)  # YUV with alpha: the same planes without it
        if planar in formats and writable(planar):
            return planar
    wanted = "yuv420p10le" if source.depth > 8 else "yuv420p"
    return wanted if wanted in formats else "yuv420p"


def writable(pix_fmt: str) -> bool:
    """Formats this writer fills: planar YUV, gray or GBR (:mod:`.colour`), or packed RGB for PNG."""
    return layout(pix_fmt) is not None or pix_fmt in ("rgb24", "rgb48be")


class VideoWriter:
    """Encode restored frames into ``path`` (container from its suffix), muxing copied packets."""

    def __init__(self, path: str | os.PathLike, source: SourceTags, copied_streams: list, *, codec: str | None = None,
                 crf: int | None = None, pix_fmt: str | None = None, overwrite: bool = False) -> None:
        av = require_av()

        self.path = Path(path)
        if self.path.exists() and not overwrite:
            raise VideoError(f"{self.path} exists (--overwrite replaces it)")
        if codec is not None and codec not in ENCODERS:
            raise VideoError(f"--codec {codec!r}: choose from {', '.join(ENCODERS)} (png: a PNG sequence for a folder output)")
        self.partial = self.path.with_name(f".{self.path.stem}.irdeploy-partial{self.path.suffix}")
        self.source, self.notes = source, []
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.partial, "wb"):
                pass  # fails now, before any decoding, if the folder is not writable
        except OSError as exc:
            raise VideoError(f"cannot write {self.path} ({exc.strerror or exc})") from None
        try:
            self.container = av.open(str(self.partial), "w")
        except (av.FFmpegError, ValueError) as exc:
            self._remove()
            raise VideoError(f"cannot write {self.path}: FFmpeg has no muxer for {self.path.suffix!r} ({ffmpeg_reason(exc)})") from None
        try:
            self._plan(codec, crf, pix_fmt, copied_streams)
        except BaseException:
            self.abort()
            raise
        self.started = False
        self.frames = 0

    def _plan(self, codec: str | None, crf: int | None, pix_fmt: str | None, copied_streams: list) -> None:
        import av

        supported = set(self.container.supported_codecs)
        fmt = self.container.format.name
        self.codec = codec or default_codec(self.source, supported, fmt)
        if codec is None and self.source.lossless and self.codec != "ffv1":
            self.notes.append(f"the lossless source is written as lossy {self.codec}; --codec ffv1 (best in .mkv) keeps it lossless")
        if av.Codec(self.codec, "w").name not in supported and av.Codec(self.codec, "w").canonical_name not in supported:
            raise VideoError(f"{self.path.name}: the {fmt} container cannot hold {self.codec} video; "
                             f"choose another --codec or output suffix")
        formats = [f.name for f in av.Codec(self.codec, "w").video_formats or []]
        self.pix_fmt = pix_fmt or default_pix_fmt(self.codec, self.source)
        usable = [f for f in formats if writable(f)]
        if self.pix_fmt not in usable:
            raise VideoError(f"--pix-fmt {self.pix_fmt}: irdeploy writes {self.codec} as {', '.join(usable)}")
        if crf is not None and self.codec not in DEFAULT_CRF:
            raise VideoError(f"--crf applies to {', '.join(DEFAULT_CRF)}; {self.codec} is lossless")
        self.crf = crf if crf is not None else DEFAULT_CRF.get(self.codec)
        if self.source.depth > 8 and (layout(self.pix_fmt) is None or layout(self.pix_fmt).depth <= 8):
            self.notes.append(f"{self.source.depth}-bit source written as 8-bit {self.pix_fmt} ({self.codec})")
        for stream in copied_streams:
            name = stream.codec_context.name
            if name not in supported:
                raise VideoError(f"{self.path.name}: the {fmt} container cannot hold the source's {stream.type} "
                                 f"stream ({name}), which is copied without re-encoding; choose another output suffix")
        # Streams in the source's order (the video sized and tagged later, from its first frame).
        self.copies = {}
        before = [s for s in copied_streams if s.index < self.source.video_index]
        for stream in before:
            self.copies[stream.index] = self.container.add_stream_from_template(stream)
        self.stream = self.container.add_stream(self.codec, rate=self.source.rate or None)
        for stream in copied_streams[len(before):]:
            self.copies[stream.index] = self.container.add_stream_from_template(stream)

    def start(self, first: SourceFrame) -> None:
        """Add the video stream, sized and tagged from the first frame (its rotation is known only now)."""
        lay = layout(self.pix_fmt)
        h, w = first.rgb.shape[:2]
        self.size = self.height, self.width = h, w
        if lay is not None and lay.kind == "yuv" and self.codec in _EVEN_ONLY:
            self.height, self.width = -(-h // (1 << lay.shift[1])) << lay.shift[1], -(-w // (1 << lay.shift[0])) << lay.shift[0]
            if (self.height, self.width) != (h, w):
                self.notes.append(f"{w}x{h} frames padded to {self.width}x{self.height} (edge pixels repeated): "
                                  f"{self.codec} {self.pix_fmt} needs even sizes; --codec ffv1 or libvpx-vp9 keeps {w}x{h}")
        stream = self.stream
        stream.width, stream.height, stream.pix_fmt = self.width, self.height, self.pix_fmt
        stream.time_base = self.source.time_base
        ctx = stream.codec_context
        ctx.time_base = self.source.time_base
        self.colour, tags = self._colour(lay)
        ctx.colorspace, ctx.color_range, ctx.color_primaries, ctx.color_trc = tags
        self.tags = tags
        options = {}
        if self.codec == "libx264":
            options = {"crf": str(self.crf), "preset": "medium"}
        elif self.codec == "libx265":
            options = {"crf": str(self.crf), "preset": "medium", "x265-params": "log-level=none"}
        elif self.codec == "libvpx-vp9":
            ctx.bit_rate = 0
            options = {"crf": str(self.crf), "b": "0", "row-mt": "1", "deadline": "good", "cpu-used": "4"}
        elif self.codec == "ffv1":
            options = {"level": "3", "slicecrc": "1", "g": "1"}
        ctx.options = options
        if first.rotation:
            stream.set_display_rotation(first.rotation)
        self.layout = lay
        self.started = True

    def _colour(self, lay: PlaneLayout | None) -> tuple[Colour, tuple[int, int, int, int]]:
        """The conversion back to YUV and the tags (matrix, range, primaries, transfer) to write.

        A YUV source keeps its tags, and is converted back with the matrix it was read with (an
        untagged one stays untagged: players make the same guess from the same height). An RGB
        source (image sequence, planar-RGB FFV1, PNG) is written as tagged BT.709.
        """
        src = self.source
        src_layout = layout(src.pix_fmt) if src.pix_fmt else None
        if lay is None or lay.kind == "gbr":
            return resolve(1, 2, src.height, lay), (0, 2, src.color_primaries, src.color_trc)
        if src.pix_fmt is not None and not rgb_format(src.pix_fmt):  # YUV or gray, planar or not (NV12, P010)
            full = lay.full_range or bool(src_layout and src_layout.full_range) or src.color_range == 2
            rng = 2 if full else src.color_range
            return resolve(src.colorspace, rng, src.height, lay), (src.colorspace, rng, src.color_primaries, src.color_trc)
        rng = 2 if lay.full_range else 1
        trc = 13 if src.pix_fmt is None else (src.color_trc if src.color_trc not in (0, 2) else 1)
        return resolve(1, rng, src.height, lay), (1, rng, 1, trc)

    def mux(self, packets: list) -> None:
        for packet in packets:
            out = self.copies.get(packet.stream.index)
            if out is not None:
                packet.stream = out
                self.container.mux(packet)

    def write(self, frame: SourceFrame, rgb: np.ndarray) -> None:
        """Mux the packets that came before ``frame``, then encode ``rgb`` at ``frame``'s timestamp."""
        import av

        if not self.started:
            self.start(frame)
        self.mux(frame.packets)
        h, w = rgb.shape[:2]
        if (h, w) != self.size:
            raise VideoError(f"frame {frame.index + 1} is {w}x{h}, the first was {self.size[1]}x{self.size[0]}: "
                             "a video has one frame size (write a PNG sequence instead)")
        if (h, w) != (self.height, self.width):
            rgb = np.pad(rgb, ((0, self.height - h), (0, self.width - w), (0, 0)), mode="edge")
        if self.layout is not None:
            out = av.VideoFrame(self.width, self.height, self.pix_fmt)
            for plane, data in zip(out.planes, rgb_to_planes(rgb, self.layout, self.colour)):
                view = np.frombuffer(plane, self.layout.dtype).reshape(plane.height, plane.line_size // self.layout.dtype.itemsize)
                view[:, :plane.width] = data
        else:  # packed RGB (PNG in a container)
            deep = self.pix_fmt.startswith("rgb48")
            samples = np.floor(np.clip(rgb, 0, 1) * (65535 if deep else 255) + 0.5).astype(np.uint16 if deep else np.uint8)
            out = av.VideoFrame.from_ndarray(samples, format=self.pix_fmt)  # native order in; PyAV swaps for "be"
        out.colorspace, out.color_range = self.tags[0], self.tags[1]
        out.pts, out.time_base = frame.pts, frame.time_base  # no duration: the muxer derives it as it did for the source
        for packet in self.stream.encode(out):
            self.container.mux(packet)
        self.frames += 1

    def finish(self, tail: list) -> None:
        """Flush the encoder, mux the packets that came after the last frame, close the file."""
        if self.started:
            for packet in self.stream.encode(None):
                self.container.mux(packet)
        self.mux(tail)
        self.container.close()

    def commit(self) -> Path:
        os.replace(self.partial, self.path)
        return self.path

    def abort(self) -> None:
        """Close and delete the partial file (after an error or Ctrl-C); never raises."""
        try:
            self.container.close()
        except Exception:  # noqa: BLE001 - a half-initialised muxer may refuse to write its trailer
            pass
        self._remove()

    def _remove(self) -> None:
        try:
            self.partial.unlink()
        except FileNotFoundError:
            pass

    def describe(self) -> str:
        quality = f" crf {self.crf}" if self.crf is not None else ""
        copied = f", {len(self.copies)} stream(s) copied" if self.copies else ""
        return f"{self.codec} {self.pix_fmt}{quality}{copied}"


@dataclass
class SequenceWriter:
    """PNG frames into a folder (``out/``) or a printf pattern (``out/%05d.png``), 16-bit kept."""

    target: str
    names: list[str] | None = None  # the source sequence's file names, kept; else numbered
    overwrite: bool = False
    expected: int = 0  # frames the source holds (0: unknown), to refuse existing files up front
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        from .decode import is_sequence_pattern

        text = str(self.target)
        if is_sequence_pattern(text):
            self.folder, self.pattern = Path(os.path.dirname(text) or "."), os.path.basename(text)
            self.names = None
        else:
            self.folder, self.pattern = Path(text), "%06d.png"
        self.partial = self.folder.parent / f".{self.folder.name}.irdeploy-partial"
        self.codec, self.pix_fmt, self.frames = "png", "rgb", 0
        if not self.overwrite and self.folder.is_dir():
            taken = [n for n in map(self.name, range(self.expected or 1)) if (self.folder / n).exists()]
            if taken:
                raise VideoError(f"{self.folder / taken[0]} exists (--overwrite replaces it)")
        try:
            if self.partial.exists():
                shutil.rmtree(self.partial)
            self.partial.mkdir(parents=True)
        except OSError as exc:
            raise VideoError(f"cannot write {self.folder} ({exc.strerror or exc})") from None

    def name(self, index: int, source_name: str | None = None) -> str:
        """Output ``index``'s file name: the source frame's own (``names`` kept), else numbered."""
        if self.names is not None:
            return str(Path(source_name or self.names[index]).with_suffix(".png"))
        return self.pattern % (index + 1)

    def write(self, frame: SourceFrame, rgb: np.ndarray) -> None:
        from irdeploy.core.images import write_image

        name = self.name(frame.index, frame.name)
        if (self.folder / name).exists() and not self.overwrite:
            raise VideoError(f"{self.folder / name} exists (--overwrite replaces it)")
        write_image(self.partial / name, rgb, bit_depth=16 if frame.depth > 8 else 8)
        self.frames += 1

    def finish(self, tail: list) -> None:
        if tail:
            self.notes.append("audio and subtitle streams are not kept in a PNG sequence")

    def commit(self) -> Path:
        if not self.folder.exists():
            os.replace(self.partial, self.folder)
            return self.folder
        for item in sorted(self.partial.iterdir()):
            os.replace(item, self.folder / item.name)
        self.partial.rmdir()
        return self.folder

    def abort(self) -> None:
        shutil.rmtree(self.partial, ignore_errors=True)

    def describe(self) -> str:
        return f"PNG sequence ({self.frames} frames)"
