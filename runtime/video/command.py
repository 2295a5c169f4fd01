"""The ``irdeploy restore`` flags for clips and the command's video branch (kept out of cli.py).

:func:`add_arguments` adds ``--codec``, ``--crf``, ``--pix-fmt``, ``--on-error`` and ``--fps``
to the restore parser (imports nothing heavy); :func:`wants_video` is the decision between the
image path and this one; :func:`run` checks the input and output, then opens the backend (an
export or engine build can take minutes: not for a clip that cannot be read or written), runs
the pipeline and prints its summary. Ctrl-C ends with exit code 130 and no output file.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from fractions import Fraction


def _fps(text: str) -> Fraction:
    try:
        value = Fraction(text)
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"expected a frame rate such as 25, 30000/1001 or 29.97, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"the frame rate must be positive, got {text!r}")
    return value


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The video flags of ``irdeploy restore`` (ignored for image files)."""
    from .decode import ON_ERROR
    from .encode import ENCODERS

    g = p.add_argument_group("video and image sequences (INPUT: a clip, frames/%05d.png, or a folder of frames "
                             "with -o clip.mp4)")
    g.add_argument("--codec", choices=ENCODERS,
                   help="output codec (default: H.264 CRF 17 yuv420p; FFV1 for a lossless source in .mkv; "
                        "VP9 in .webm); png writes a PNG sequence")
    g.add_argument("--crf", type=int, help="quality for libx264/libx265/libvpx-vp9 (lower is better; default 17/19/24)")
    g.add_argument("--pix-fmt", help="output pixel format (default: 4:2:0 at the source's bit depth; the source's for FFV1)")
    g.add_argument("--on-error", choices=ON_ERROR, default="fail",
                   help="a frame that cannot be decoded: skip it, repeat the previous one, or fail (default: %(default)s)")
    g.add_argument("--fps", type=_fps, default=Fraction(25), help="frame rate of an image-sequence input (default: 25)")


def wants_video(args: argparse.Namespace) -> bool:
    """A single clip, frame pattern, or folder of frames written to a clip; or any video flag."""
    from .pipeline import is_video_input

    if len(args.inputs) != 1:
        if any(is_video_input(i) for i in args.inputs):
            raise ValueError("restore one video or image sequence at a time")
        return False
    return is_video_input(args.inputs[0], args.output)


def run(args: argparse.Namespace, open_backend: Callable[[], object]) -> int:
    """Restore ``args.inputs[0]`` into ``args.output``; the backend is opened once both are known good."""
    from .errors import Interrupted
    from .pipeline import VideoOptions, restore_video

    options = VideoOptions(codec=args.codec, crf=args.crf, pix_fmt=args.pix_fmt, batch=args.batch, tile=args.tile,
                           overlap=args.overlap, on_error=args.on_error, fps=args.fps, overwrite=args.overwrite,
                           progress=not args.quiet and sys.stderr.isatty())
    try:
        report = restore_video(args.inputs[0], args.output, open_backend, options)
    except Interrupted as exc:
        print(f"irdeploy restore: {exc}", file=sys.stderr)
        return 130
    print(report.summary())
    return 0  # --on-error fail raised on the first problem; skip/repeat list theirs in the summary
