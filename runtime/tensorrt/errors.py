"""The one-line errors of engine building and loading.

Each is a ``ValueError`` (a ``RuntimeError`` for the missing GPU) so the CLI's existing handler
turns it into one line on stderr; messages never carry TensorRT's multi-line logs.
"""

from __future__ import annotations


class EngineBuildError(ValueError):
    """The engine could not be built: bad profile, rejected graph, build failure, unwritable output."""


class EngineLoadError(ValueError):
    """The engine must not be run here: missing/stale sidecar, corrupt file, wrong GPU or TensorRT."""


class GPUError(RuntimeError):
    """A CUDA or TensorRT call failed while running (an error code, a rejected address, a failed
    enqueue): one line with the call and the reason, for the CLI to print instead of a traceback."""


class NoGPUError(RuntimeError):
    """Running (or building for the current GPU) needs an NVIDIA GPU and its driver."""


class DriverTooOldError(NoGPUError):
    """A GPU and driver exist, but the driver is older than the installed CUDA runtime needs."""


class CudaUnusableError(NoGPUError):
    """A driver answered, but CUDA cannot be used (another error than a missing device or old driver)."""
