"""The one exception a video run raises for anything the user can fix, and for Ctrl-C.

:class:`VideoError` is a ``ValueError`` so the command line's existing handler prints it as one
line and exits 2; FFmpeg's own messages are folded into it (:func:`ffmpeg_reason`) instead of
reaching the user as a traceback.
"""

from __future__ import annotations


class VideoError(ValueError):
    """A video or image sequence that cannot be read, restored or written as asked."""


class Interrupted(Exception):
    """The run was stopped (Ctrl-C); nothing was written. Not a ValueError: exit code 130."""


def ffmpeg_reason(exc: BaseException) -> str:
    """FFmpeg's message without PyAV's errno prefix and file name: ``Invalid data found ...``."""
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return str(text).strip().splitlines()[0][:200]


def require_av():
    """PyAV, or one line saying how to install it (it is the optional ``video`` extra)."""
    try:
        import av
    except ImportError:
        raise VideoError("video needs PyAV; in the irdeploy clone, run: pip install \".[video]\" (or pip install av==18.1.0)") from None
    return av
