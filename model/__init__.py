"""irdeploy.model: training-compatible PyTorch implementations of the supported networks.

Public API: :func:`create`, :func:`available`, :func:`load_checkpoint`, :func:`to_local`.
"""

from .checkpoint import CheckpointError, load_checkpoint, load_model, read_state_dict, save_checkpoint
from .registry import PRESETS, architectures, available, create, final_image, resolve
from .tlc import to_local

__all__ = [
    "PRESETS",
    "CheckpointError",
    "architectures",
    "available",
    "create",
    "final_image",
    "load_checkpoint",
    "load_model",
    "read_state_dict",
    "resolve",
    "save_checkpoint",
    "to_local",
]
