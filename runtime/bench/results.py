"""A benchmark's results: the machine it ran on, its rows, and the files and tables made from them.

``results.json`` keeps every sample so that a result can be re-read, merged or re-rendered later
(the README's table is generated from the committed JSON files, never typed by hand).
"""

from __future__ import annotations

import csv
import datetime as dt
import importlib.metadata
import io
import json
import math
import os
import platform
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from irdeploy.core.fileio import json_ready

from .measure import BenchConfig, Row
from .stats import UNSTABLE_HINT, Stats

METHOD = ("interleaved A B C A B C ... after a warm-up by count and time; end-to-end = one host->host "
          "infer() call on perf_counter_ns; compute-only = one run on device-resident data timed with "
          "CUDA events (GPU backends only)")


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
    versions = {d: _version(d) for d in ("irdeploy", "torch", "onnxruntime", "onnxruntime-gpu", "onnx", "numpy",
                                          "tensorrt", "tensorrt-rtx-cu13", "cuda-bindings")}
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


def fmt(value: float | None, spec: str) -> str:
    """A table cell: ``-`` for a missing figure, ``inf`` for identical outputs' PSNR."""
    if value is None:
        return "-"
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    return format(value, spec)


def status_text(row: Row) -> str:
    return "ok" if row.status == "ok" else f"skipped: {row.reason}"


def spread_text(row: Row) -> str:
    """(p90 - p10) / median in percent, marked when above the unstable threshold."""
    spread = row.stats.spread if row.stats else None
    if spread is None:
        return "-"
    return f"{100 * spread:.0f}" + (" unstable" if row.stats.unstable else "")


# (header, cell) for every column of the tables; the terminal shows a subset (console.py).
Cell = Callable[[Row], str]
COLUMNS: dict[str, Cell] = {
    "model": lambda r: r.model,
    "shape": lambda r: r.shape_text,
    "threads": lambda r: fmt(r.threads, "d"),
    "backend": lambda r: r.backend,
    "precision": lambda r: r.precision,
    "device": lambda r: r.device,
    "n": lambda r: fmt(r.stats and r.stats.n, "d"),
    "median ms": lambda r: fmt(r.stats and r.stats.median, ".1f"),
    "p10 ms": lambda r: fmt(r.stats and r.stats.p10, ".1f"),
    "p90 ms": lambda r: fmt(r.stats and r.stats.p90, ".1f"),
    "p99 ms": lambda r: fmt(r.stats and r.stats.p99, ".1f"),
    "min ms": lambda r: fmt(r.stats and r.stats.min, ".1f"),
    "stdev ms": lambda r: fmt(r.stats and r.stats.stdev, ".1f"),
    "spread %": lambda r: spread_text(r),
    "compute ms": lambda r: fmt(r.compute_stats and r.compute_stats.median, ".2f"),
    "img/s": lambda r: fmt(r.images_per_s, ".2f"),
    "MP/s": lambda r: fmt(r.megapixels_per_s, ".3f"),
    "GMAC/s": lambda r: fmt(r.gmac_per_s, ".1f"),
    "% peak": lambda r: fmt(r.peak_share and 100 * r.peak_share, ".1f"),
    "PSNR dB": lambda r: fmt(r.psnr_db, ".1f"),
    "vs eager": lambda r: fmt(r.speedup_vs_eager, ".2f") + ("x" if r.speedup_vs_eager is not None else ""),
    "vs eager p10-p90": lambda r: "-" if not r.speedup_interval else "{:.2f}-{:.2f}x".format(*r.speedup_interval),
    "peak RSS MiB": lambda r: fmt(r.peak_rss_mb, ".0f"),
    "device MiB": lambda r: fmt(r.device_memory_mb, ".0f"),
    "first call s": lambda r: fmt(r.first_call_ms and r.first_call_ms / 1e3, ".2f"),
    "export s": lambda r: fmt(r.export_seconds, ".1f"),
    "build s": lambda r: fmt(r.build_seconds, ".1f"),
    "status": status_text,
}

CSV_FIELDS = ("model", "shape", "threads", "backend", "precision", "device", "status", "reason", "name",
              "median_ms", "p10_ms", "p90_ms", "p99_ms", "min_ms", "stdev_ms", "mean_ms", "n", "compute_median_ms",
              "compute_p90_ms", "compute_min_ms", "compute_reason", "first_call_ms", "images_per_s",
              "megapixels_per_s", "gmacs_per_image", "gmac_per_s", "compute_gmac_per_s", "peak_share", "psnr_db",
              "speedup_vs_eager", "speedup_p10", "speedup_p90", "spread", "peak_rss_mb", "device_memory_mb", "export_seconds", "build_seconds")


def _row_from_dict(data: dict[str, Any]) -> Row:
    r = {k: math.inf if v == "inf" else v for k, v in data.items()}
    for key in ("stats", "compute_stats"):
        r[key] = Stats(**r[key]) if r.get(key) else None
    return Row(**r)


@dataclass
class BenchResult:
    """Every row plus the machine, the method and (on a GPU) the measured ceilings.

    ``ceilings``: ``{"gpu": name, "matmul_tflops": {precision: TFLOP/s}, "copy_gbps": GB/s}``
    measured in the same run, or ``None`` where there is no CUDA device.
    """

    rows: list[Row]
    machine: dict[str, Any] = field(default_factory=machine_info)
    config: BenchConfig = field(default_factory=BenchConfig)
    notes: list[str] = field(default_factory=list)
    ceilings: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return json_ready({"machine": self.machine, "config": asdict(self.config), "notes": self.notes,
                           "method": METHOD, "ceilings": self.ceilings, "rows": [asdict(r) for r in self.rows]})

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BenchResult:
        """Read back :meth:`to_dict` (a committed ``results.json``, to merge runs or make tables).
        Files written before a field existed read back with that field empty."""
        return cls([_row_from_dict(r) for r in data["rows"]], machine=data["machine"],
                   config=BenchConfig(**data["config"]), notes=list(data.get("notes", [])),
                   ceilings=data.get("ceilings"))

    @classmethod
    def read(cls, path: str | os.PathLike) -> BenchResult:
        return cls.from_dict(json.loads(Path(path).read_text()))

    def csv_rows(self) -> list[dict[str, Any]]:
        out = []
        for r in self.rows:
            s, c = r.stats, r.compute_stats
            out.append({
                "model": r.model, "shape": r.shape_text, "threads": r.threads, "backend": r.backend,
                "precision": r.precision, "device": r.device, "status": r.status, "reason": r.reason or "",
                "name": r.name or "", "median_ms": s and s.median, "p10_ms": s and s.p10, "p90_ms": s and s.p90, "p99_ms": s and s.p99,
                "min_ms": s and s.min, "stdev_ms": s and s.stdev, "mean_ms": s and s.mean, "n": s and s.n,
                "compute_median_ms": c and c.median, "compute_p90_ms": c and c.p90, "compute_min_ms": c and c.min,
                "compute_reason": r.compute_reason or "", "first_call_ms": r.first_call_ms,
                "images_per_s": r.images_per_s, "megapixels_per_s": r.megapixels_per_s,
                "gmacs_per_image": r.gmacs_per_image, "gmac_per_s": r.gmac_per_s,
                "compute_gmac_per_s": r.compute_gmac_per_s, "peak_share": r.peak_share, "psnr_db": r.psnr_db,
                "speedup_vs_eager": r.speedup_vs_eager, "speedup_p10": r.speedup_interval and r.speedup_interval[0],
                "speedup_p90": r.speedup_interval and r.speedup_interval[1], "spread": s and s.spread,
                "peak_rss_mb": r.peak_rss_mb,
                "device_memory_mb": r.device_memory_mb, "export_seconds": r.export_seconds,
                "build_seconds": r.build_seconds,
            })
        return out

    def to_csv(self) -> str:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, CSV_FIELDS, lineterminator="\n")
        writer.writeheader()
        for row in self.csv_rows():
            writer.writerow({k: "" if v is None else v for k, v in row.items()})
        return buf.getvalue()

    def machine_line(self) -> str:
        m = self.machine
        versions = ", ".join(f"{k} {v}" for k, v in m.get("versions", {}).items())
        return (f"{m.get('date', '?')}; {m.get('cpu', '?')}, {m.get('usable_cores', '?')} usable core(s) "
                f"of {m.get('cpu_count', '?')}; {versions}")

    def ceilings_line(self) -> str:
        """The measured GPU ceilings, or why there are none."""
        c = self.ceilings
        if not c:
            return "Ceilings: not measured (no candidate ran on a CUDA device), so no `% peak` figures."
        peaks = ", ".join(f"{p} {t:.1f}" for p, t in c["matmul_tflops"].items())
        return (f"Ceilings measured in this run on {c['gpu']}: matmul TFLOP/s {peaks}; device-to-device copy "
                f"{c['copy_gbps']:.0f} GB/s (read + write). `% peak` is compute-only GMAC/s over the matmul "
                "ceiling of the row's precision (1 MAC = 2 FLOP).")

    def to_markdown(self, title: str = "irdeploy bench") -> str:
        lines = [
            f"# {title}", "", self.machine_line() + ".", "",
            f"Median of n interleaved end-to-end runs after a warm-up of at least {self.config.warmup_iters} "
            f"run(s) and {self.config.warmup_seconds:g} s per candidate; `compute ms` is the compute-only "
            "median (device-resident input, CUDA events). PSNR is against eager torch fp32 on the same input; "
            "`vs eager` is eager fp32's median over this one, same shape and thread count; `first call` is the "
            "cold first run (torch.compile compiles there).", "", self.ceilings_line(), "",
            "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS),
        ]
        lines += ["| " + " | ".join(cell(r) for cell in COLUMNS.values()) + " |" for r in self.rows]
        reasons = sorted({r.compute_reason for r in self.rows if r.status == "ok" and r.compute_reason})
        notes = self.notes + [f"no compute-only figure: {reason}" for reason in reasons]
        if any(r.stats and r.stats.unstable for r in self.rows):
            notes.append(UNSTABLE_HINT)
        if notes:
            lines += ["", *[f"- {note}" for note in notes]]
        return "\n".join(lines) + "\n"

    def write(self, out_dir: str | os.PathLike, stem: str = "results", title: str = "irdeploy bench",
              chart: bool = True) -> list[Path]:
        """Write ``<stem>.json`` (every sample), ``.csv``, ``.md`` and (``chart``) the ``.png`` chart.

        Each file goes through a temporary name and a rename: an interrupted run never leaves a
        truncated file behind.
        """
        from irdeploy.core.fileio import atomic_write

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        contents = {
            f"{stem}.json": json.dumps(self.to_dict(), indent=1) + "\n",
            f"{stem}.csv": self.to_csv(),
            f"{stem}.md": self.to_markdown(title),
        }
        paths = []
        for name, text in contents.items():
            atomic_write(out / name, text.encode())
            paths.append(out / name)
        if chart:
            from .chart import render_png

            atomic_write(out / f"{stem}.png", render_png(self, title))
            paths.append(out / f"{stem}.png")
        return paths


def summary_markdown(results: Sequence[tuple[str, BenchResult]]) -> str:
    """The README's performance table: every measured row of ``(file name, result)`` pairs.

    One table for all files (model, shape, threads, backend, precision, end-to-end median and p90,
    compute-only median and share of the GPU's peak where measured, speed-up over eager fp32,
    PSNR, the file; a skipped row's reason stands in its median), then one line per file with its
    machine and date.
    """
    head = ["model", "shape", "threads", "backend", "precision", "median ms", "p90 ms", "compute ms", "% peak",
            "vs eager", "PSNR dB"]
    lines = ["| " + " | ".join(head) + " | source |", "|" + "---|" * (len(head) + 1)]
    for name, result in results:
        for r in result.rows:
            cells = [COLUMNS[h](r) for h in head]
            if r.status != "ok":  # the reason in place of the missing latency
                cells[head.index("median ms")] = status_text(r)
            lines.append("| " + " | ".join(cells) + f" | `{name}` |")
    lines.append("")
    lines += [f"- `{name}`: {result.machine_line()}." for name, result in results]
    return "\n".join(lines) + "\n"
