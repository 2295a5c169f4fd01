"""Serving irdeploy artifacts with NVIDIA Triton Inference Server.

- :func:`write_repository` (``irdeploy triton``): a Triton model repository for an ONNX graph or
  TensorRT engine, its ``config.pbtxt`` generated and validated with Triton's own protobuf schema.
- :class:`TritonServer` (``irdeploy serve``): a real Triton server running an irdeploy backend in
  Triton's Python backend (:mod:`.python_model`), with dynamic batching; the ``tritonserver``
  binary comes from the nvidia-pytriton wheel (:mod:`.tritonserver`).

Nothing here imports ``tritonclient`` at import time, and PyTriton's Python API is not used:
both wheels come with the ``serve`` extra and are loaded by the functions that need them.
"""

from .artifact import ArtifactSpec, TensorSpec, inspect_artifact
from .config import ConfigOptions, build_config, validate_config
from .errors import ServingError
from .repository import RepositoryResult, write_repository
from .server import DEFAULT_MODEL, TritonServer

__all__ = [
    "DEFAULT_MODEL",
    "ArtifactSpec",
    "ConfigOptions",
    "RepositoryResult",
    "ServingError",
    "TensorSpec",
    "TritonServer",
    "build_config",
    "inspect_artifact",
    "validate_config",
    "write_repository",
]
