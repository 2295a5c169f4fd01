"""A CPU stand-in for ``cuda.bindings.runtime`` and a TensorRT engine that enforces the documented rules.

No GPU is needed to check that the engine runner calls CUDA and TensorRT the way their
documentation requires; a recorder of calls would not notice a wrong order, so every rule below is
checked, and breaking one raises :class:`RuleBroken` (or returns the error code CUDA would).
:func:`simulate` puts the stand-ins where :mod:`irdeploy.runtime.tensorrt.engine` and
:mod:`~irdeploy.runtime.tensorrt.device` look for CUDA and TensorRT; the tests and
``benchmarks/gpu_check.py --dry-run`` use it.

CUDA (:class:`SimulatedCuda`; every function has the parameter names of cuda-bindings 13's):

- device memory exists between ``cudaMalloc`` and ``cudaFree``; a copy from or to freed memory, or
  past an allocation's end, fails with ``cudaErrorInvalidValue``;
- device and pinned memory, streams, events and graph executables are held until freed or
  destroyed; freeing one twice (or one never made) is the error CUDA returns, using a destroyed
  event or graph is ``cudaErrorInvalidResourceHandle``, and :meth:`SimulatedCuda.leaks` lists
  what is still held (after a ``close`` that should release everything, a leak);
- work on a stream runs in stream order at ``cudaStreamSynchronize``/``cudaEventSynchronize``
  (host memory read before that still holds the old bytes);
- a capturing stream records its work into the graph instead of running it; synchronizing it is
  ``cudaErrorStreamCaptureUnsupported`` and invalidates the capture; a stream left capturing
  refuses further ordinary work;
- timing events claim a compute-only figure: between a start and an end record on a stream, host
  side setup of a TensorRT context (shapes, addresses) is refused.

TensorRT (:func:`tensorrt_module`, :func:`write_engine`): the engine computes
``0.5 * x + 0.25`` per element in its I/O type, so outputs are checkable;

- ``execute_async_v3`` needs every input shape and I/O address set;
- a CUDA graph may only be captured right after an ordinary enqueue of the context's current
  shape, and replayed only while the context still has the shape and addresses it was captured
  with (TensorRT: enqueue once after any input-shape change, before capture);
- TensorRT-RTX's default dynamic-shape kernel specialization is LAZY: the first runs of a shape
  use a fallback kernel whose output differs in the last bit; EAGER specialises before the first
  run;
- a runtime cache blob that is not one of its own is rejected (``deserialize`` returns False).
"""

from __future__ import annotations

import contextlib
import ctypes
import enum
import inspect
import json
import types
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

ENGINE_MAGIC = b"irdeploy-simulated-engine\n"
CACHE_MAGIC = b"irdeploy-simulated-runtime-cache\n"
ALIGNMENT = 256
LAZY_FALLBACK_RUNS = 2  # runs of a shape served by the fallback kernel under LAZY specialization


class RuleBroken(AssertionError):
    """The code under test broke a CUDA or TensorRT rule the simulator encodes."""


def _errors() -> Any:
    try:
        from cuda.bindings import runtime

        return runtime.cudaError_t
    except ImportError:  # the simulator also runs where cuda-bindings is absent
        return enum.IntEnum("cudaError_t", {"cudaSuccess": 0, "cudaErrorInvalidValue": 1, "cudaErrorMemoryAllocation": 2,
                                            "cudaErrorInsufficientDriver": 35, "cudaErrorNoDevice": 100,
                                            "cudaErrorInvalidDevice": 101, "cudaErrorNotReady": 600,
                                            "cudaErrorIllegalState": 401, "cudaErrorInvalidResourceHandle": 400,
                                            "cudaErrorStreamCaptureUnsupported": 900,
                                            "cudaErrorStreamCaptureInvalidated": 901, "cudaErrorUnknown": 999})


class _Stream:
    def __init__(self, handle: int) -> None:
        self.handle = handle
        self.pending: list[Callable[[], None]] = []
        self.capture: list[Callable[[], None]] | None = None
        self.capture_invalidated = False
        self.open_event: Any = None  # a timing event recorded as a start, its end not yet recorded

    def __int__(self) -> int:
        return self.handle


class _Event:
    def __init__(self) -> None:
        self.time_ms: float | None = None


class _GraphExec:
    """An instantiated graph: the captured work, replayed in order by each launch."""

    def __init__(self, ops: list[Callable[[], None]]) -> None:
        self.ops = ops


@dataclass
class _Props:
    name: bytes
    major: int
    minor: int


class SimulatedCuda:
    """``cuda.bindings.runtime`` with the rules in the module docstring; one process-wide device list."""

    def __init__(self, gpus: tuple[tuple[str, str], ...] = (("Simulated RTX 4090", "8.9"),), *,
                 driver_version: int = 13000, runtime_version: int = 13000,
                 device_count_error: int = 0, kernel_ms: float = 1.0) -> None:
        self.cudaError_t = _errors()
        try:
            from cuda.bindings import runtime

            self.cudaMemcpyKind, self.cudaStreamCaptureMode = runtime.cudaMemcpyKind, runtime.cudaStreamCaptureMode
        except ImportError:
            self.cudaMemcpyKind = types.SimpleNamespace(cudaMemcpyHostToDevice=1, cudaMemcpyDeviceToHost=2,
                                                        cudaMemcpyDeviceToDevice=3)
            self.cudaStreamCaptureMode = types.SimpleNamespace(cudaStreamCaptureModeGlobal=0,
                                                               cudaStreamCaptureModeThreadLocal=1)
        self.gpus = gpus
        self.driver_version, self.runtime_version = driver_version, runtime_version
        self.device_count_error = device_count_error
        self.kernel_ms = kernel_ms
        self.device: int | None = None
        self.memory: dict[int, bytearray] = {}
        self.freed: set[int] = set()
        self.host: dict[int, Any] = {}
        self.streams: dict[int, _Stream] = {}
        self.events: dict[int, _Event] = {}  # by id(): live until cudaEventDestroy
        self.graph_execs: dict[int, _GraphExec] = {}  # by id(): live until cudaGraphExecDestroy
        self.clock_ms = 0.0
        self._next = 0x7F00_0000_0000

    # -- helpers -----------------------------------------------------------------------------

    def _ok(self, *values: Any) -> tuple:
        return (self.cudaError_t.cudaSuccess, *values)

    def _err(self, name: str) -> tuple:
        return (getattr(self.cudaError_t, name), None)

    def _stream(self, stream: Any) -> _Stream:
        handle = int(stream)
        if handle not in self.streams:
            raise RuleBroken(f"stream {handle:#x} was never created (or was destroyed)")
        return self.streams[handle]

    def device_view(self, ptr: int, nbytes: int) -> memoryview | None:
        """The bytes of device allocation memory at ``ptr`` (or None when it is not allocated)."""
        ptr = int(ptr)
        for base, buf in self.memory.items():
            if base <= ptr and ptr + nbytes <= base + len(buf):
                return memoryview(buf)[ptr - base:ptr - base + nbytes]
        return None

    def leaks(self) -> list[str]:
        """What is still allocated or created: empty once everything made has been released."""
        held = [(len(self.memory), f"device allocation(s) ({sum(len(b) for b in self.memory.values())} bytes)"),
                (len(self.host), "pinned host allocation(s)"), (len(self.streams), "stream(s)"),
                (len(self.events), "event(s)"), (len(self.graph_execs), "graph executable(s)")]
        return [f"{n} {what}" for n, what in held if n]

    def is_capturing(self) -> bool:
        return any(s.capture is not None for s in self.streams.values())

    def open_timing(self) -> bool:
        return any(s.open_event is not None for s in self.streams.values())

    def enqueue(self, stream: Any, op: Callable[[], None]) -> int:
        s = self._stream(stream)
        if s.capture_invalidated:
            return int(self.cudaError_t.cudaErrorStreamCaptureInvalidated)
        (s.capture if s.capture is not None else s.pending).append(op)
        return 0

    def _drain(self, s: _Stream) -> None:
        ops, s.pending = s.pending, []
        for op in ops:
            op()

    def _copy(self, dst: int, src: int, count: int, kind: Any) -> bool:
        k = self.cudaMemcpyKind
        if kind == k.cudaMemcpyHostToDevice:
            view = self.device_view(dst, count)
            if view is None:
                return False
            view[:] = ctypes.string_at(int(src), count)
        elif kind == k.cudaMemcpyDeviceToHost:
            view = self.device_view(src, count)
            if view is None:
                return False
            ctypes.memmove(int(dst), bytes(view), count)
        else:
            a, b = self.device_view(dst, count), self.device_view(src, count)
            if a is None or b is None:
                return False
            a[:] = bytes(b)
        return True

    # -- device --------------------------------------------------------------------------------

    def cudaGetDeviceCount(self):
        if self.device_count_error:
            return (self.cudaError_t(self.device_count_error), 0)
        return self._ok(len(self.gpus))

    def cudaGetDeviceProperties(self, device):
        if not 0 <= device < len(self.gpus):
            return self._err("cudaErrorInvalidDevice")
        name, cc = self.gpus[device]
        major, minor = cc.split(".")
        return self._ok(_Props(name.encode() + b"\0" * 8, int(major), int(minor)))

    def cudaSetDevice(self, device):
        if not 0 <= device < len(self.gpus):
            return (self.cudaError_t.cudaErrorInvalidDevice,)
        self.device = device
        return (self.cudaError_t.cudaSuccess,)

    def cudaDriverGetVersion(self):
        return self._ok(self.driver_version)

    def cudaRuntimeGetVersion(self):
        return self._ok(self.runtime_version)

    def cudaGetErrorName(self, error):
        return self._ok(self.cudaError_t(int(error)).name.encode())

    def cudaGetErrorString(self, error):
        return self._ok(f"simulated {self.cudaError_t(int(error)).name}".encode())

    def cudaMemGetInfo(self):
        used = sum(len(b) for b in self.memory.values())
        return self._ok(16 * 2**30 - used, 16 * 2**30)

    # -- memory --------------------------------------------------------------------------------

    def cudaMalloc(self, size):
        ptr = self._next
        self._next += -(-max(int(size), 1) // ALIGNMENT) * ALIGNMENT + ALIGNMENT
        self.memory[ptr] = bytearray(int(size))
        return self._ok(ptr)

    def cudaFree(self, devPtr):
        if int(devPtr) not in self.memory:
            return (self.cudaError_t.cudaErrorInvalidValue,)
        del self.memory[int(devPtr)]
        self.freed.add(int(devPtr))
        return (self.cudaError_t.cudaSuccess,)

    def cudaMallocHost(self, size):
        buf = (ctypes.c_uint8 * max(int(size), 1))()
        self.host[ctypes.addressof(buf)] = buf
        return self._ok(ctypes.addressof(buf))

    def cudaFreeHost(self, ptr):
        if self.host.pop(int(ptr), None) is None:
            return (self.cudaError_t.cudaErrorInvalidValue,)
        return (self.cudaError_t.cudaSuccess,)

    def cudaMemcpy(self, dst, src, count, kind):
        if self.is_capturing():
            return (self.cudaError_t.cudaErrorStreamCaptureUnsupported,)
        for s in self.streams.values():  # the legacy default stream waits for every stream
            self._drain(s)
        ok = self._copy(int(dst), int(src), int(count), kind)
        return (self.cudaError_t.cudaSuccess if ok else self.cudaError_t.cudaErrorInvalidValue,)

    def cudaMemcpyAsync(self, dst, src, count, kind, stream):
        failed: list[str] = []

        def op() -> None:
            if not self._copy(int(dst), int(src), int(count), kind):
                failed.append("copy")
                raise RuleBroken(f"cudaMemcpyAsync touched memory that is not allocated ({int(src):#x} -> {int(dst):#x})")

        host_side = int(src) if kind == self.cudaMemcpyKind.cudaMemcpyHostToDevice else int(dst)
        device_side = int(dst) if kind == self.cudaMemcpyKind.cudaMemcpyHostToDevice else int(src)
        if self.device_view(device_side, int(count)) is None or (kind != self.cudaMemcpyKind.cudaMemcpyDeviceToDevice
                                                                 and not host_side):
            return (self.cudaError_t.cudaErrorInvalidValue,)
        code = self.enqueue(stream, op)
        return (self.cudaError_t(code),)

    # -- streams, events, graphs ------------------------------------------------------------------

    def cudaStreamCreate(self):
        s = _Stream(0x5000 + len(self.streams) + 1)
        self.streams[s.handle] = s
        return self._ok(s)

    def cudaStreamDestroy(self, stream):
        s = self._stream(stream)
        if s.capture is not None:
            return (self.cudaError_t.cudaErrorStreamCaptureUnsupported,)
        self._drain(s)
        del self.streams[s.handle]
        return (self.cudaError_t.cudaSuccess,)

    def cudaStreamSynchronize(self, stream):
        s = self._stream(stream)
        if s.capture is not None:
            s.capture_invalidated = True
            return (self.cudaError_t.cudaErrorStreamCaptureUnsupported,)
        if s.capture_invalidated:
            return (self.cudaError_t.cudaErrorStreamCaptureInvalidated,)
        self._drain(s)
        return (self.cudaError_t.cudaSuccess,)

    def cudaStreamBeginCapture(self, stream, mode):
        s = self._stream(stream)
        if s.capture is not None or s.capture_invalidated:
            return (self.cudaError_t.cudaErrorIllegalState,)
        if s.pending:
            self._drain(s)  # work enqueued before the capture is not part of it
        s.capture = []
        return (self.cudaError_t.cudaSuccess,)

    def cudaStreamEndCapture(self, stream):
        s = self._stream(stream)
        if s.capture is None:
            return self._err("cudaErrorIllegalState")
        ops, s.capture = s.capture, None
        if s.capture_invalidated:
            s.capture_invalidated = False
            return self._err("cudaErrorStreamCaptureInvalidated")
        return self._ok(list(ops))

    def cudaStreamIsCapturing(self, stream):
        return self._ok(int(self._stream(stream).capture is not None))

    def cudaGraphInstantiate(self, graph, flags):
        if graph is None:
            return self._err("cudaErrorInvalidValue")
        graph_exec = _GraphExec(list(graph))
        self.graph_execs[id(graph_exec)] = graph_exec
        return self._ok(graph_exec)

    def cudaGraphLaunch(self, graphExec, stream):
        if id(graphExec) not in self.graph_execs:
            return (self.cudaError_t.cudaErrorInvalidResourceHandle,)
        ops = graphExec.ops

        def replay() -> None:
            for op in ops:
                op()

        return (self.cudaError_t(self.enqueue(stream, replay)),)

    def cudaGraphDestroy(self, graph):
        return (self.cudaError_t.cudaSuccess,)

    def cudaGraphExecDestroy(self, graphExec):
        if self.graph_execs.pop(id(graphExec), None) is None:
            return (self.cudaError_t.cudaErrorInvalidResourceHandle,)
        return (self.cudaError_t.cudaSuccess,)

    def cudaEventCreate(self):
        event = _Event()
        self.events[id(event)] = event
        return self._ok(event)

    def cudaEventDestroy(self, event):
        if self.events.pop(id(event), None) is None:
            return (self.cudaError_t.cudaErrorInvalidResourceHandle,)
        return (self.cudaError_t.cudaSuccess,)

    def cudaEventRecord(self, event, stream):
        if id(event) not in self.events:
            return (self.cudaError_t.cudaErrorInvalidResourceHandle,)
        s = self._stream(stream)
        s.open_event = event if s.open_event is None else None

        def mark() -> None:
            event.time_ms = self.clock_ms

        return (self.cudaError_t(self.enqueue(stream, mark)),)

    def cudaEventSynchronize(self, event):
        if id(event) not in self.events:
            return (self.cudaError_t.cudaErrorInvalidResourceHandle,)
        for s in self.streams.values():
            if s.capture is None:
                self._drain(s)
        return (self.cudaError_t.cudaSuccess,)

    def cudaEventElapsedTime(self, start, end):
        if id(start) not in self.events or id(end) not in self.events:
            return self._err("cudaErrorInvalidResourceHandle")
        if start.time_ms is None or end.time_ms is None:
            return self._err("cudaErrorNotReady")
        return self._ok(end.time_ms - start.time_ms)


def signature_mismatches(real: Any, fake: SimulatedCuda) -> list[str]:
    """Functions whose parameters differ between ``real`` (cuda.bindings.runtime) and the simulator."""
    out = []
    for name, member in inspect.getmembers(type(fake), inspect.isfunction):
        if not name.startswith("cuda"):
            continue
        ours = [p for p in inspect.signature(member).parameters if p != "self"]
        theirs = list(inspect.signature(getattr(real, name)).parameters)
        if ours != theirs:
            out.append(f"{name}{tuple(ours)} != {tuple(theirs)}")
    return out


# -- TensorRT ------------------------------------------------------------------------------------


def tensorrt_module(flavour: str = "tensorrt", version: str = "10.13.3.9", cuda: SimulatedCuda | None = None,
                    **engine_options: Any) -> types.ModuleType:
    """A TensorRT module (``tensorrt`` or ``tensorrt_rtx`` by name) whose Runtime loads simulated engines.

    ``engine_options`` go to every :class:`_Engine` it loads (e.g. ``context_fails=True``)."""
    trt = types.ModuleType("tensorrt_rtx" if flavour == "rtx" else "tensorrt")
    trt.__version__ = version
    trt.DataType = enum.Enum("DataType", "FLOAT HALF BF16 INT8 INT32 INT64 BOOL UINT8 FP8 INT4 FP4")
    trt.TensorIOMode = enum.Enum("TensorIOMode", "NONE INPUT OUTPUT")
    trt.CudaGraphStrategy = enum.Enum("CudaGraphStrategy", "DISABLED WHOLE_GRAPH_CAPTURE")
    trt.DynamicShapesKernelSpecializationStrategy = enum.Enum("DynamicShapesKernelSpecializationStrategy", "LAZY EAGER NONE")
    # TensorRT-RTX 1.7.1's targets (no SM90: Hopper is not one)
    trt.ComputeCapability = enum.Enum("ComputeCapability", "NONE CURRENT SM75 SM80 SM86 SM89 SM120 SM121")
    if flavour != "rtx":  # data-centre TensorRT has none of these
        del trt.CudaGraphStrategy, trt.DynamicShapesKernelSpecializationStrategy, trt.ComputeCapability

    class ILogger:
        Severity = enum.Enum("Severity", "INTERNAL_ERROR ERROR WARNING INFO VERBOSE")

        def __init__(self) -> None:
            pass

    types_ = {trt.DataType.FLOAT: np.float32, trt.DataType.HALF: np.float16, trt.DataType.INT8: np.int8,
              trt.DataType.INT32: np.int32, trt.DataType.INT64: np.int64, trt.DataType.BOOL: np.bool_,
              trt.DataType.UINT8: np.uint8}

    def nptype(trt_type: Any) -> Any:  # TensorRT's own helper: no numpy type for BF16 or FP8
        if trt_type in types_:
            return types_[trt_type]
        raise TypeError("Could not resolve TensorRT datatype to an equivalent numpy datatype.")

    class Runtime:
        def __init__(self, logger: Any) -> None:
            self.logger = logger

        def deserialize_cuda_engine(self, data: bytes) -> Any:
            if not data.startswith(ENGINE_MAGIC):
                self.logger.log(ILogger.Severity.ERROR, "simulated: not a simulated engine")
                return None
            return _Engine(trt, json.loads(data[len(ENGINE_MAGIC):]), self.logger, cuda or _CURRENT["cuda"],
                           **engine_options)

    trt.ILogger, trt.nptype, trt.Runtime = ILogger, nptype, Runtime
    return trt


def write_engine(path: str | Path, *, flavour: str = "tensorrt", version: str | None = None,
                 profile: tuple = ((1, 3, 16, 16), (1, 3, 32, 32), (2, 3, 64, 64)), dtype: str = "FLOAT",
                 output_dtype: str | None = None, data_dependent_output: bool = False,
                 gpu: tuple[str, str] = ("Simulated RTX 4090", "8.9"), sidecar: dict | None = None) -> Path:
    """A simulated engine and its sidecar, as :func:`~irdeploy.runtime.tensorrt.build_engine` writes them."""
    from .sidecar import cache_key, write_engine as write_pair

    path = Path(path)
    version = version or _SIDECAR_VERSION[flavour]
    spec = {"input": "input", "output": "output", "dtype": dtype, "output_dtype": output_dtype or dtype,
            "data_dependent_output": data_dependent_output, "profile": [list(s) for s in profile]}
    lo, opt, hi = profile
    target = ({"compute_capabilities": [gpu[1]], "default": False} if flavour == "rtx"
              else {"gpu": {"name": gpu[0], "compute_capability": gpu[1]}})
    fields = {"tensorrt": {"flavour": flavour, "name": "TensorRT-RTX" if flavour == "rtx" else "TensorRT", "version": version},
              "target": target, "precision": "fp32",
              "profiles": [{"input": "input", "min": list(lo), "opt": list(opt), "max": list(hi)}],
              "onnx": {"sha256": "0" * 64, "graph_precision": "fp32"}, "options": {}, "irdeploy_version": "simulated",
              "pad_multiple": 8, "pad_mode": "constant", **(sidecar or {})}
    fields["key"] = cache_key(fields)
    write_pair(path, ENGINE_MAGIC + json.dumps(spec).encode(), fields)
    return path


class _RuntimeCache:
    def __init__(self) -> None:
        self.shapes: set[tuple[int, ...]] = set()

    def deserialize(self, blob: bytes) -> bool:
        if not bytes(blob).startswith(CACHE_MAGIC):
            return False  # TensorRT-RTX: an incompatible or corrupt blob is rejected, the cache unchanged
        self.shapes |= {tuple(s) for s in json.loads(bytes(blob)[len(CACHE_MAGIC):])}
        return True

    def serialize(self) -> bytes:
        return CACHE_MAGIC + json.dumps(sorted(self.shapes)).encode()


class _RuntimeConfig:
    def __init__(self, trt: types.ModuleType) -> None:
        self.cache: _RuntimeCache | None = None
        if hasattr(trt, "DynamicShapesKernelSpecializationStrategy"):
            self.cuda_graph_strategy = trt.CudaGraphStrategy.DISABLED
            self.dynamic_shapes_kernel_specialization_strategy = trt.DynamicShapesKernelSpecializationStrategy.LAZY

    def create_runtime_cache(self) -> _RuntimeCache:
        return _RuntimeCache()

    def set_runtime_cache(self, cache: _RuntimeCache) -> bool:
        self.cache = cache
        return True


class _Engine:
    def __init__(self, trt: types.ModuleType, spec: dict, logger: Any, cuda: SimulatedCuda, *,
                 context_fails: bool = False, reject_addresses: bool = False,
                 raise_in_capture: bool = False) -> None:
        self.trt, self.spec, self.logger, self.cuda = trt, spec, logger, cuda
        self.context_fails, self.reject_addresses, self.raise_in_capture = context_fails, reject_addresses, raise_in_capture
        self.names = [spec["input"], spec["output"]]
        self.num_io_tensors = 2
        self.contexts: list[_Context] = []

    def get_tensor_name(self, index: int) -> str:
        return self.names[index]

    def get_tensor_dtype(self, name: str) -> Any:
        return self.trt.DataType[self.spec["dtype"] if name == self.spec["input"] else self.spec["output_dtype"]]

    def get_tensor_mode(self, name: str) -> Any:
        return self.trt.TensorIOMode.INPUT if name == self.spec["input"] else self.trt.TensorIOMode.OUTPUT

    def create_runtime_config(self) -> _RuntimeConfig:
        return _RuntimeConfig(self.trt)

    def create_execution_context(self, config: _RuntimeConfig | None = None) -> Any:
        if self.context_fails:  # TensorRT returns None (and logs) when it cannot allocate the context
            self.logger.log(self.trt.ILogger.Severity.ERROR, "simulated: out of device memory for the execution context")
            return None
        context = _Context(self, config or _RuntimeConfig(self.trt))
        self.contexts.append(context)
        return context


class _Context:
    def __init__(self, engine: _Engine, config: _RuntimeConfig) -> None:
        self.engine, self.config = engine, config
        self.shape: tuple[int, ...] | None = None
        self.addresses: dict[str, int] = {}
        self.enqueued: tuple[tuple[int, ...] | None, tuple] | None = None  # shape, addresses of the last ordinary run
        self.runs: dict[tuple[int, ...], int] = {}

    def _host_setup(self, what: str) -> None:
        if self.engine.cuda.open_timing():
            raise RuleBroken(f"{what} between a start and an end CUDA event: host work inside a compute-only figure")

    def set_input_shape(self, name: str, shape: Any) -> bool:
        self._host_setup("set_input_shape")
        shape = tuple(int(d) for d in shape)
        lo, _, hi = self.engine.spec["profile"]
        if name != self.engine.spec["input"] or len(shape) != len(lo) or any(not a <= d <= b for a, d, b in zip(lo, shape, hi)):
            self.engine.logger.log(self.engine.trt.ILogger.Severity.ERROR, f"simulated: shape {shape} outside the profile")
            return False
        self.shape = shape
        return True

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        if self.shape is None:
            return (-1, -1, -1, -1)
        if name == self.engine.spec["output"] and self.engine.spec["data_dependent_output"]:
            return (self.shape[0], -1, *self.shape[2:])
        return self.shape

    def set_tensor_address(self, name: str, ptr: int) -> bool:
        self._host_setup("set_tensor_address")
        if self.engine.reject_addresses or name not in self.engine.names or int(ptr) % ALIGNMENT:
            self.engine.logger.log(self.engine.trt.ILogger.Severity.ERROR, f"simulated: bad address for {name}")
            return False
        self.addresses[name] = int(ptr)
        return True

    def _dtype(self, name: str) -> np.dtype:
        import ml_dtypes

        kind = self.engine.get_tensor_dtype(name).name
        extra = {"BF16": ml_dtypes.bfloat16, "FP8": ml_dtypes.float8_e4m3fn}
        return np.dtype(extra[kind]) if kind in extra else np.dtype(self.engine.trt.nptype(self.engine.get_tensor_dtype(name)))

    def execute_async_v3(self, stream_handle: int) -> bool:
        cuda, spec = self.engine.cuda, self.engine.spec
        if self.shape is None or set(self.addresses) != set(self.engine.names):
            self.engine.logger.log(self.engine.trt.ILogger.Severity.ERROR, "simulated: shapes or addresses not set")
            return False
        stream = cuda._stream(stream_handle)
        state = (self.shape, tuple(sorted(self.addresses.items())))
        capturing = stream.capture is not None
        if capturing:
            if self.engine.raise_in_capture:
                raise RuntimeError("simulated: TensorRT raised inside stream capture")
            if self.enqueued != state:
                raise RuleBroken(f"CUDA graph captured for {self.shape} without an ordinary enqueue of that shape "
                                 "(and addresses) since the last change")
        else:
            self.enqueued = state
        shape, addresses = state
        src, dst = self.addresses[spec["input"]], self.addresses[spec["output"]]
        in_type, out_type = self._dtype(spec["input"]), self._dtype(spec["output"])
        count = int(np.prod(shape))

        def kernel() -> None:
            if capturing and (self.shape, tuple(sorted(self.addresses.items()))) != state:
                raise RuleBroken(f"CUDA graph for {shape} replayed after its context was set to {self.shape}: "
                                 "TensorRT's shape-dependent state is stale (one context per captured shape, or recapture)")
            a, b = cuda.device_view(src, count * in_type.itemsize), cuda.device_view(dst, count * out_type.itemsize)
            if a is None or b is None:
                raise RuleBroken("execute_async_v3 ran on memory that is not allocated (freed while in use?)")
            x = np.frombuffer(a, dtype=in_type).astype(np.float32)
            y = 0.5 * x + 0.25
            runs = self.runs[shape] = self.runs.get(shape, 0) + 1
            strategy = getattr(self.config, "dynamic_shapes_kernel_specialization_strategy", None)
            if strategy is not None and strategy.name != "EAGER" and (strategy.name == "NONE" or runs <= LAZY_FALLBACK_RUNS):
                y = np.nextafter(y.astype(out_type), np.float32(np.inf)).astype(np.float32)  # the fallback kernel
            np.frombuffer(b, dtype=out_type)[:] = y.astype(out_type)
            cuda.clock_ms += cuda.kernel_ms

        code = cuda.enqueue(stream_handle, kernel)
        return code == 0


_CURRENT: dict[str, Any] = {"cuda": None}


@contextlib.contextmanager
def simulate(cuda: SimulatedCuda | None = None, **trt_options: Any) -> Iterator[SimulatedCuda]:
    """Run :class:`~irdeploy.runtime.tensorrt.TensorRTEngine` (and :func:`current_gpu`) on the simulator.

    ``trt_options`` go to :func:`tensorrt_module` for both flavours; the module version comes from
    each engine's sidecar, so the engine's version check passes."""
    from . import device, engine

    cuda = cuda or SimulatedCuda()
    saved = device.cudart, engine.cudart, engine.import_tensorrt, _CURRENT["cuda"]
    versions: dict[str, types.ModuleType] = {}

    def import_tensorrt(flavour: str = "auto") -> types.ModuleType:
        flavour = "tensorrt" if flavour == "auto" else flavour
        if flavour not in versions:
            versions[flavour] = tensorrt_module(flavour, _SIDECAR_VERSION.get(flavour, "10.13.3.9"), cuda, **trt_options)
        return versions[flavour]

    device.cudart = engine.cudart = lambda: cuda
    engine.import_tensorrt = import_tensorrt
    _CURRENT["cuda"] = cuda
    try:
        yield cuda
    finally:
        device.cudart, engine.cudart, engine.import_tensorrt, _CURRENT["cuda"] = saved


# The version each simulated flavour reports: what write_engine puts in sidecars by default.
_SIDECAR_VERSION = {"tensorrt": "10.13.3.9", "rtx": "1.7.1.116"}
