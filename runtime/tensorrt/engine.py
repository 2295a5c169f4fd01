"""Run a serialized engine without torch: cuda-python buffers and streams, named tensors.

Loading refuses an engine before TensorRT sees it when the sidecar says it cannot work here:
no sidecar, a file that is not the one the sidecar describes (corrupt or replaced), another
TensorRT flavour or version, another GPU (or, for TensorRT-RTX, a compute capability the build
did not target), or no GPU at all. Each is one line; TensorRT would otherwise fail with a CUDA
error or, worse, run a stale engine.

Buffers (device input/output, pinned host copies) are allocated per input shape and reused by
later calls with that shape; dynamic shapes go through ``set_input_shape`` and
``execute_async_v3``.

CUDA graphs (``cuda_graph=True``) replay a whole inference as one launch, which removes the
per-kernel launch cost that dominates small images. TensorRT-RTX captures them itself (its
runtime config's whole-graph strategy, which waits until the shape-specialised kernels of a shape
are compiled); for data-centre TensorRT the engine captures one graph per input shape after a
first ordinary run of that shape (TensorRT sets up shape-dependent state outside the capture, as
its documentation requires) and falls back to ordinary launches, saying why, if capture fails.
"""

from __future__ import annotations

import ctypes
import os
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from irdeploy.core.fileio import atomic_write, sha256_file
from irdeploy.core.shapes import format_shape
from irdeploy.core.tensorrt import INSTALL, NAMES, TensorRTUnavailable, import_tensorrt, make_logger

from .device import GPU, NO_GPU, check, cudart, current_gpu
from .errors import EngineLoadError, NoGPUError
from .profiles import Profile
from .sidecar import read_sidecar

# Input shapes whose buffers are kept; a server cycling through more reallocates.
MAX_SHAPES = 4


@dataclass
class _Buffers:
    """Device and pinned host memory for one input shape."""

    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    device_in: int
    device_out: int
    host_in: np.ndarray
    host_out: np.ndarray
    host_ptrs: tuple[int, int]
    # The instantiated CUDA graph of this shape (data-centre TensorRT with cuda_graph=True); None
    # until captured after the shape's first run.
    graph_exec: Any = None


class TensorRTEngine:
    """An engine checked against this machine, ready for ``infer``.

    ``runtime_cache`` (TensorRT-RTX): a file holding the kernels RTX compiles just in time on
    first use; read at load and written at :meth:`close`, so the next process starts warm.
    ``allow_untargeted_gpu`` skips only the compute-capability check, for trying an RTX engine
    on a GPU its build did not target (TensorRT still decides whether it runs).
    ``cuda_graph`` replays :meth:`infer` through CUDA graphs (see the module docstring);
    :meth:`infer_device` takes caller-owned pointers, which a captured graph cannot follow, so it
    always launches ordinarily. ``graph_fallback`` holds the reason when capture failed.
    """

    def __init__(
        self,
        engine_path: str | os.PathLike,
        *,
        device: int = 0,
        runtime_cache: str | os.PathLike | None = None,
        allow_untargeted_gpu: bool = False,
        cuda_graph: bool = False,
    ) -> None:
        self.path = Path(engine_path)
        if not self.path.is_file():
            raise EngineLoadError(f"{self.path}: no such engine file")
        self.sidecar = read_sidecar(self.path)
        self._check_file()
        self.trt = self._matching_tensorrt()
        self.gpu = current_gpu(device)
        self._check_gpu(allow_untargeted_gpu)
        self.profile = Profile.from_dict(self.sidecar["profiles"][0])
        self.pad_multiple = int(self.sidecar.get("pad_multiple", 1))
        self._rt = cudart()
        check(self._rt.cudaSetDevice(device), "cudaSetDevice")
        self._logger = make_logger(self.trt)
        self._runtime = self.trt.Runtime(self._logger)
        self.engine = self._runtime.deserialize_cuda_engine(self.path.read_bytes())
        if self.engine is None:
            error = self._logger.first_error("no reason given")
            if "cudaError 35" in error or "cudaError 100" in error:
                raise NoGPUError(f"{NO_GPU}: TensorRT could not load {self.path.name} ({error[:200]})")
            raise EngineLoadError(f"{self.path}: TensorRT could not load the engine: {error[:400]}")
        self._runtime_cache_path = Path(runtime_cache) if runtime_cache is not None else None
        self._runtime_cache = None
        self.is_rtx = self.sidecar["tensorrt"]["flavour"] == "rtx"
        self.cuda_graph = cuda_graph
        self.graph_fallback: str | None = None
        self.context = self._create_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.input_name = self.profile.input  # the sidecar names the input; the other tensor is the output
        outputs = [n for n in names if n != self.input_name]
        if self.input_name not in names or len(outputs) != 1:
            raise EngineLoadError(f"{self.path}: expected input {self.input_name!r} and one output, found {names}")
        self.output_name = outputs[0]
        self._dtypes = {n: np.dtype(self.trt.nptype(self.engine.get_tensor_dtype(n))) for n in names}
        self.stream = check(self._rt.cudaStreamCreate(), "cudaStreamCreate")
        self._buffers: OrderedDict[tuple[int, ...], _Buffers] = OrderedDict()

    # -- checks before TensorRT sees the file -------------------------------------------------

    def _check_file(self) -> None:
        if sha256_file(self.path) != self.sidecar["engine"]["sha256"]:
            raise EngineLoadError(
                f"{self.path}: the engine file is corrupt or was replaced (its sha256 differs from the sidecar's); rebuild it"
            )

    def _matching_tensorrt(self) -> ModuleType:
        built = self.sidecar["tensorrt"]
        wanted = f"{NAMES[built['flavour']]} {built['version']}"
        try:
            trt = import_tensorrt(built["flavour"])
        except TensorRTUnavailable:
            raise EngineLoadError(
                f"{self.path}: built with {wanted}, which is not installed here ({INSTALL[built['flavour']]})"
            ) from None
        if trt.__version__ != built["version"]:
            raise EngineLoadError(
                f"{self.path}: built with {wanted} but {NAMES[built['flavour']]} {trt.__version__} is installed; rebuild the engine"
            )
        return trt

    def _check_gpu(self, allow_untargeted: bool) -> None:
        target = self.sidecar["target"]
        gpu: GPU = self.gpu
        if "compute_capabilities" not in target:  # data-centre TensorRT: built for one GPU model
            built = target["gpu"]
            if (built["name"], built["compute_capability"]) != (gpu.name, gpu.compute_capability):
                raise EngineLoadError(
                    f"{self.path}: built for {built['name']} (compute capability {built['compute_capability']}), "
                    f"this GPU is {gpu.name} ({gpu.compute_capability}); rebuild the engine here"
                )
        elif gpu.compute_capability not in target["compute_capabilities"] and not allow_untargeted:
            raise EngineLoadError(
                f"{self.path}: built for compute capabilities {', '.join(target['compute_capabilities'])}, "
                f"this GPU is {gpu.name} ({gpu.compute_capability}); rebuild with compute_capabilities=['current']"
            )

    # -- execution -----------------------------------------------------------------------------

    def _create_context(self) -> Any:
        if not self.is_rtx or (self._runtime_cache_path is None and not self.cuda_graph):
            return self.engine.create_execution_context()
        config = self.engine.create_runtime_config()
        if self._runtime_cache_path is not None:
            self._runtime_cache = config.create_runtime_cache()
            if self._runtime_cache_path.is_file():
                self._runtime_cache.deserialize(self._runtime_cache_path.read_bytes())
            config.set_runtime_cache(self._runtime_cache)
        if self.cuda_graph:
            config.cuda_graph_strategy = self.trt.CudaGraphStrategy.WHOLE_GRAPH_CAPTURE
        return self.engine.create_execution_context(config)

    def check_shape(self, shape: Sequence[int]) -> tuple[int, ...]:
        """``shape`` as a tuple, or ``ValueError`` naming the profile it falls outside of."""
        shape = tuple(int(d) for d in shape)
        m = self.pad_multiple
        if not self.profile.contains(shape) or any(d % m for d in shape[2:]):
            raise ValueError(
                f"input shape {format_shape(shape)} is outside the engine's profile "
                f"{self.profile.describe()} (H and W multiples of {m}); pad the batch or rebuild with other --shapes"
            )
        return shape

    def _buffers_for(self, shape: tuple[int, ...]) -> _Buffers:
        if shape in self._buffers:
            self._buffers.move_to_end(shape)
            return self._buffers[shape]
        if not self.context.set_input_shape(self.input_name, shape):
            raise ValueError(f"TensorRT rejected input shape {format_shape(shape)}: {self._logger.first_error('no reason given')}")
        out_shape = tuple(self.context.get_tensor_shape(self.output_name))
        rt = self._rt
        sizes = [int(np.prod(s)) * self._dtypes[n].itemsize
                 for s, n in ((shape, self.input_name), (out_shape, self.output_name))]
        device_in, device_out = (check(rt.cudaMalloc(n), "cudaMalloc") for n in sizes)
        host_ptrs = tuple(check(rt.cudaMallocHost(n), "cudaMallocHost") for n in sizes)
        host_in, host_out = (
            np.frombuffer((ctypes.c_uint8 * n).from_address(p), dtype=self._dtypes[name]).reshape(s)
            for n, p, name, s in zip(sizes, host_ptrs, (self.input_name, self.output_name), (shape, out_shape))
        )
        buffers = _Buffers(shape, out_shape, device_in, device_out, host_in, host_out, host_ptrs)  # type: ignore[arg-type]
        self._buffers[shape] = buffers
        while len(self._buffers) > MAX_SHAPES:
            self._free(self._buffers.popitem(last=False)[1])
        return buffers

    def _enqueue(self, shape: tuple[int, ...], device_in: int, device_out: int, stream: Any) -> None:
        ctx = self.context
        if not ctx.set_input_shape(self.input_name, shape):
            raise ValueError(f"TensorRT rejected input shape {format_shape(shape)}")
        ctx.set_tensor_address(self.input_name, device_in)
        ctx.set_tensor_address(self.output_name, device_out)
        if not ctx.execute_async_v3(int(stream)):
            raise RuntimeError(f"TensorRT execution failed: {self._logger.first_error('no reason given')}")

    def _run_buffers(self, buf: _Buffers) -> None:
        """Enqueue one inference on the shape's own buffers: a graph launch once captured."""
        if buf.graph_exec is not None:
            check(self._rt.cudaGraphLaunch(buf.graph_exec, self.stream), "cudaGraphLaunch")
            return
        self._enqueue(buf.input_shape, buf.device_in, buf.device_out, self.stream)
        if self.cuda_graph and not self.is_rtx and self.graph_fallback is None:
            check(self._rt.cudaStreamSynchronize(self.stream), "cudaStreamSynchronize")
            buf.graph_exec = self._capture(buf)

    def _capture(self, buf: _Buffers) -> Any:
        """Capture ``execute_async_v3`` on the shape's buffers into an instantiated graph, or
        record why it cannot be captured and return None (ordinary launches from then on)."""
        rt, ctx, stream = self._rt, self.context, self.stream
        ctx.set_input_shape(self.input_name, buf.input_shape)
        ctx.set_tensor_address(self.input_name, buf.device_in)
        ctx.set_tensor_address(self.output_name, buf.device_out)
        check(rt.cudaStreamBeginCapture(stream, rt.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal),
              "cudaStreamBeginCapture")
        enqueued = ctx.execute_async_v3(int(stream))
        err, graph = rt.cudaStreamEndCapture(stream)
        if not enqueued or int(err) or graph is None:
            reason = self._logger.first_error("") or (rt.cudaGetErrorName(err)[1].decode() if int(err) else "enqueue failed")
            self.graph_fallback = f"CUDA graph capture failed for {format_shape(buf.input_shape)} ({reason}); running without graphs"
            return None
        try:
            return check(rt.cudaGraphInstantiate(graph, 0), "cudaGraphInstantiate")
        finally:
            check(rt.cudaGraphDestroy(graph), "cudaGraphDestroy")

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """Run an NCHW batch (already padded to the engine's multiple) and return the output."""
        shape = self.check_shape(batch.shape)
        buf = self._buffers_for(shape)
        rt, stream = self._rt, self.stream
        np.copyto(buf.host_in, batch, casting="same_kind")
        check(rt.cudaMemcpyAsync(buf.device_in, buf.host_ptrs[0], buf.host_in.nbytes,
                                 rt.cudaMemcpyKind.cudaMemcpyHostToDevice, stream), "cudaMemcpyAsync")
        self._run_buffers(buf)
        check(rt.cudaMemcpyAsync(buf.host_ptrs[1], buf.device_out, buf.host_out.nbytes,
                                 rt.cudaMemcpyKind.cudaMemcpyDeviceToHost, stream), "cudaMemcpyAsync")
        check(rt.cudaStreamSynchronize(stream), "cudaStreamSynchronize")
        return buf.host_out.copy()

    def infer_device(self, input_ptr: int, shape: Sequence[int], stream: Any = None) -> tuple[int, tuple[int, ...]]:
        """Run on device memory: returns the output's device pointer (owned by the engine, valid
        until the next call with this shape) and its shape. Enqueued on ``stream`` (default: the
        engine's); the caller synchronizes."""
        shape = self.check_shape(shape)
        buf = self._buffers_for(shape)
        self._enqueue(shape, int(input_ptr), buf.device_out, self.stream if stream is None else stream)
        return buf.device_out, buf.output_shape

    # -- teardown ------------------------------------------------------------------------------

    def _free(self, buf: _Buffers) -> None:
        rt = self._rt
        if buf.graph_exec is not None:
            check(rt.cudaGraphExecDestroy(buf.graph_exec), "cudaGraphExecDestroy")
        for ptr in (buf.device_in, buf.device_out):
            check(rt.cudaFree(ptr), "cudaFree")
        for ptr in buf.host_ptrs:
            check(rt.cudaFreeHost(ptr), "cudaFreeHost")

    def close(self) -> None:
        """Free buffers and the stream; write the RTX runtime cache, if one was given."""
        if self.stream is None:
            return
        check(self._rt.cudaStreamSynchronize(self.stream), "cudaStreamSynchronize")
        if self._runtime_cache is not None and self._runtime_cache_path is not None:
            atomic_write(self._runtime_cache_path, bytes(self._runtime_cache.serialize()))
        while self._buffers:
            self._free(self._buffers.popitem()[1])
        check(self._rt.cudaStreamDestroy(self.stream), "cudaStreamDestroy")
        self.stream = None

    def __enter__(self) -> TensorRTEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
