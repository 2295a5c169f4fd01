"""The interleaved measurement of one group of candidates on one batch.

A group is every backend x precision that shares a model, an input shape and a thread count.
Each candidate is loaded, warmed up by count *and* time (first calls pay for allocation,
autotuning, compilation), then timed A B C A B C ... so that drift on a shared machine hits every
candidate alike instead of whichever happened to run last. The clock is injectable so that the
statistics and the interleaving are tested exactly.

Two latencies are kept apart. **End-to-end** is one ``backend.infer`` call, host array in and host
array out (on a GPU: host->device copy, compute, device->host copy), on the host clock.
**Compute-only** exists where a candidate has a *probe*: a callable that runs the model once on
device-resident data and returns the device's own measure of that run (CUDA events), in ns.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from .stats import Stats, ratio_interval

Clock = Callable[[], int]  # nanoseconds, monotonic
# progress(group, phase, done, total): group names the model/shape/threads, phase what it is doing.
Progress = Callable[[str, str, int, int], None]


class ComputeProbe(Protocol):
    """One device-resident run, timed by the device (CUDA events); the time in nanoseconds."""

    def __call__(self) -> int: ...

    def close(self) -> None: ...


@dataclass
class Candidate:
    """One backend x precision to measure. ``load`` is called once, before the warm-up.

    ``skip`` set means the combination is unavailable here; it is reported, not run.
    ``export_seconds``/``build_seconds`` are filled by whoever prepared the artifact (they are
    one-off costs, reported apart from latency). ``compute`` makes a :class:`ComputeProbe` from
    the loaded backend and the batch; without one, ``compute_reason`` says why there is no
    compute-only figure.
    """

    backend: str
    precision: str = "fp32"
    load: Callable[[], Any] | None = None
    skip: str | None = None
    export_seconds: float | None = None
    build_seconds: float | None = None
    device: str = "cpu"
    compute: Callable[[Any, np.ndarray], ComputeProbe] | None = None
    compute_reason: str | None = None


@dataclass
class BenchConfig:
    """How long to warm up and how many timed iterations per candidate."""

    iterations: int = 20
    warmup_iters: int = 2
    warmup_seconds: float = 0.2

    def __post_init__(self) -> None:
        if self.iterations < 1 or self.warmup_iters < 0 or self.warmup_seconds < 0:
            raise ValueError(f"bad benchmark config {self}")


@dataclass
class Row:
    """One result: a measured candidate, or a skipped one with its reason."""

    model: str
    shape: list[int]
    backend: str
    precision: str
    status: str  # "ok" | "skipped"
    reason: str | None = None
    name: str | None = None  # the backend's own name, e.g. "ort (CPUExecutionProvider)"
    threads: int | None = None  # intra-op threads of CPU backends; None: the library's default
    device: str = "cpu"
    samples_ms: list[float] = field(default_factory=list)
    stats: Stats | None = None
    compute_samples_ms: list[float] = field(default_factory=list)
    compute_stats: Stats | None = None
    compute_reason: str | None = None
    first_call_ms: float | None = None  # cold start: torch.compile's compilation lands here
    images_per_s: float | None = None
    megapixels_per_s: float | None = None
    gmacs_per_image: float | None = None
    gmac_per_s: float | None = None
    compute_gmac_per_s: float | None = None
    peak_share: float | None = None  # achieved GMAC/s over the measured matmul ceiling
    psnr_db: float | None = None
    peak_rss_mb: float | None = None
    device_memory_mb: float | None = None
    export_seconds: float | None = None
    build_seconds: float | None = None
    speedup_vs_eager: float | None = None  # torch fp32 median / this median, same group
    speedup_interval: list[float] | None = None  # p10, p90 of the per-round ratios behind speedup_vs_eager

    @property
    def shape_text(self) -> str:
        return "x".join(map(str, self.shape))


def peak_rss_mb() -> float | None:
    """The process's peak resident set so far (VmHWM), in MiB; ``None`` where unknown.

    It is a process-wide high-water mark: read after a candidate's warm-up, it bounds the memory
    needed to hold every candidate loaded so far plus that one's working set.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    try:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux
    except (ImportError, OSError):
        return None


def one_line(exc: BaseException) -> str:
    """An exception as one short line (a skip reason), its type first."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300]}" if text else type(exc).__name__


def _close(obj: Any) -> None:
    close = getattr(obj, "close", None)
    if close is not None:
        close()


def _max(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else max(a, b)


def measure(
    candidates: Sequence[Candidate],
    batch: np.ndarray,
    *,
    model: str = "model",
    reference: np.ndarray | None = None,
    gmacs_per_image: float | None = None,
    config: BenchConfig | None = None,
    clock: Clock = time.perf_counter_ns,
    threads: int | None = None,
    device_memory: Callable[[], float | None] | None = None,
    order: list[str] | None = None,
    progress: Progress | None = None,
) -> list[Row]:
    """Load, warm up and time ``candidates`` on one ``batch``, interleaved; one :class:`Row` each.

    ``reference`` is eager fp32's output on ``batch`` (for the PSNR column). ``device_memory``
    reads the device memory in use (MiB), sampled after every warm-up call. ``order``, if given,
    receives the label of every timed call in sequence (tests check the interleaving). Rows come
    back in the order of ``candidates``, skipped ones included.
    """
    from irdeploy.core.images import psnr

    config = config or BenchConfig()
    n, _, h, w = batch.shape
    group = f"{model} {'x'.join(map(str, batch.shape))}" + (f" {threads} thr" if threads else "")
    rows = [Row(model, list(batch.shape), c.backend, c.precision, "skipped", c.skip, threads=threads,
                device=c.device, export_seconds=c.export_seconds, build_seconds=c.build_seconds,
                gmacs_per_image=gmacs_per_image, compute_reason=c.compute_reason)
            for c in candidates]
    runners: dict[int, Any] = {}
    probes: dict[int, ComputeProbe] = {}
    outputs: dict[int, np.ndarray] = {}
    if progress:
        progress(group, "loading", 0, 0)
    for i, c in enumerate(candidates):
        if c.skip is not None:
            continue
        if c.load is None:
            rows[i].reason = "no loader given"
            continue
        try:
            runners[i] = c.load()
            rows[i].name = getattr(runners[i], "name", c.backend)
            actual = getattr(runners[i], "device", None)  # where it really runs (ORT may fall back to the CPU)
            if isinstance(actual, str):
                rows[i].device = actual
        except Exception as exc:  # a candidate that cannot load is a result, not a crash
            rows[i].reason = f"failed to load: {one_line(exc)}"
            continue
        if c.compute is not None:
            try:
                probes[i] = c.compute(runners[i], batch)
            except Exception as exc:  # end-to-end still runs; the missing figure says why
                rows[i].compute_reason = f"compute-only probe failed: {one_line(exc)}"

    def drop(i: int, exc: Exception) -> None:
        rows[i].reason = f"failed to run: {one_line(exc)}"
        _close(runners.pop(i))
        if i in probes:
            _close(probes.pop(i))

    # warm-up, round-robin so that every candidate's caches are equally warm
    if progress:
        progress(group, "warm-up", 0, config.iterations * len(runners))
    count = dict.fromkeys(runners, 0)
    spent = dict.fromkeys(runners, 0)
    pending = set(runners)
    while pending:
        for i in [k for k in runners if k in pending]:
            if progress and count[i] == 0:  # first calls allocate, and torch.compile compiles (a minute or more)
                compiles = "; torch.compile compiles now" if candidates[i].backend == "torch-compile" else ""
                progress(group, f"warm-up: first call of {candidates[i].backend} {candidates[i].precision}{compiles}",
                         0, 0)
            t0 = clock()
            try:
                outputs[i] = runners[i].infer(batch)
            except Exception as exc:
                drop(i, exc)
                pending.discard(i)
                continue
            took = clock() - t0
            if count[i] == 0:
                rows[i].first_call_ms = took / 1e6
            spent[i] += took
            count[i] += 1
            if device_memory is not None:
                rows[i].device_memory_mb = _max(rows[i].device_memory_mb, device_memory())
            if count[i] >= config.warmup_iters and spent[i] >= config.warmup_seconds * 1e9:
                pending.discard(i)
                rows[i].peak_rss_mb = peak_rss_mb()
                if i in probes:
                    probes[i]()  # the probe's own first run (device buffers, cached kernels)

    # timed iterations, interleaved A B C A B C ...
    samples: dict[int, list[int]] = {i: [] for i in runners}
    compute: dict[int, list[int]] = {i: [] for i in probes}
    done = 0
    total = config.iterations * len(runners)  # without any candidate the warm-up dropped
    for _ in range(config.iterations):
        for i in list(runners):
            t0 = clock()
            try:
                runners[i].infer(batch)
                samples[i].append(clock() - t0)
                if i in probes:
                    compute[i].append(probes[i]())
            except Exception as exc:
                drop(i, exc)
                continue
            done += 1
            if order is not None:
                order.append(f"{candidates[i].backend}/{candidates[i].precision}")
            if progress:
                progress(group, "timing", done, total)

    for i, runner in runners.items():
        row = rows[i]
        row.status, row.reason = "ok", None
        row.samples_ms = [s / 1e6 for s in samples[i]]
        row.stats = Stats.from_ns(samples[i])
        seconds = row.stats.median / 1e3
        if seconds > 0:
            row.images_per_s = n / seconds
            row.megapixels_per_s = n * h * w / 1e6 / seconds
            if gmacs_per_image is not None:
                row.gmac_per_s = gmacs_per_image * n / seconds
        if i in probes:
            row.compute_samples_ms = [s / 1e6 for s in compute[i]]
            row.compute_stats = Stats.from_ns(compute[i])
            if gmacs_per_image is not None and row.compute_stats.median > 0:
                row.compute_gmac_per_s = gmacs_per_image * n / (row.compute_stats.median / 1e3)
            _close(probes[i])
        if reference is not None:
            row.psnr_db = psnr(outputs[i], reference)
        _close(runner)

    eager = next((r for r in rows if r.status == "ok" and r.backend == "torch" and r.precision == "fp32"), None)
    for row in rows:
        if eager is not None and row.stats is not None and row.stats.median > 0:
            row.speedup_vs_eager = eager.stats.median / row.stats.median
            interval = ratio_interval(eager.samples_ms, row.samples_ms)
            row.speedup_interval = list(interval) if interval else None
    return rows
