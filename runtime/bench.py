"""Latency, throughput and parity of one model across backends and precisions, side by side.

The timing method follows trtexec and Polygraphy, because users pick a setting from these numbers
and they have to survive scrutiny:

- every candidate is loaded, then warmed up until it has run at least ``warmup_iters`` times
  *and* for at least ``warmup_seconds`` (first calls pay for allocation, autotuning, compilation);
- the timed iterations are INTERLEAVED, A B C A B C ..., so that drift on a shared machine (other
  jobs, thermal throttling, frequency scaling) hits every candidate alike instead of whichever
  happened to run last;
- each sample is one end-to-end ``backend.infer`` call (host array in, host array out) timed with
  ``time.perf_counter_ns``; the clock is injectable so the statistics are tested exactly;
- every latency carries the PSNR of that candidate's output against eager fp32, so nobody picks
  a fast but wrong setting;
- combinations that cannot run here (no GPU, no TensorRT, a load or run failure) become rows with
  ``status="skipped"`` and the reason: never silently dropped.

This module imports no torch at import time (the ONNX Runtime and TensorRT backends run on
machines without it); :func:`bench_model` imports it when it needs the eager model.
"""

from __future__ import annotations

import csv
import datetime as dt
import importlib.metadata
import importlib.util
import io
import json
import math
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

Clock = Callable[[], int]  # nanoseconds, monotonic
BACKENDS = ("torch", "torch-compile", "ort", "trt")
PRECISIONS = ("fp32", "fp16", "bf16")


# --------------------------------------------------------------------------------------------
# statistics


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Linear-interpolation percentile (numpy's default), on an already sorted sequence."""
    if not sorted_values:
        raise ValueError("percentile of no samples")
    pos = (len(sorted_values) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


@dataclass(frozen=True)
class Stats:
    """Summary of one candidate's timed samples, in milliseconds.

    The median is the headline figure (robust to the odd preempted run); p90/p99 show the tail a
    serving system sees; min is the best the hardware did; stdev (sample, n-1) shows noise.
    """

    n: int
    median: float
    p90: float
    p99: float
    min: float
    max: float
    mean: float
    stdev: float

    @classmethod
    def from_ns(cls, samples_ns: Sequence[int]) -> Stats:
        ms = sorted(s / 1e6 for s in samples_ns)
        return cls(
            n=len(ms),
            median=percentile(ms, 50),
            p90=percentile(ms, 90),
            p99=percentile(ms, 99),
            min=ms[0],
            max=ms[-1],
            mean=statistics.fmean(ms),
            stdev=statistics.stdev(ms) if len(ms) > 1 else 0.0,
        )


# --------------------------------------------------------------------------------------------
# candidates and the interleaved measurement


@dataclass
class Candidate:
    """One backend x precision to measure. ``load`` is called once, before the warm-up.

    ``skip`` set means the combination is unavailable here; it is reported, not run.
    ``export_seconds``/``build_seconds`` are filled by whoever prepared the artifact (they are
    one-off costs, reported apart from latency).
    """

    backend: str
    precision: str = "fp32"
    load: Callable[[], Any] | None = None
    skip: str | None = None
    export_seconds: float | None = None
    build_seconds: float | None = None


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
    samples_ms: list[float] = field(default_factory=list)
    stats: Stats | None = None
    images_per_s: float | None = None
    megapixels_per_s: float | None = None
    gmacs_per_image: float | None = None
    gmac_per_s: float | None = None
    psnr_db: float | None = None
    peak_rss_mb: float | None = None
    export_seconds: float | None = None
    build_seconds: float | None = None
    speedup_vs_eager: float | None = None  # torch fp32 median / this median, same shape


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


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    from irdeploy.export.images import psnr

    return psnr(a, b)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300]}" if text else type(exc).__name__


def measure(
    candidates: Sequence[Candidate],
    batch: np.ndarray,
    *,
    model: str = "model",
    reference: np.ndarray | None = None,
    gmacs_per_image: float | None = None,
    config: BenchConfig | None = None,
    clock: Clock = time.perf_counter_ns,
    order: list[str] | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[Row]:
    """Load, warm up and time ``candidates`` on one ``batch``, interleaved; one :class:`Row` each.

    ``reference`` is eager fp32's output on ``batch`` (for the PSNR column). ``order``, if
    given, receives the label of every timed call in sequence (tests check the interleaving).
    Rows come back in the order of ``candidates``, skipped ones included.
    """
    config = config or BenchConfig()
    n, _, h, w = batch.shape
    rows = [Row(model, list(batch.shape), c.backend, c.precision, "skipped", c.skip,
                export_seconds=c.export_seconds, build_seconds=c.build_seconds, gmacs_per_image=gmacs_per_image)
            for c in candidates]
    runners: dict[int, Any] = {}
    outputs: dict[int, np.ndarray] = {}
    for i, c in enumerate(candidates):
        if c.skip is not None:
            continue
        if c.load is None:
            rows[i].reason = "no loader given"
            continue
        try:
            runners[i] = c.load()
            rows[i].name = getattr(runners[i], "name", c.backend)
        except Exception as exc:  # a candidate that cannot load is a result, not a crash
            rows[i].reason = f"failed to load: {_one_line(exc)}"

    # warm-up, round-robin so that every candidate's caches are equally warm
    count = dict.fromkeys(runners, 0)
    spent = dict.fromkeys(runners, 0)
    pending = set(runners)
    while pending:
        for i in [k for k in runners if k in pending]:
            t0 = clock()
            try:
                outputs[i] = runners[i].infer(batch)
            except Exception as exc:
                rows[i].reason = f"failed to run: {_one_line(exc)}"
                _close(runners.pop(i))
                pending.discard(i)
                continue
            spent[i] += clock() - t0
            count[i] += 1
            if count[i] >= config.warmup_iters and spent[i] >= config.warmup_seconds * 1e9:
                pending.discard(i)
                rows[i].peak_rss_mb = peak_rss_mb()
    if progress:
        progress(f"{model} {'x'.join(map(str, batch.shape))}: warmed up {len(runners)} candidate(s)")

    # timed iterations, interleaved A B C A B C ...
    samples: dict[int, list[int]] = {i: [] for i in runners}
    for it in range(config.iterations):
        for i, runner in runners.items():
            t0 = clock()
            runner.infer(batch)
            samples[i].append(clock() - t0)
            if order is not None:
                order.append(f"{candidates[i].backend}/{candidates[i].precision}")
        if progress:
            progress(f"{model} {'x'.join(map(str, batch.shape))}: iteration {it + 1}/{config.iterations}")

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
        if reference is not None:
            row.psnr_db = _psnr(outputs[i], reference)
        _close(runner)

    eager = next((r for r in rows if r.status == "ok" and r.backend == "torch" and r.precision == "fp32"), None)
    for row in rows:
        if eager is not None and row.stats is not None and row.stats.median > 0:
            row.speedup_vs_eager = eager.stats.median / row.stats.median
    return rows


def _close(runner: Any) -> None:
    close = getattr(runner, "close", None)
    if close is not None:
        close()


# --------------------------------------------------------------------------------------------
# the machine, the results and their files


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (Linux), else what :mod:`platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict[str, Any]:
    """What a reader needs to judge or reproduce a result: hardware, software, date."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    versions = {d: _version(d) for d in ("irdeploy", "torch", "onnxruntime", "onnx", "numpy",
                                          "tensorrt", "tensorrt-rtx-cu13")}
    return {
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "usable_cores": usable,
        "machine": platform.machine(),
        "system": platform.platform(),
        "python": platform.python_version(),
        "versions": {k: v for k, v in versions.items() if v is not None},
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }


CSV_FIELDS = ("model", "shape", "backend", "precision", "status", "reason", "name", "median_ms", "p90_ms",
              "p99_ms", "min_ms", "stdev_ms", "mean_ms", "n", "images_per_s", "megapixels_per_s",
              "gmacs_per_image", "gmac_per_s", "psnr_db", "speedup_vs_eager", "peak_rss_mb",
              "export_seconds", "build_seconds")


def _fmt(value: float | None, spec: str) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    return format(value, spec)


@dataclass
class BenchResult:
    """Every row plus the machine and the method; writes ``results.json/.csv/.md``."""

    rows: list[Row]
    machine: dict[str, Any] = field(default_factory=machine_info)
    config: BenchConfig = field(default_factory=BenchConfig)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        def clean(v: Any) -> Any:  # JSON has no inf
            if isinstance(v, float) and math.isinf(v):
                return "inf"
            if isinstance(v, dict):
                return {k: clean(x) for k, x in v.items()}
            if isinstance(v, list):
                return [clean(x) for x in v]
            return v

        return clean({"machine": self.machine, "config": asdict(self.config), "notes": self.notes,
                      "method": "end-to-end host->host infer() calls, perf_counter_ns, interleaved",
                      "rows": [asdict(r) for r in self.rows]})

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BenchResult:
        """Read back :meth:`to_dict` (e.g. a committed ``results.json``, to merge runs or make tables)."""

        def num(v: Any) -> Any:
            return math.inf if v == "inf" else v

        rows = []
        for r in data["rows"]:
            r = {k: num(v) for k, v in r.items()}
            r["stats"] = Stats(**r["stats"]) if r.get("stats") else None
            rows.append(Row(**r))
        return cls(rows, machine=data["machine"], config=BenchConfig(**data["config"]), notes=list(data.get("notes", [])))

    def csv_rows(self) -> list[dict[str, Any]]:
        out = []
        for r in self.rows:
            s = r.stats
            out.append({
                "model": r.model, "shape": "x".join(map(str, r.shape)), "backend": r.backend,
                "precision": r.precision, "status": r.status, "reason": r.reason or "", "name": r.name or "",
                "median_ms": s and s.median, "p90_ms": s and s.p90, "p99_ms": s and s.p99, "min_ms": s and s.min,
                "stdev_ms": s and s.stdev, "mean_ms": s and s.mean, "n": s and s.n,
                "images_per_s": r.images_per_s, "megapixels_per_s": r.megapixels_per_s,
                "gmacs_per_image": r.gmacs_per_image, "gmac_per_s": r.gmac_per_s, "psnr_db": r.psnr_db,
                "speedup_vs_eager": r.speedup_vs_eager, "peak_rss_mb": r.peak_rss_mb,
                "export_seconds": r.export_seconds, "build_seconds": r.build_seconds,
            })
        return out

    def to_csv(self) -> str:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, CSV_FIELDS, lineterminator="\n")
        writer.writeheader()
        for row in self.csv_rows():
            writer.writerow({k: "" if v is None else v for k, v in row.items()})
        return buf.getvalue()

    def to_markdown(self, title: str = "irdeploy bench") -> str:
        m = self.machine
        versions = ", ".join(f"{k} {v}" for k, v in m.get("versions", {}).items())
        lines = [
            f"# {title}", "",
            f"{m.get('date', '?')}; {m.get('cpu', '?')}, {m.get('usable_cores', '?')} usable core(s) "
            f"of {m.get('cpu_count', '?')}; {versions}.", "",
            f"Median of n interleaved end-to-end runs after a warm-up of at least "
            f"{self.config.warmup_iters} run(s) and {self.config.warmup_seconds:g} s per candidate. "
            "PSNR is against eager torch fp32 on the same input; `vs eager` is eager fp32's median over this one.",
            "",
            "| model | shape | backend | precision | n | median ms | p90 ms | p99 ms | min ms | stdev ms | img/s "
            "| MP/s | GMAC/s | PSNR dB | vs eager | peak RSS MiB | export s | status |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in self.rows:
            s = r.stats
            status = "ok" if r.status == "ok" else f"skipped: {r.reason}"
            lines.append(
                f"| {r.model} | {'x'.join(map(str, r.shape))} | {r.backend} | {r.precision} | {s.n if s else '-'} "
                f"| {_fmt(s and s.median, '.1f')} | {_fmt(s and s.p90, '.1f')} | {_fmt(s and s.p99, '.1f')} "
                f"| {_fmt(s and s.min, '.1f')} | {_fmt(s and s.stdev, '.1f')} | {_fmt(r.images_per_s, '.2f')} "
                f"| {_fmt(r.megapixels_per_s, '.3f')} | {_fmt(r.gmac_per_s, '.1f')} | {_fmt(r.psnr_db, '.1f')} "
                f"| {_fmt(r.speedup_vs_eager, '.2f')}x | {_fmt(r.peak_rss_mb, '.0f')} "
                f"| {_fmt(r.export_seconds, '.1f')} | {status} |".replace("| -x |", "| - |"))
        if self.notes:
            lines += ["", *[f"- {note}" for note in self.notes]]
        return "\n".join(lines) + "\n"

    def write(self, out_dir: str | os.PathLike, stem: str = "results", title: str = "irdeploy bench") -> list[Path]:
        """Write ``<stem>.json`` (every sample), ``<stem>.csv`` and ``<stem>.md``; return the paths."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = [out / f"{stem}.json", out / f"{stem}.csv", out / f"{stem}.md"]
        paths[0].write_text(json.dumps(self.to_dict(), indent=1) + "\n")
        paths[1].write_text(self.to_csv())
        paths[2].write_text(self.to_markdown(title))
        return paths


# --------------------------------------------------------------------------------------------
# a model across backends, precisions and shapes


def parse_shape(text: str) -> tuple[int, int, int, int]:
    """``"1x3x256x256"`` -> ``(1, 3, 256, 256)``."""
    try:
        dims = tuple(int(d) for d in text.lower().split("x"))
    except ValueError:
        dims = ()
    if len(dims) != 4 or min(dims) < 1:
        raise ValueError(f"bad shape {text!r}: expected NxCxHxW, e.g. 1x3x256x256")
    return dims  # type: ignore[return-value]


def tensorrt_unavailable() -> str | None:
    """Why TensorRT cannot run here, or ``None`` if it can (an NVIDIA GPU and TensorRT)."""
    if importlib.util.find_spec("tensorrt") is None and importlib.util.find_spec("tensorrt_rtx") is None:
        return "TensorRT is not installed (pip install irdeploy[gpu] or [rtx])"
    try:
        from irdeploy.runtime.tensorrt.device import current_gpu

        current_gpu()
    except Exception as exc:
        return f"no usable NVIDIA GPU ({_one_line(exc)})"
    return None


def bench_model(
    model: Any,
    *,
    model_name: str,
    workdir: str | os.PathLike,
    backends: Sequence[str] = ("torch", "ort"),
    precisions: Sequence[str] = ("fp32",),
    shapes: Sequence[Sequence[int]] = ((1, 3, 256, 256),),
    threads: int | None = None,
    config: BenchConfig | None = None,
    clock: Clock = time.perf_counter_ns,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> BenchResult:
    """Measure every backend x precision of ``model`` at every shape; one interleaved group per shape.

    ``workdir`` receives the ONNX graphs (exported per shape, static, so ONNX Runtime can plan
    memory and fold shapes) and any TensorRT engines. ``threads`` sets both torch's and ONNX
    Runtime's intra-op threads so the comparison is like for like. GMACs are counted once per
    shape with :func:`irdeploy.model.stats.model_stats`.
    """
    import torch

    from irdeploy.model.stats import model_stats
    from irdeploy.runtime.backends import OnnxRuntimeBackend, TensorRTBackend, TorchBackend

    for b in backends:
        if b not in BACKENDS:
            raise ValueError(f"unknown backend {b!r}; choose from {', '.join(BACKENDS)}")
    for p in precisions:
        if p not in PRECISIONS:
            raise ValueError(f"unknown precision {p!r}; choose from {', '.join(PRECISIONS)}")
    if threads:
        torch.set_num_threads(threads)
    config = config or BenchConfig()
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    model = model.float().eval()
    trt_reason = tensorrt_unavailable() if "trt" in backends else None
    rows: list[Row] = []
    rng = np.random.default_rng(seed)

    for shape in shapes:
        n, c, h, w = shape
        batch = rng.random((n, c, h, w), dtype=np.float32)
        gmacs = model_stats(model, size=(h, w), channels=c).gmacs
        with TorchBackend(model) as eager:
            reference = eager.infer(batch)
        onnx_cache: dict[str, tuple[Path, float | None]] = {}

        def onnx_for(precision: str) -> tuple[Path, float | None]:
            if precision not in onnx_cache:
                from irdeploy.export import to_onnx

                path = workdir / f"{model_name}-{'x'.join(map(str, shape))}-{precision}.onnx"
                if path.exists():
                    path.unlink()
                report = to_onnx(model, path, static_shape=(n, h, w), precision=precision, tensorrt=False,
                                 channels=c)
                onnx_cache[precision] = (path, report.seconds)
            return onnx_cache[precision]

        candidates: list[Candidate] = []
        for backend in backends:
            for precision in precisions:
                cand = Candidate(backend, precision)
                candidates.append(cand)
                if backend in ("torch", "torch-compile"):
                    if precision != "fp32":
                        cand.skip = f"{backend} {precision} is not measured yet (fp32 only)"
                    else:
                        cand.load = (lambda compile: lambda: TorchBackend(model, compile=compile))(
                            backend == "torch-compile")
                elif backend == "ort":
                    try:
                        path, cand.export_seconds = onnx_for(precision)
                    except Exception as exc:
                        cand.skip = f"export failed: {_one_line(exc)}"
                        continue
                    cand.load = (lambda p: lambda: OnnxRuntimeBackend(p, threads=threads))(path)
                elif backend == "trt":
                    if trt_reason:
                        cand.skip = trt_reason
                        continue
                    try:  # built from the fp32 graph: the engine's precision is the builder's choice
                        from irdeploy.runtime.tensorrt import build_engine

                        path, cand.export_seconds = onnx_for("fp32")
                        built = build_engine(path, path.with_suffix(f".{precision}.engine"), precision=precision)
                        cand.build_seconds = built.seconds
                    except Exception as exc:
                        cand.skip = f"engine build failed: {_one_line(exc)}"
                        continue
                    cand.load = (lambda p: lambda: TensorRTBackend(p))(built.engine_path)
        rows += measure(candidates, batch, model=model_name, reference=reference, gmacs_per_image=gmacs,
                        config=config, clock=clock, progress=progress)
    return BenchResult(rows, config=config)
