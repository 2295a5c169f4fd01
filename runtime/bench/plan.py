"""A model across backends, precisions, shapes and thread counts: what to measure, and measuring it.

Per shape, the ONNX graphs are exported (static, so ONNX Runtime can plan memory and fold shapes)
and any engines built once; then every thread count of the sweep is one interleaved group.
Threads only mean something on the CPU, so a GPU backend runs once, in the first group.
"""

from __future__ import annotations

import copy
import importlib.util
import os
import time
from functools import partial
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from irdeploy.core.precision import EXPORT_PRECISIONS, check_precision
from irdeploy.core.progress import step
from irdeploy.export.torch_backend import TorchBackend
from irdeploy.runtime.registry import get_backend

from .gpu import (CPU_COMPUTE_REASON, ORT_COMPUTE_REASON, TORCH_DTYPES, TensorRTProbe, TorchCudaProbe,
                  apply_ceilings, cuda_unavailable, device_memory_used_mb, measure_ceilings)
from .measure import BenchConfig, Candidate, Clock, Progress, measure, one_line
from .results import BenchResult

# The registered backends (irdeploy.runtime.registry) that the benchmark knows how to measure.
BACKENDS = ("torch", "torch-compile", "ort", "trt")
DEVICES = ("auto", "cpu", "cuda")


def parse_threads(text: str) -> list[int]:
    """``"1,2"`` -> ``[1, 2]``: the thread counts of a sweep, in order, each once."""
    try:
        counts = [int(t) for t in text.split(",")]
    except ValueError:
        counts = []
    if not counts or min(counts) < 1:
        raise ValueError(f"bad thread counts {text!r}: expected positive integers, e.g. 1,2")
    return list(dict.fromkeys(counts))


def thread_groups(backends: Sequence[str], threads: Sequence[int | None],
                  cpu_backends: Collection[str]) -> list[tuple[int | None, list[str]]]:
    """The sweep as ``(threads, backends)`` groups: every thread count gets the CPU backends; the
    others (on a GPU, where intra-op threads do not matter) run once, in the first group."""
    groups = []
    for k, count in enumerate(threads):
        chosen = [b for b in backends if b in cpu_backends or k == 0]
        if chosen:
            groups.append((count, chosen))
    return groups


def tensorrt_unavailable() -> str | None:
    """Why TensorRT cannot run here, or ``None`` if it can (an NVIDIA GPU and TensorRT)."""
    if importlib.util.find_spec("tensorrt") is None and importlib.util.find_spec("tensorrt_rtx") is None:
        return "TensorRT is not installed; in the irdeploy clone, run: pip install \".[rtx]\" (or \".[gpu]\")"
    try:
        from irdeploy.runtime.tensorrt.device import current_gpu

        current_gpu()
    except Exception as exc:
        return f"no usable NVIDIA GPU ({one_line(exc)})"
    return None


class CastTorchBackend(TorchBackend):
    """Eager torch (or torch.compile) with weights and input in ``precision``, output float32.

    Pure low precision, the way an fp16/bf16 engine stores tensors (not autocast, which keeps
    chosen ops float32). The model is copied unless it is used as it is (fp32 on the CPU), so the
    caller's model stays float32 on the CPU for export and the reference.
    """

    def __init__(self, model: Any, precision: str, *, device: str = "cpu", compile: bool = False) -> None:
        import torch

        self.dtype = getattr(torch, TORCH_DTYPES[precision])
        if precision != "fp32" or device != "cpu":
            model = copy.deepcopy(model).to(self.dtype)
        super().__init__(model, device=device, compile=compile)

    def _run(self, batch: np.ndarray) -> np.ndarray:
        out = self.infer_tensor(self.torch.from_numpy(batch).to(self.device, self.dtype))
        return out.float().cpu().numpy()


def _ort_device() -> str:
    from irdeploy.core.ort_backend import default_providers, provider_name

    # a prediction, for the thread sweep; each row is labelled by where its session really runs
    return "cpu" if provider_name(default_providers()[0]) == "CPUExecutionProvider" else "cuda"


class _Artifacts:
    """The ONNX graphs and engines of one model at one static shape, made on first use and shared
    by every thread count (their one-off costs are reported, not timed)."""

    def __init__(self, model: Any, model_name: str, workdir: Path, shape: Sequence[int]) -> None:
        self.model, self.workdir, self.shape = model, workdir, tuple(shape)
        self.stem = f"{model_name}-{'x'.join(map(str, shape))}"
        self.graphs: dict[str, tuple[Path, float | None]] = {}

    def onnx(self, precision: str) -> tuple[Path, float | None]:
        """The static graph in ``precision`` and its export seconds."""
        if precision not in self.graphs:
            from irdeploy.export import to_onnx

            n, c, h, w = self.shape
            path = self.workdir / f"{self.stem}-{precision}.onnx"
            path.unlink(missing_ok=True)
            with step(f"bench: exporting the static {precision} graph at {'x'.join(map(str, self.shape))}"):
                report = to_onnx(self.model, path, static_shape=(n, h, w), precision=precision, tensorrt=False,
                                 channels=c)
            self.graphs[precision] = (path, report.seconds)
        return self.graphs[precision]

    def engine(self, precision: str) -> tuple[Path, float | None, float | None]:
        """An engine built from the fp32 graph (the build's mixed-precision pass makes fp16/bf16):
        its path, the export seconds and the build seconds."""
        from irdeploy.core.tensorrt import flavour_of, import_tensorrt
        from irdeploy.runtime.tensorrt import build_engine

        # int8 needs its calibrated Q/DQ graph; the other precisions come from the float32 graph
        path, export_seconds = self.onnx("int8" if precision == "int8" else "fp32")
        # TensorRT-RTX: for this GPU only (its default targets every RTX architecture)
        rtx = flavour_of(import_tensorrt("auto")) == "rtx"
        built = build_engine(path, path.with_suffix(f".{precision}.engine"), precision=precision,
                             compute_capabilities=["current"] if rtx else None)
        return built.engine_path, export_seconds, built.seconds


def _torch_candidate(model: Any, backend: str, precision: str, device: str) -> Candidate:
    cand = Candidate(backend, precision, device=device)
    if precision == "int8":
        cand.skip = "int8 is a calibrated ONNX Q/DQ graph (ort, trt); eager PyTorch has no such path"
        return cand
    if device == "cuda":
        import torch

        if precision == "bf16" and not torch.cuda.is_bf16_supported():
            cand.skip = f"bf16 is not supported on {torch.cuda.get_device_name()}"
            return cand
        cand.compute = partial(TorchCudaProbe, precision=precision)
    else:
        cand.compute_reason = CPU_COMPUTE_REASON
    cand.load = partial(CastTorchBackend, model, precision, device=device, compile=backend == "torch-compile")
    return cand


def _ort_candidate(artifacts: _Artifacts, precision: str, threads: int | None, device: str) -> Candidate:
    from irdeploy.core.ort_backend import OnnxRuntimeBackend

    cand = Candidate("ort", precision, device=device,
                     compute_reason=CPU_COMPUTE_REASON if device == "cpu" else ORT_COMPUTE_REASON)
    try:
        path, cand.export_seconds = artifacts.onnx(precision)
    except Exception as exc:
        cand.skip = f"export failed: {one_line(exc)}"
        return cand
    cand.load = partial(OnnxRuntimeBackend, path, threads=threads)
    return cand


def _trt_candidate(artifacts: _Artifacts, precision: str, unavailable: str | None) -> Candidate:
    from irdeploy.runtime.backends import TensorRTBackend

    cand = Candidate("trt", precision, device="cuda", skip=unavailable)
    if unavailable:
        return cand
    try:
        path, cand.export_seconds, cand.build_seconds = artifacts.engine(precision)
    except Exception as exc:
        cand.skip = f"engine build failed: {one_line(exc)}"
        return cand
    cand.load = partial(TensorRTBackend, path)
    cand.compute = TensorRTProbe
    return cand


def bench_model(
    model: Any,
    *,
    model_name: str,
    workdir: str | os.PathLike,
    backends: Sequence[str] = ("torch", "ort"),
    precisions: Sequence[str] = ("fp32",),
    shapes: Sequence[Sequence[int]] = ((1, 3, 256, 256),),
    threads: int | Sequence[int] | None = None,
    device: str = "auto",
    config: BenchConfig | None = None,
    clock: Clock = time.perf_counter_ns,
    seed: int = 0,
    progress: Progress | None = None,
) -> BenchResult:
    """Measure every backend x precision of ``model`` at every shape and thread count.

    ``workdir`` receives the ONNX graphs and any TensorRT engines. ``threads`` (one count or a
    sweep) sets torch's and ONNX Runtime's intra-op threads alike, so the comparison is like for
    like. ``device`` places the torch backends ("auto": CUDA when torch sees a GPU). GMACs are
    counted once per shape with :func:`irdeploy.model.stats.model_stats`; eager torch fp32 on the
    CPU is the PSNR reference. On a GPU the matmul and copy ceilings are measured first.
    """
    import torch

    from irdeploy.model.stats import model_stats

    for b in backends:
        get_backend(b)  # an unknown name: the registry's one line with the choices
        if b not in BACKENDS:
            raise ValueError(f"the benchmark has no measurement for backend {b!r}; it measures {', '.join(BACKENDS)}")
    for p in precisions:
        check_precision(p, EXPORT_PRECISIONS)
    if device not in DEVICES:
        raise ValueError(f"unknown device {device!r}; choose from {', '.join(DEVICES)}")
    cuda_reason = cuda_unavailable()
    if device == "cuda" and cuda_reason:
        raise ValueError(f"--device cuda: {cuda_reason}")
    torch_device = "cuda" if device == "cuda" or (device == "auto" and cuda_reason is None) else "cpu"
    sweep = [threads] if threads is None or isinstance(threads, int) else list(threads)
    config = config or BenchConfig()
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    model = model.float().eval()
    trt_reason = tensorrt_unavailable() if "trt" in backends else None
    ort_device = _ort_device() if "ort" in backends else "cpu"
    devices = {"torch": torch_device, "torch-compile": torch_device, "ort": ort_device, "trt": "cuda"}
    cpu_backends = {b for b in backends if devices[b] == "cpu"}
    uses_gpu = any(devices[b] == "cuda" for b in backends if b != "trt") or ("trt" in backends and not trt_reason)
    result = BenchResult([], config=config)
    if uses_gpu and cuda_reason is None:
        result.ceilings = measure_ceilings()
    elif uses_gpu:
        result.notes.append(f"ceilings not measured: {cuda_reason}")
    rng = np.random.default_rng(seed)

    for shape in shapes:
        n, c, h, w = shape
        batch = rng.random((n, c, h, w), dtype=np.float32)
        with step(f"bench: counting GMACs and the eager float32 reference at {'x'.join(map(str, shape))}"):
            gmacs = model_stats(model, size=(h, w), channels=c).gmacs
            with TorchBackend(model) as eager:
                reference = eager.infer(batch)
        artifacts = _Artifacts(model, model_name, workdir, shape)
        for count, group in thread_groups(backends, sweep, cpu_backends):
            if count:
                torch.set_num_threads(count)
            candidates = []
            for backend in group:
                for precision in precisions:
                    if backend == "ort":
                        candidates.append(_ort_candidate(artifacts, precision, count, ort_device))
                    elif backend == "trt":
                        candidates.append(_trt_candidate(artifacts, precision, trt_reason))
                    else:
                        candidates.append(_torch_candidate(model, backend, precision, torch_device))
            rows = measure(candidates, batch, model=model_name, reference=reference, gmacs_per_image=gmacs,
                           config=config, clock=clock, threads=count,
                           device_memory=device_memory_used_mb if uses_gpu else None, progress=progress)
            for row in rows:
                if row.device != "cpu":
                    row.threads = None  # threads do not apply to a GPU backend
            result.rows += rows
    if result.ceilings:
        apply_ceilings(result.rows, result.ceilings)
    return result
