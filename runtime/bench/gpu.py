"""GPU timing: compute-only probes on CUDA events, device memory, and the measured ceilings.

Everything here runs only behind a ``cuda_unavailable() is None`` check (or a TensorRT engine,
which needs a GPU to load); on a CPU-only machine the rows say why there is no compute-only
figure and the result says why there are no ceilings.

- **Compute-only** (:class:`TorchCudaProbe`, :class:`TensorRTProbe`): the input is copied to the
  device once; each sample is one run between two CUDA events on the run's own stream, so host
  overhead and the host<->device copies are out of it. End-to-end stays the host clock around
  ``backend.infer`` (copies in, run, copies out, synchronised).
- **Device memory**: memory in use on the device (``cudaMemGetInfo``: total - free), sampled
  after every warm-up call; a device-wide high-water mark, like peak RSS is process-wide.
- **Ceilings** (:func:`measure_ceilings`): a large square matmul per precision (TFLOP/s) and a
  device-to-device copy (GB/s, read + write), measured in the same run and process, so that
  achieved GMAC/s can be read as a share of what this device actually reaches.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .measure import Row
from .stats import copy_gbps, matmul_tflops, share_of_peak

TORCH_DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}
CPU_COMPUTE_REASON = "CPU backend: no device copies, end-to-end is the compute time"
ORT_COMPUTE_REASON = "ONNX Runtime: end-to-end only (its device-side timing is not wired up)"


def cuda_unavailable() -> str | None:
    """Why torch cannot run on a CUDA device here, or ``None`` if it can."""
    try:
        import torch
    except ImportError:
        return "torch is not installed"
    if not torch.cuda.is_available():
        return f"torch {torch.__version__} sees no CUDA device"
    return None


def _torch_event_ms(torch: Any, fn: Callable[[], Any]) -> float:
    """Milliseconds of ``fn()`` on the current CUDA stream, between two CUDA events."""
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    fn()
    end.record()
    end.synchronize()
    return start.elapsed_time(end)


class TorchCudaProbe:
    """Compute-only timing of a torch backend on CUDA: a device-resident input, CUDA events."""

    def __init__(self, backend: Any, batch: np.ndarray, precision: str) -> None:
        torch = backend.torch
        self.torch, self.backend = torch, backend
        self.input = torch.from_numpy(batch).to(backend.device, getattr(torch, TORCH_DTYPES[precision]))

    def __call__(self) -> int:
        return int(_torch_event_ms(self.torch, lambda: self.backend.infer_tensor(self.input)) * 1e6)

    def close(self) -> None:
        self.input = None


class TensorRTProbe:
    """Compute-only timing of an engine: the padded input copied to the device once and bound to a
    :meth:`~irdeploy.runtime.tensorrt.TensorRTEngine.launcher` of its own (shape and addresses set,
    first run and any graph capture done) before the first event, so the two CUDA events enclose
    only the launch, the same launch path that ``backend.infer`` takes (its name says which)."""

    def __init__(self, backend: Any, batch: np.ndarray) -> None:
        from irdeploy.core.padding import pad_batch
        from irdeploy.runtime.tensorrt.device import check, cudart
        from irdeploy.runtime.tensorrt.engine import release

        self.rt, self.check, self.engine = cudart(), check, backend.engine
        rt = self.rt
        dtype = self.engine._dtypes[self.engine.input_name]
        padded = np.ascontiguousarray(pad_batch(batch, backend.pad_multiple, backend.pad_mode)).astype(dtype)
        self.input: int | None = None
        self.launch: Any = None
        self.events: list[Any] = []
        try:  # a step that fails releases what the earlier ones made (close), then raises
            self.input = check(rt.cudaMalloc(padded.nbytes), "cudaMalloc")
            check(rt.cudaMemcpy(self.input, padded.ctypes.data, padded.nbytes, rt.cudaMemcpyKind.cudaMemcpyHostToDevice),
                  "cudaMemcpy")
            self.launch = self.engine.launcher(self.input, padded.shape)
            for _ in range(2):
                self.events.append(check(rt.cudaEventCreate(), "cudaEventCreate"))
        except BaseException as exc:
            release(self.close, first=exc)
        self.start, self.end = self.events

    def __call__(self) -> int:
        rt, check, stream = self.rt, self.check, self.engine.stream
        check(rt.cudaEventRecord(self.start, stream), "cudaEventRecord")
        self.launch()
        check(rt.cudaEventRecord(self.end, stream), "cudaEventRecord")
        check(rt.cudaEventSynchronize(self.end), "cudaEventSynchronize")
        return int(check(rt.cudaEventElapsedTime(self.start, self.end), "cudaEventElapsedTime") * 1e6)

    def close(self) -> None:
        """Release the launcher, the input and the events; each step runs even when one fails."""
        from irdeploy.runtime.tensorrt.engine import release

        if self.input is None:
            return
        rt, check, stream = self.rt, self.check, self.engine.stream
        launch, ptr, events = self.launch, self.input, self.events
        self.launch, self.input, self.events = None, None, []
        release(lambda: check(rt.cudaStreamSynchronize(stream), "cudaStreamSynchronize"),
                *([launch.close] if launch is not None else []),
                lambda: check(rt.cudaFree(ptr), "cudaFree"),
                *(lambda event=event: check(rt.cudaEventDestroy(event), "cudaEventDestroy") for event in events))


def device_memory_used_mb() -> float | None:
    """Device memory in use now (total - free, every process on the device), MiB; ``None`` if unknown."""
    try:
        from irdeploy.runtime.tensorrt.device import check, cudart

        free, total = check(cudart().cudaMemGetInfo(), "cudaMemGetInfo")
    except Exception:  # no cuda-bindings or no device: the column stays empty, the row does not fail
        return None
    return (total - free) / 2**20


def measure_ceilings(precisions: Sequence[str] = ("fp32", "fp16", "bf16"), size: int = 8192,
                     copy_mib: int = 1024, iterations: int = 10) -> dict[str, Any]:
    """Measure this GPU's matmul TFLOP/s per precision and its device-to-device copy GB/s.

    Medians of ``iterations`` CUDA-event-timed runs after three warm-up runs. fp32 is measured
    with TF32 off (what an fp32 engine is built with); a precision the device cannot run is left
    out of ``matmul_tflops`` and named in ``unsupported``.
    """
    import torch

    def median_ms(fn: Callable[[], Any]) -> float:
        for _ in range(3):
            fn()
        torch.cuda.synchronize()
        return statistics.median(_torch_event_ms(torch, fn) for _ in range(iterations))

    def matmul_ms(dtype: Any) -> float:  # the operands are freed on return
        a = torch.randn(size, size, device="cuda", dtype=dtype)
        b = torch.randn(size, size, device="cuda", dtype=dtype)
        return median_ms(lambda: torch.mm(a, b))

    def copy_ms(nbytes: int) -> float:
        src = torch.empty(nbytes, dtype=torch.uint8, device="cuda")
        dst = torch.empty_like(src)
        return median_ms(lambda: dst.copy_(src))

    tflops: dict[str, float] = {}
    unsupported: list[str] = []
    allow_tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        for precision in precisions:
            if precision == "bf16" and not torch.cuda.is_bf16_supported():
                unsupported.append(precision)
                continue
            tflops[precision] = matmul_tflops(size, size, size, matmul_ms(getattr(torch, TORCH_DTYPES[precision])))
    finally:
        torch.backends.cuda.matmul.allow_tf32 = allow_tf32
    nbytes = copy_mib * 2**20
    gbps = copy_gbps(nbytes, copy_ms(nbytes))
    torch.cuda.empty_cache()
    return {"gpu": torch.cuda.get_device_name(), "matmul_tflops": tflops, "copy_gbps": gbps,
            "matmul_size": size, "copy_bytes": nbytes, "unsupported": unsupported}


def apply_ceilings(rows: Sequence[Row], ceilings: dict[str, Any]) -> None:
    """Fill ``peak_share`` of every measured GPU row: compute-only GMAC/s (end-to-end where a
    backend has no compute-only figure) over the matmul ceiling of the row's precision."""
    for row in rows:
        tflops = ceilings["matmul_tflops"].get(row.precision)
        rate = row.compute_gmac_per_s if row.compute_gmac_per_s is not None else row.gmac_per_s
        if row.status == "ok" and row.device == "cuda" and tflops and rate is not None:
            row.peak_share = share_of_peak(rate, tflops)
