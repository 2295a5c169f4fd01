"""Small synthetic clips for tests, benchmarks and demos, encoded with FFmpeg's own colour code.

The RGB -> YUV step here is swscale's (PyAV's ``VideoReformatter``), not :mod:`.colour`: a clip
made by an independent converter is what shows that irdeploy reads colour right, rather than
that it agrees with itself. Frames are a photograph panned across the frame (real texture,
real motion) or a moving pattern; audio is a sine tone.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import numpy as np

# swscale's names for the matrices (AVColorSpace value -> reformatter colorspace).
_SWS_MATRIX = {1: "itu709", 5: "itu601", 6: "smpte170m", 9: "bt2020"}


def panned(photo: np.ndarray, size: tuple[int, int], count: int, step: tuple[int, int] = (2, 3)) -> list[np.ndarray]:
    """``count`` HxWx3 crops of ``photo`` whose window moves ``step`` (dy, dx) pixels a frame."""
    h, w = size
    dy, dx = step
    if photo.shape[0] < h + dy * count or photo.shape[1] < w + dx * count:
        raise ValueError(f"photo {photo.shape[1]}x{photo.shape[0]} is too small to pan a {w}x{h} window {count} times")
    return [np.ascontiguousarray(photo[i * dy:i * dy + h, i * dx:i * dx + w, :3]) for i in range(count)]


def pattern(size: tuple[int, int], count: int) -> list[np.ndarray]:
    """A moving pattern: colour ramps, a travelling bright square, a checkerboard strip."""
    h, w = size
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    frames = []
    for i in range(count):
        r = (x + 3 * i) % w / max(w - 1, 1)
        g = y / max(h - 1, 1)
        b = 0.5 + 0.5 * np.sin((x + y + 4 * i) / 6.0)
        frame = np.stack([r, g, b], axis=-1)
        top, left = (2 * i) % max(h - 8, 1), (5 * i) % max(w - 8, 1)
        frame[top:top + 8, left:left + 8] = 1.0
        frame[: max(h // 8, 1)] = ((x[: max(h // 8, 1)] // 4 + i) % 2)[..., None]
        frames.append(frame.astype(np.float32))
    return frames


def sine(seconds: float, rate: int = 48000, frequency: float = 440.0) -> np.ndarray:
    """A mono float32 sine tone at -10 dBFS."""
    t = np.arange(int(round(seconds * rate))) / rate
    return (0.316 * np.sin(2 * np.pi * frequency * t)).astype(np.float32)


def write_clip(path: str | os.PathLike, frames: Sequence[np.ndarray], *, fps: int = 25, codec: str = "libx264",
               pix_fmt: str = "yuv420p", crf: int = 12, pts: Sequence[int] | None = None, time_base: Fraction | None = None,
               rotation: int = 0, audio: np.ndarray | None = None, sample_rate: int = 48000, audio_codec: str = "aac",
               colorspace: int = 1, full_range: bool = False,
               subtitles: Sequence[tuple[int, int, str]] = ()) -> Path:
    """Encode float RGB ``frames`` (HxWx3 in [0, 1]) into ``path``.

    ``pts`` (in ``time_base``, default 1/fps) gives each frame's own timestamp: a variable frame
    rate clip. ``colorspace`` is the AVColorSpace tag (1 BT.709, 5/6 BT.601, 9 BT.2020), applied
    by swscale and written to the stream. ``audio``: mono samples, encoded with ``audio_codec``.
    ``subtitles``: (start ms, duration ms, text) cues as a SubRip stream (Matroska).
    """
    import av
    from av.video.reformatter import VideoReformatter

    sws = VideoReformatter()
    path = Path(path)
    time_base = time_base or Fraction(1, fps)
    h, w = frames[0].shape[:2]
    deep = any(tag in pix_fmt for tag in ("10", "12", "16")) or pix_fmt.startswith("rgb48")
    with av.open(str(path), "w") as out:
        video = out.add_stream(codec, rate=fps)
        video.width, video.height, video.pix_fmt = w, h, pix_fmt
        video.time_base = time_base
        ctx = video.codec_context
        ctx.time_base = time_base
        rgb_out = pix_fmt.startswith(("rgb", "gbr", "bgr"))
        if not rgb_out:
            ctx.colorspace, ctx.color_range = colorspace, 2 if full_range else 1
            ctx.color_primaries = ctx.color_trc = {1: 1, 5: 5, 6: 6, 9: 9}.get(colorspace, 2)
        if codec in ("libx264", "libx265"):
            ctx.options = {"crf": str(crf), **({"x265-params": "log-level=none"} if codec == "libx265" else {})}
        if rotation:
            video.set_display_rotation(rotation)
        text = out.add_mux_stream("subrip") if subtitles else None
        cues = list(subtitles)
        sound = None
        if audio is not None:
            sound = out.add_stream(audio_codec, rate=sample_rate)
            sound.layout = "mono"
        for i, rgb in enumerate(frames):
            peak, dtype, fmt = (65535, np.uint16, "rgb48le") if deep else (255, np.uint8, "rgb24")
            samples = np.floor(np.clip(rgb, 0, 1) * peak + 0.5).astype(dtype)
            frame = av.VideoFrame.from_ndarray(samples, format=fmt)
            if not rgb_out:
                frame = sws.reformat(frame, format=pix_fmt, dst_colorspace=_SWS_MATRIX.get(colorspace, "itu601"),
                                                   dst_color_range="JPEG" if full_range else "MPEG",
                                                   interpolation="BICUBIC")
            elif fmt != pix_fmt:
                frame = frame.reformat(format=pix_fmt)
            frame.pts = pts[i] if pts is not None else i
            frame.time_base = time_base
            while cues and cues[0][0] <= 1000 * frame.pts * time_base:  # muxed in time order, beside the video
                start, length, line = cues.pop(0)
                cue = av.Packet(line.encode())
                cue.pts = cue.dts = start
                cue.duration, cue.time_base, cue.stream = length, Fraction(1, 1000), text
                out.mux(cue)
            for packet in video.encode(frame):
                out.mux(packet)
        for packet in video.encode(None):
            out.mux(packet)
        if sound is not None:
            chunk = sound.codec_context.frame_size or 1024
            for start in range(0, len(audio), chunk):
                block = audio[start:start + chunk]
                if audio_codec.startswith("pcm_s16"):
                    af = av.AudioFrame.from_ndarray((block * 32767).astype(np.int16)[None], format="s16", layout="mono")
                else:
                    if len(block) < chunk:
                        block = np.pad(block, (0, chunk - len(block)))
                    af = av.AudioFrame.from_ndarray(block[None], format="fltp", layout="mono")
                af.sample_rate, af.pts = sample_rate, start
                for packet in sound.encode(af):
                    out.mux(packet)
            for packet in sound.encode(None):
                out.mux(packet)
    return path
