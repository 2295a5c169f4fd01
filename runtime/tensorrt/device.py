"""The CUDA device, through cuda-python's ``cuda.bindings`` (no torch, no pycuda).

pycuda compiles against a CUDA toolkit and driver at install time; ``cuda-bindings`` is a wheel
that loads the driver only when called, so it imports on CPU-only machines and reports the
missing driver as an error code that we turn into one line.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any

from .errors import NoGPUError

NO_GPU = "no NVIDIA GPU / CUDA driver"
# cudaErrorInsufficientDriver (35: no driver loaded, as on CPU-only machines) and cudaErrorNoDevice.
_NO_DEVICE_ERRORS = (35, 100)


@dataclass(frozen=True)
class GPU:
    name: str
    compute_capability: str  # "8.6"
    index: int = 0

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "compute_capability": self.compute_capability}


def cudart() -> ModuleType:
    """``cuda.bindings.runtime``, or :class:`NoGPUError` saying what to install."""
    try:
        from cuda.bindings import runtime
    except ImportError:
        raise NoGPUError(f"{NO_GPU}: cuda-python is not installed (pip install cuda-bindings)") from None
    return runtime


def check(result: Any, what: str) -> Any:
    """Unpack a ``cuda.bindings`` ``(error, value...)`` tuple, raising one line on error."""
    err, *values = result if isinstance(result, tuple) else (result,)
    code = int(err)
    if code:
        rt = cudart()
        name = rt.cudaGetErrorName(err)[1].decode()
        text = rt.cudaGetErrorString(err)[1].decode()
        if code in _NO_DEVICE_ERRORS:
            raise NoGPUError(f"{NO_GPU}: {what} failed with {name} ({text})")
        raise RuntimeError(f"CUDA: {what} failed with {name} ({text})")
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)


def current_gpu(index: int = 0) -> GPU:
    """The GPU that engines will run on; :class:`NoGPUError` on a machine without one."""
    rt = cudart()
    count = check(rt.cudaGetDeviceCount(), "cudaGetDeviceCount")
    if count <= index:
        raise NoGPUError(f"{NO_GPU}: CUDA sees {count} device(s), device {index} requested")
    props = check(rt.cudaGetDeviceProperties(index), "cudaGetDeviceProperties")
    name = props.name.split(b"\0", 1)[0].decode(errors="replace")
    return GPU(name, f"{props.major}.{props.minor}", index)
