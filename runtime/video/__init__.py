"""Video and image-sequence restoration: decode -> infer -> encode, pipelined (PyAV, optional).

``irdeploy restore clip.mp4 -o restored.mp4`` lands in :func:`restore_video`. PyAV (the
``video`` extra) is imported only when a clip is opened, so image restores and the rest of
irdeploy never need it.
"""

from . import command
from .errors import Interrupted, VideoError
from .pipeline import VideoOptions, VideoReport, is_video_input, restore_video

__all__ = ["command", "Interrupted", "VideoError", "VideoOptions", "VideoReport", "is_video_input", "restore_video"]
