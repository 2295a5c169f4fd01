"""irdeploy.model: training-compatible PyTorch implementations of the supported networks.

Public API: :func:`create`, :func:`available`, :func:`load_checkpoint`, :func:`to_local`.
"""

from typing import Any

from .checkpoint import CheckpointError, load_checkpoint, load_model, read_state_dict, save_checkpoint
from .registry import architectures, available, create, final_image, presets, register, resolve, specs
from .spec import ModelSpec, Preset, record_of
from .tlc import to_local

__all__ = [
    "PRESETS",
    "CheckpointError",
    "ModelSpec",
    "Preset",
    "architectures",
    "available",
    "create",
    "final_image",
    "load_checkpoint",
    "load_model",
    "presets",
    "record_of",
    "register",
    "read_state_dict",
    "resolve",
    "specs",
    "save_checkpoint",
    "to_local",
]


def __getattr__(name: str) -> Any:
    # PRESETS (name -> preset) is read from the registry when asked for, so it includes
    # architectures registered at run time.
    if name == "PRESETS":
        return presets()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
