"""The CUDA device, through cuda-python's ``cuda.bindings`` (no torch, no pycuda).

pycuda compiles against a CUDA toolkit and driver at install time; ``cuda-bindings`` is a wheel
that loads the driver only when called, so it imports on CPU-only machines and reports the
missing driver as an error code that we turn into one line.

``cudaErrorInsufficientDriver`` means two different things: no driver at all (CPU-only machines;
``cudaDriverGetVersion`` reports 0) or a driver older than the CUDA runtime of the installed
cuda-bindings (cuda-bindings 13 needs a CUDA 13 driver, release 580 or newer). They are told
apart, with the versions the driver and runtime report, because the fixes differ.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any

from .errors import CudaUnusableError, DriverTooOldError, GPUError, NoGPUError

NO_GPU = "no NVIDIA GPU / CUDA driver"
_INSUFFICIENT_DRIVER, _CALL_REQUIRES_NEWER_DRIVER, _NO_DEVICE = 35, 36, 100
# The oldest Linux driver release of each CUDA major version (NVIDIA's CUDA release notes).
MIN_DRIVER = {12: "525", 13: "580"}


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


def cuda_version(version: int) -> str:
    """CUDA's integer version (``13000``, ``12040``) as ``"13.0"``, ``"12.4"``."""
    return f"{version // 1000}.{version % 1000 // 10}"


def _versions(rt: Any) -> tuple[int, int]:
    """(driver, runtime) CUDA versions; the driver's is 0 when no driver is loaded."""
    driver = rt.cudaDriverGetVersion()
    runtime = rt.cudaRuntimeGetVersion()
    return (int(driver[1]) if not int(driver[0]) else 0), (int(runtime[1]) if not int(runtime[0]) else 0)


def diagnose(rt: Any, err: Any, what: str) -> NoGPUError:
    """The one-line error for a failed CUDA call: no GPU, a driver too old, or CUDA not usable."""
    code = int(err)
    name = rt.cudaGetErrorName(err)[1].decode()
    driver, runtime = _versions(rt)
    if code == _NO_DEVICE or (code == _INSUFFICIENT_DRIVER and driver == 0):
        why = "no NVIDIA driver is loaded" if code == _INSUFFICIENT_DRIVER else "the driver sees no device"
        return NoGPUError(f"{NO_GPU}: {what} failed with {name} ({why})")
    if code in (_INSUFFICIENT_DRIVER, _CALL_REQUIRES_NEWER_DRIVER) and driver < runtime:
        major = runtime // 1000
        older = f"; or install cuda-bindings {major - 1}.x (pip install 'cuda-bindings<{major}')" if major > 12 else ""
        return DriverTooOldError(
            f"NVIDIA driver too old for this CUDA runtime: the driver supports CUDA {cuda_version(driver)}, "
            f"cuda-bindings needs CUDA {cuda_version(runtime)} (driver >= {MIN_DRIVER.get(major, '?')} for CUDA {major}; "
            f"{what} failed with {name}); update the driver{older}"
        )
    text = rt.cudaGetErrorString(err)[1].decode()
    return CudaUnusableError(f"CUDA not usable: {what} failed with {name} ({text}); driver CUDA "
                             f"{cuda_version(driver)}, runtime CUDA {cuda_version(runtime)}")


def check(result: Any, what: str) -> Any:
    """Unpack a ``cuda.bindings`` ``(error, value...)`` tuple, raising one line on error."""
    err, *values = result if isinstance(result, tuple) else (result,)
    code = int(err)
    if code:
        rt = cudart()
        if code in (_INSUFFICIENT_DRIVER, _CALL_REQUIRES_NEWER_DRIVER, _NO_DEVICE):
            raise diagnose(rt, err, what)
        name = rt.cudaGetErrorName(err)[1].decode()
        text = rt.cudaGetErrorString(err)[1].decode()
        raise GPUError(f"CUDA: {what} failed with {name} ({text})")
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)


def current_gpu(index: int = 0) -> GPU:
    """GPU ``index``, the one engines build for and run on; :class:`NoGPUError` (or its
    :class:`DriverTooOldError` / :class:`CudaUnusableError`) when there is none to use."""
    rt = cudart()
    err, count = rt.cudaGetDeviceCount()
    if int(err):
        raise diagnose(rt, err, "cudaGetDeviceCount")
    if count <= index:
        raise NoGPUError(f"{NO_GPU}: CUDA sees {count} device(s), device {index} requested")
    props = check(rt.cudaGetDeviceProperties(index), "cudaGetDeviceProperties")
    name = props.name.split(b"\0", 1)[0].decode(errors="replace")
    return GPU(name, f"{props.major}.{props.minor}", index)


def select_gpu(index: int = 0) -> GPU:
    """GPU ``index``, made CUDA's current device (what a TensorRT builder targets)."""
    gpu = current_gpu(index)
    check(cudart().cudaSetDevice(index), "cudaSetDevice")
    return gpu


def rtx_capabilities(trt: ModuleType) -> list[str]:
    """Every compute capability (``"8.6"``) this TensorRT-RTX's ``ComputeCapability`` names, ascending."""
    caps = [name[2:] for name in trt.ComputeCapability.__members__ if name.startswith("SM")]
    return [f"{a}.{b}" for a, b in sorted((int(c[:-1]), int(c[-1])) for c in caps)]
