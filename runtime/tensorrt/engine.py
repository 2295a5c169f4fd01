"""Run a serialized engine without torch: cuda-python buffers and streams, named tensors.

Loading refuses an engine before TensorRT sees it when the sidecar says it cannot work here:
no sidecar, a file that is not the one the sidecar describes (corrupt or replaced), another
TensorRT flavour or version, another GPU (or, for TensorRT-RTX, a compute capability the build
did not target or that TensorRT-RTX does not support at all, such as Hopper), or no GPU at all.
Each is one line; TensorRT would otherwise fail with a CUDA error or, worse, run a stale engine.

Buffers (device input/output, pinned host copies) are allocated per input shape and reused by
later calls with that shape; dynamic shapes go through ``set_input_shape`` and
``execute_async_v3``, and every ``set_input_shape``/``set_tensor_address`` result is checked.
I/O types without a numpy type (BF16, FP8) map through ``ml_dtypes``; sub-byte types are refused.

CUDA graphs (``cuda_graph=True``) replay a whole inference as one launch, which removes the
per-kernel launch cost that dominates small images. TensorRT-RTX captures them itself (its
runtime config's whole-graph strategy). For data-centre TensorRT a graph is only valid for the
shape and addresses its context had when it was captured, and TensorRT needs one ordinary
enqueue after every input-shape change before a capture: so each captured shape gets its own
execution context, set once to that shape and those buffers, run once ordinarily, then captured;
it is never set to another shape, so its graph can never replay stale state. A failed capture or
instantiation (an exception included: the capture is always ended) falls back to ordinary
launches with the reason in ``graph_fallback``.

TensorRT-RTX compiles shape-specialised kernels for dynamic shapes; its default (LAZY) runs a
fallback kernel until they are ready, so two runs of one input can differ in the last bits. The
engine sets the strategy explicitly: the sidecar's (``eager`` unless the build chose otherwise),
or ``kernel_specialization``.

Teardown never stops at its first error: :meth:`TensorRTEngine.close`, a :class:`Launcher` or a
shape's buffers whose setup fails part-way, release every allocation they made (device and
pinned memory, graphs, the stream) and then raise the first error (:func:`release`); otherwise a
failed synchronize or cache write would keep device memory allocated until the process ends.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import warnings
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from irdeploy.core.fileio import atomic_write, sha256_file
from irdeploy.core.shapes import format_shape
from irdeploy.core.tensorrt import INSTALL, MODULES, NAMES, TensorRTUnavailable, import_tensorrt, make_logger

from .device import GPU, NO_GPU, check, cudart, current_gpu, rtx_capabilities
from .errors import EngineLoadError, GPUError, NoGPUError
from .profiles import Profile
from .sidecar import read_sidecar

# Input shapes whose buffers are kept for infer(); a server cycling through more reallocates.
MAX_SHAPES = 4
# TensorRT-RTX DynamicShapesKernelSpecializationStrategy members, by the names irdeploy uses.
KERNEL_SPECIALIZATIONS = {"eager": "EAGER", "lazy": "LAZY", "none": "NONE"}
DEFAULT_KERNEL_SPECIALIZATION = "eager"
# TensorRT I/O types numpy lacks: TensorRT's FP8 is E4M3.
_ML_DTYPES = {"BF16": "bfloat16", "FP8": "float8_e4m3fn"}


def release(*steps: Callable[[], object], first: BaseException | None = None) -> None:
    """Run every teardown step even when one raises, then raise the first error (``first``: one
    that happened before the teardown, which is then the one raised)."""
    for step in steps:
        try:
            step()
        except BaseException as exc:  # noqa: BLE001 - re-raised below, after the remaining steps
            first = first or exc
    if first is not None:
        raise first


def _call(function: Callable[..., Any], what: str, *args: Any) -> Callable[[], None]:
    """A teardown step: the CUDA call ``function(*args)``, checked."""
    return lambda: check(function(*args), what)


def numpy_dtype(trt: ModuleType, dtype: Any) -> np.dtype:
    """The numpy type of a TensorRT ``DataType``: TensorRT's ``nptype``, else ``ml_dtypes`` for BF16
    and FP8; :class:`EngineLoadError` for types with no byte-addressable host form (FP4, INT4)."""
    try:
        return np.dtype(trt.nptype(dtype))
    except TypeError:
        pass
    name = getattr(dtype, "name", str(dtype))
    if name in _ML_DTYPES:
        import ml_dtypes

        return np.dtype(getattr(ml_dtypes, _ML_DTYPES[name]))
    raise EngineLoadError(f"the engine has a {name} input or output, which has no host type here; "
                          "build it with float32, float16, bfloat16 or FP8 I/O")


@dataclass
class _Buffers:
    """Device and pinned host memory for one input shape of :meth:`TensorRTEngine.infer`."""

    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    device_in: int
    device_out: int
    host_in: np.ndarray
    host_out: np.ndarray
    host_ptrs: tuple[int, int]
    # Data-centre TensorRT with cuda_graph=True: this shape's own execution context (bound once to
    # this shape and these buffers) and, once captured, its instantiated graph.
    context: Any = None
    graph_exec: Any = None


class Launcher:
    """One input pointer and shape bound to an execution context of their own.

    Each call enqueues one inference on the engine's stream and nothing else: the shape and the
    addresses were set when the launcher was made, and with ``cuda_graph`` the call is one graph
    launch. That is what a compute-only timing between two CUDA events may contain. The output
    (``output_ptr``, ``output_shape``) belongs to the launcher until :meth:`close`.
    """

    def __init__(self, engine: TensorRTEngine, input_ptr: int, shape: tuple[int, ...]) -> None:
        self.engine, self.shape = engine, shape
        self.context = engine._new_context()
        self.output_shape = engine._output_shape(self.context, shape)
        self.output_ptr: int | None = engine._malloc(self.output_shape, engine.output_name)
        self.graph_exec: Any = None
        try:
            engine._bind(self.context, shape, input_ptr, self.output_ptr)
            engine._execute(self.context, engine.stream)  # the ordinary enqueue TensorRT needs before a capture
            check(engine._rt.cudaStreamSynchronize(engine.stream), "cudaStreamSynchronize")
            if engine._captures_by_hand:
                self.graph_exec = engine._capture(self.context, shape)
        except BaseException as exc:
            release(self.close, first=exc)

    @property
    def path(self) -> str:
        return "CUDA graph" if self.graph_exec is not None else self.engine.launch_path

    def __call__(self) -> None:
        if self.graph_exec is not None:
            check(self.engine._rt.cudaGraphLaunch(self.graph_exec, self.engine.stream), "cudaGraphLaunch")
        else:
            self.engine._execute(self.context, self.engine.stream)

    def close(self) -> None:
        if self.output_ptr is None:
            return
        rt, graph_exec, output_ptr = self.engine._rt, self.graph_exec, self.output_ptr
        self.graph_exec = self.output_ptr = None
        graph = [_call(rt.cudaGraphExecDestroy, "cudaGraphExecDestroy", graph_exec)] if graph_exec is not None else []
        release(*graph, _call(rt.cudaFree, "cudaFree", output_ptr))


class TensorRTEngine:
    """An engine checked against this machine, ready for ``infer``.

    ``device``: the CUDA device index to run on. ``runtime_cache`` (TensorRT-RTX): a file holding
    the kernels RTX compiles just in time on first use; read at load (a blob TensorRT-RTX rejects
    is reported in ``notes`` and replaced) and written at :meth:`close`, so the next process starts
    warm. ``allow_untargeted_gpu`` skips only the compute-capability checks, for trying an RTX
    engine on a GPU its build did not target (TensorRT then decides whether it runs).
    ``cuda_graph`` replays :meth:`infer` and :meth:`launcher` through CUDA graphs (see the module
    docstring; ``graph_fallback`` holds the reason when capture failed). ``kernel_specialization``
    (TensorRT-RTX): ``eager``, ``lazy`` or ``none``; default: the sidecar's.
    """

    def __init__(
        self,
        engine_path: str | os.PathLike,
        *,
        device: int = 0,
        runtime_cache: str | os.PathLike | None = None,
        allow_untargeted_gpu: bool = False,
        cuda_graph: bool = False,
        kernel_specialization: str | None = None,
    ) -> None:
        if kernel_specialization is not None and kernel_specialization not in KERNEL_SPECIALIZATIONS:
            raise ValueError(f"unknown kernel specialization {kernel_specialization!r}; "
                             f"choose from {', '.join(KERNEL_SPECIALIZATIONS)}")
        self.path = Path(engine_path)
        if not self.path.is_file():
            raise EngineLoadError(f"{self.path}: no such engine file")
        self.sidecar = read_sidecar(self.path)
        self._check_file()
        self.trt = self._matching_tensorrt()
        self.is_rtx = self.sidecar["tensorrt"]["flavour"] == "rtx"
        self.gpu = current_gpu(device)
        self._check_gpu(allow_untargeted_gpu)
        self.profile = Profile.from_dict(self.sidecar["profiles"][0])
        self.pad_multiple = int(self.sidecar.get("pad_multiple", 1))
        self.notes: list[str] = []
        self.cuda_graph = cuda_graph
        self.graph_fallback: str | None = None
        self.kernel_specialization = (
            (kernel_specialization or self.sidecar.get("options", {}).get("kernel_specialization")
             or DEFAULT_KERNEL_SPECIALIZATION) if self.is_rtx else None)
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
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.input_name = self.profile.input  # the sidecar names the input; the other tensor is the output
        outputs = [n for n in names if n != self.input_name]
        if self.input_name not in names or len(outputs) != 1:
            raise EngineLoadError(f"{self.path}: expected input {self.input_name!r} and one output, found {names}")
        self.output_name = outputs[0]
        try:
            self._dtypes = {n: numpy_dtype(self.trt, self.engine.get_tensor_dtype(n)) for n in names}
        except EngineLoadError as exc:
            raise EngineLoadError(f"{self.path}: {exc}") from None
        self._runtime_cache_path = Path(runtime_cache) if runtime_cache is not None else None
        self._runtime_cache: Any = None
        self._config = self._runtime_config()
        self._captures_by_hand = cuda_graph and not self.is_rtx
        self.context = self._new_context()
        self.stream = check(self._rt.cudaStreamCreate(), "cudaStreamCreate")
        self._buffers: OrderedDict[tuple[int, ...], _Buffers] = OrderedDict()
        # infer_device outputs, one per shape: the caller holds these pointers, so they are never evicted
        self._device_outputs: dict[tuple[int, ...], tuple[int, tuple[int, ...]]] = {}
        self._launchers: list[Launcher] = []

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
        except TensorRTUnavailable as exc:
            if importlib.util.find_spec(MODULES[built["flavour"]]) is None:
                raise EngineLoadError(
                    f"{self.path}: built with {wanted}, which is not installed here ({INSTALL[built['flavour']]})"
                ) from None
            raise EngineLoadError(f"{self.path}: built with {wanted}, which cannot be used here: {exc}") from None
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
            return
        if allow_untargeted:
            return
        supported = rtx_capabilities(self.trt)
        if gpu.compute_capability not in supported:
            raise EngineLoadError(
                f"{self.path}: {gpu.name} (compute capability {gpu.compute_capability}) is not a TensorRT-RTX "
                f"{self.trt.__version__} target; it supports {', '.join(supported)} (use data-centre TensorRT on this GPU)"
            )
        if gpu.compute_capability not in target["compute_capabilities"]:
            raise EngineLoadError(
                f"{self.path}: built for compute capabilities {', '.join(target['compute_capabilities'])}, "
                f"this GPU is {gpu.name} ({gpu.compute_capability}); rebuild with compute_capabilities=['current']"
            )

    # -- contexts ------------------------------------------------------------------------------

    def _runtime_config(self) -> Any:
        """TensorRT-RTX's runtime config (kernel strategy, runtime cache, graph strategy); None for TensorRT."""
        if not self.is_rtx:
            return None
        trt = self.trt
        config = self.engine.create_runtime_config()
        strategy = KERNEL_SPECIALIZATIONS[self.kernel_specialization]
        config.dynamic_shapes_kernel_specialization_strategy = getattr(trt.DynamicShapesKernelSpecializationStrategy, strategy)
        if self._runtime_cache_path is not None:
            self._runtime_cache = config.create_runtime_cache()
            if self._runtime_cache_path.is_file() and not self._runtime_cache.deserialize(self._runtime_cache_path.read_bytes()):
                note = (f"runtime cache {self._runtime_cache_path} was rejected by {NAMES['rtx']} (another GPU, driver "
                        "or version, or damaged); starting empty, a new one is written at close")
                self.notes.append(note)
                warnings.warn(note, RuntimeWarning, stacklevel=3)
            config.set_runtime_cache(self._runtime_cache)
        if self.cuda_graph:
            config.cuda_graph_strategy = trt.CudaGraphStrategy.WHOLE_GRAPH_CAPTURE
        return config

    def _new_context(self) -> Any:
        context = (self.engine.create_execution_context() if self._config is None
                   else self.engine.create_execution_context(self._config))
        if context is None:
            raise EngineLoadError(f"{self.path}: TensorRT could not create an execution context: "
                                  f"{self._logger.first_error('no reason given')[:300]}")
        return context

    @property
    def launch_path(self) -> str:
        """How an inference is launched: what both the end-to-end and compute-only figures time."""
        if self.cuda_graph and self.is_rtx:
            return "CUDA graph (TensorRT-RTX whole-graph capture)"
        if self._captures_by_hand and self.graph_fallback is None:
            return "CUDA graph (one context per shape)"
        return "enqueueV3"

    # -- execution -----------------------------------------------------------------------------

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

    def _output_shape(self, ctx: Any, shape: tuple[int, ...]) -> tuple[int, ...]:
        if not ctx.set_input_shape(self.input_name, shape):
            raise ValueError(f"TensorRT rejected input shape {format_shape(shape)}: {self._logger.first_error('no reason given')}")
        out = tuple(int(d) for d in ctx.get_tensor_shape(self.output_name))
        if any(d < 0 for d in out):
            raise ValueError(f"{self.path.name}: output {self.output_name!r} has shape {out} (-1: data-dependent) for input "
                             f"{format_shape(shape)}; irdeploy runs engines whose output shape follows from the input's")
        return out

    def _malloc(self, shape: tuple[int, ...], name: str) -> int:
        return check(self._rt.cudaMalloc(int(np.prod(shape)) * self._dtypes[name].itemsize), "cudaMalloc")

    @staticmethod
    def _allocate(malloc: Callable[[int], Any], free: Callable[[int], Any], what: str, nbytes: int,
                  made: list[Callable[[], None]]) -> int:
        """``malloc(nbytes)``, checked; the step that frees it is appended to ``made``."""
        ptr = check(malloc(nbytes), what)
        made.append(_call(free, what.replace("Malloc", "Free"), ptr))
        return ptr

    def _bind(self, ctx: Any, shape: tuple[int, ...], device_in: int, device_out: int) -> None:
        if not ctx.set_input_shape(self.input_name, shape):
            raise ValueError(f"TensorRT rejected input shape {format_shape(shape)}")
        for name, ptr in ((self.input_name, device_in), (self.output_name, device_out)):
            if not ctx.set_tensor_address(name, int(ptr)):
                raise GPUError(f"TensorRT rejected the address {int(ptr):#x} of {name!r} (set_tensor_address "
                                   f"returned False: {self._logger.first_error('no reason given')[:200]})")

    def _execute(self, ctx: Any, stream: Any) -> None:
        if not ctx.execute_async_v3(int(stream)):
            raise GPUError(f"TensorRT execution failed: {self._logger.first_error('no reason given')[:300]}")

    def _buffers_for(self, shape: tuple[int, ...]) -> _Buffers:
        if shape in self._buffers:
            self._buffers.move_to_end(shape)
            return self._buffers[shape]
        context = self._new_context() if self._captures_by_hand else None
        out_shape = self._output_shape(context or self.context, shape)
        rt = self._rt
        sizes = [int(np.prod(s)) * self._dtypes[n].itemsize
                 for s, n in ((shape, self.input_name), (out_shape, self.output_name))]
        made: list[Callable[[], None]] = []  # how to free each allocation made so far
        try:
            device_in, device_out = (self._allocate(rt.cudaMalloc, rt.cudaFree, "cudaMalloc", n, made) for n in sizes)
            host_ptrs = [self._allocate(rt.cudaMallocHost, rt.cudaFreeHost, "cudaMallocHost", n, made) for n in sizes]
            host_in, host_out = (
                np.frombuffer((ctypes.c_uint8 * n).from_address(p), dtype=self._dtypes[name]).reshape(s)
                for n, p, name, s in zip(sizes, host_ptrs, (self.input_name, self.output_name), (shape, out_shape))
            )
            if context is not None:
                self._bind(context, shape, device_in, device_out)  # once: this context never changes shape
        except BaseException as exc:
            release(*made, first=exc)
        buffers = _Buffers(shape, out_shape, device_in, device_out, host_in, host_out, tuple(host_ptrs), context)  # type: ignore[arg-type]
        self._buffers[shape] = buffers
        while len(self._buffers) > MAX_SHAPES:
            self._free(self._buffers.popitem(last=False)[1])
        return buffers

    def _run_buffers(self, buf: _Buffers) -> None:
        """Enqueue one inference on the shape's own buffers: a graph launch once captured."""
        if buf.graph_exec is not None:
            check(self._rt.cudaGraphLaunch(buf.graph_exec, self.stream), "cudaGraphLaunch")
            return
        if buf.context is None:
            self._bind(self.context, buf.input_shape, buf.device_in, buf.device_out)
            self._execute(self.context, self.stream)
            return
        self._execute(buf.context, self.stream)
        if self.graph_fallback is None:
            check(self._rt.cudaStreamSynchronize(self.stream), "cudaStreamSynchronize")
            buf.graph_exec = self._capture(buf.context, buf.input_shape)

    def _capture(self, ctx: Any, shape: tuple[int, ...]) -> Any:
        """Capture one ``execute_async_v3`` of ``ctx`` into an instantiated graph, or record why it
        cannot be captured and return None (ordinary launches from then on). The capture is ended
        whatever happens inside it, so the stream is never left capturing."""
        rt, stream = self._rt, self.stream
        check(rt.cudaStreamBeginCapture(stream, rt.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal),
              "cudaStreamBeginCapture")
        reason = None
        try:
            if not ctx.execute_async_v3(int(stream)):
                reason = self._logger.first_error("execute_async_v3 returned False")
        except Exception as exc:  # TensorRT or a plugin raising mid-capture: end it below, then fall back
            reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        finally:
            err, graph = rt.cudaStreamEndCapture(stream)
        if reason is None and int(err):
            reason = f"cudaStreamEndCapture: {rt.cudaGetErrorName(err)[1].decode()}"
        graph_exec = None
        if reason is None:
            err, graph_exec = rt.cudaGraphInstantiate(graph, 0)
            if int(err):
                reason, graph_exec = f"cudaGraphInstantiate: {rt.cudaGetErrorName(err)[1].decode()}", None
        if graph is not None:
            check(rt.cudaGraphDestroy(graph), "cudaGraphDestroy")
        if reason is not None:
            self.graph_fallback = f"CUDA graph capture failed for {format_shape(shape)} ({reason[:200]}); running without graphs"
        return graph_exec

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """Run an NCHW batch (already padded to the engine's multiple); the output in the engine's
        output type (``ml_dtypes`` for BF16/FP8)."""
        shape = self.check_shape(batch.shape)
        buf = self._buffers_for(shape)
        rt, stream = self._rt, self.stream
        buf.host_in[...] = batch
        check(rt.cudaMemcpyAsync(buf.device_in, buf.host_ptrs[0], buf.host_in.nbytes,
                                 rt.cudaMemcpyKind.cudaMemcpyHostToDevice, stream), "cudaMemcpyAsync")
        self._run_buffers(buf)
        check(rt.cudaMemcpyAsync(buf.host_ptrs[1], buf.device_out, buf.host_out.nbytes,
                                 rt.cudaMemcpyKind.cudaMemcpyDeviceToHost, stream), "cudaMemcpyAsync")
        check(rt.cudaStreamSynchronize(stream), "cudaStreamSynchronize")
        return buf.host_out.copy()

    def infer_device(self, input_ptr: int, shape: Sequence[int], stream: Any = None) -> tuple[int, tuple[int, ...]]:
        """Run on device memory: returns the output's device pointer and shape. The pointer is the
        engine's, one per shape: the next call with this shape overwrites it, and it stays valid
        until :meth:`close` (other shapes never evict it). Enqueued on ``stream`` (default: the
        engine's); the caller synchronizes. Always an ordinary launch (see :meth:`launcher`)."""
        shape = self.check_shape(shape)
        if shape not in self._device_outputs:
            out_shape = self._output_shape(self.context, shape)
            self._device_outputs[shape] = (self._malloc(out_shape, self.output_name), out_shape)
        out_ptr, out_shape = self._device_outputs[shape]
        self._bind(self.context, shape, input_ptr, out_ptr)
        self._execute(self.context, self.stream if stream is None else stream)
        return out_ptr, out_shape

    def launcher(self, input_ptr: int, shape: Sequence[int]) -> Launcher:
        """A :class:`Launcher` for device-resident input at ``input_ptr``: runs once and, with
        ``cuda_graph``, is captured now, so each later call is only the launch."""
        launcher = Launcher(self, int(input_ptr), self.check_shape(shape))
        self._launchers.append(launcher)
        return launcher

    # -- teardown ------------------------------------------------------------------------------

    def _free(self, buf: _Buffers) -> None:
        rt = self._rt
        graph = [_call(rt.cudaGraphExecDestroy, "cudaGraphExecDestroy", buf.graph_exec)] if buf.graph_exec is not None else []
        release(*graph, *(_call(rt.cudaFree, "cudaFree", ptr) for ptr in (buf.device_in, buf.device_out)),
                *(_call(rt.cudaFreeHost, "cudaFreeHost", ptr) for ptr in buf.host_ptrs))

    def _write_runtime_cache(self) -> None:
        if self._runtime_cache is not None and self._runtime_cache_path is not None:
            atomic_write(self._runtime_cache_path, bytes(self._runtime_cache.serialize()))

    def close(self) -> None:
        """Free buffers and the stream; write the RTX runtime cache, if one was given. Every step
        runs even when an earlier one fails (the first error is raised at the end); a closed
        engine stays closed."""
        if self.stream is None:
            return
        rt, stream = self._rt, self.stream
        buffers, outputs, launchers = list(self._buffers.values()), list(self._device_outputs.values()), self._launchers
        self.stream, self._buffers, self._device_outputs, self._launchers = None, OrderedDict(), {}, []
        release(_call(rt.cudaStreamSynchronize, "cudaStreamSynchronize", stream),  # nothing is freed while in use
                self._write_runtime_cache,
                *(lambda buf=buf: self._free(buf) for buf in buffers),
                *(_call(rt.cudaFree, "cudaFree", ptr) for ptr, _ in outputs),
                *(launcher.close for launcher in launchers),
                _call(rt.cudaStreamDestroy, "cudaStreamDestroy", stream))

    def __enter__(self) -> TensorRTEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
