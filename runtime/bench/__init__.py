"""Latency, throughput and parity of one model across backends and precisions, side by side.

The timing method follows trtexec and Polygraphy, because users pick a setting from these numbers
and they have to survive scrutiny:

- every candidate is loaded, then warmed up until it has run at least ``warmup_iters`` times
  *and* for at least ``warmup_seconds``; the first call's time is kept (the cold start, where
  torch.compile compiles);
- the timed iterations are INTERLEAVED, A B C A B C ..., so that drift on a shared machine hits
  every candidate alike (:mod:`.measure`);
- end-to-end (one host->host ``backend.infer`` call, ``perf_counter_ns``) and, on a GPU,
  compute-only (device-resident input, CUDA events) are kept apart (:mod:`.gpu`);
- every latency carries the PSNR of that candidate's output against eager fp32, so nobody picks
  a fast but wrong setting; GMACs per image give achieved GMAC/s and, on a GPU, its share of the
  matmul ceiling measured in the same run;
- combinations that cannot run here (no GPU, no TensorRT, a precision a device lacks, a load or
  run failure) become rows with ``status="skipped"`` and the reason: never silently dropped;
- a thread sweep (``threads=[1, 2]``) measures the CPU backends once per thread count (:mod:`.plan`).

Results (:mod:`.results`) go to JSON with every sample, CSV, Markdown and a PNG chart
(:mod:`.chart`); the terminal gets a rich table and a progress bar (:mod:`.console`).

Importing this package imports no torch (the ONNX Runtime and TensorRT backends run on machines
without it); :func:`bench_model` imports it when it needs the eager model.
"""

from .measure import BenchConfig, Candidate, Clock, ComputeProbe, Progress, Row, measure, peak_rss_mb
from .plan import BACKENDS, CastTorchBackend, bench_model, parse_threads, tensorrt_unavailable, thread_groups
from .results import CSV_FIELDS, BenchResult, cpu_name, machine_info, summary_markdown
from .stats import Stats, copy_gbps, matmul_tflops, peak_gmac_per_s, percentile, share_of_peak

__all__ = [
    "BACKENDS",
    "CSV_FIELDS",
    "BenchConfig",
    "BenchResult",
    "Candidate",
    "CastTorchBackend",
    "Clock",
    "ComputeProbe",
    "Progress",
    "Row",
    "Stats",
    "bench_model",
    "copy_gbps",
    "cpu_name",
    "machine_info",
    "matmul_tflops",
    "measure",
    "parse_threads",
    "peak_gmac_per_s",
    "peak_rss_mb",
    "percentile",
    "share_of_peak",
    "summary_markdown",
    "tensorrt_unavailable",
    "thread_groups",
]
