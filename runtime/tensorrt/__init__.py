"""TensorRT engines: strongly-typed builds with a sidecar and a cache, and a torch-free runner.

- :func:`build_engine` (``irdeploy build``): ONNX -> engine + ``.json`` sidecar, through data-centre
  TensorRT or TensorRT-RTX. TensorRT-RTX builds ahead of time without a GPU, so a CPU-only build
  server can make engines for RTX machines (``compute_capabilities`` picks the targets).
- :class:`TensorRTEngine`: checks the sidecar against this machine, then runs the engine with
  cuda-python buffers and streams.

The flavour choice is :mod:`irdeploy.core.tensorrt`; the ONNX parse is shared with the export's
check (:mod:`irdeploy.export.tensorrt_check`).
"""

from .build import ATTENTION_MODES, BuildResult, build_engine
from .engine import TensorRTEngine
from .errors import EngineBuildError, EngineLoadError, GPUError, NoGPUError
from .profiles import Profile, parse_shapes
from .sidecar import read_sidecar, sidecar_path

__all__ = [
    "ATTENTION_MODES",
    "BuildResult",
    "EngineBuildError",
    "EngineLoadError",
    "GPUError",
    "NoGPUError",
    "Profile",
    "TensorRTEngine",
    "build_engine",
    "parse_shapes",
    "read_sidecar",
    "sidecar_path",
]
