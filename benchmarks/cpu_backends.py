"""Eager PyTorch vs ONNX Runtime on CPU, fp32, side by side (issue 5's first CPU result).

For each model (random weights; the constants upstream initialises to 0/1 - NAFBlock beta/gamma,
LayerNorm affine, attention temperatures, MHNet mixing weights - randomised too, so no block is an
identity) and each size, :func:`irdeploy.runtime.bench.bench_model` times eager torch and ONNX
Runtime interleaved (A B A B ...), with the same thread count for both (one interleaved group per
count of ``--threads``, e.g. ``--threads 1,2``):

- eager: ``torch.set_num_threads(threads)``, ``inference_mode``;
- ORT: the graph from ``to_onnx(model, static_shape=(1, S, S), tensorrt=False)``, CPU provider,
  default ``ORT_ENABLE_ALL`` graph optimisations, ``intra_op_num_threads=threads``.

Usage: python benchmarks/cpu_backends.py [--models m3snet-32,mhnet,mprnet-derain] [--sizes 256,512]
       [--threads 2] [--runs 256:10,512:5]
Writes benchmarks/results/cpu_backends-<date>.{json,csv,md,png} (after every configuration, so a
partial run still leaves its results); then python benchmarks/readme_table.py updates the README.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from irdeploy.model import create
from irdeploy.model.init import randomize_constants
from irdeploy.runtime.bench import BenchConfig, BenchResult, bench_model, machine_info, parse_threads

RESULTS = Path(__file__).parent / "results"
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="m3snet-32,mhnet,mprnet-derain")
    parser.add_argument("--sizes", default="256,512")
    parser.add_argument("--threads", default="2", help="thread counts, comma-separated (default: %(default)s)")
    parser.add_argument("--runs", default="256:10,512:5", help="timed iterations per size, SIZE:N,...")
    parser.add_argument("--warmup", type=int, default=1, help="warm-up runs per candidate")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--append", action="store_true", help="add to today's result files instead of replacing them")
    args = parser.parse_args(argv)
    runs = {int(k): int(v) for k, v in (item.split(":") for item in args.runs.split(","))}
    threads = parse_threads(args.threads)
    date = dt.date.today().isoformat()
    stem = f"cpu_backends-{date}"
    previous = args.out / f"{stem}.json"
    if args.append and previous.exists():
        result = BenchResult.from_dict(json.loads(previous.read_text()))
    else:
        result = BenchResult([], machine=machine_info(), config=BenchConfig())
        result.notes.append(f"eager torch vs ONNX Runtime (CPUExecutionProvider, ORT_ENABLE_ALL), fp32, "
                            f"{args.threads} threads each; static 1x3xSxS graphs; random weights, constants randomised")
    result.notes.append(f"{args.models}: timed iterations per size: " + ", ".join(f"{s}: {n}" for s, n in runs.items())
                        + f"; warm-up {args.warmup} runs per candidate")
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            torch.manual_seed(0)
            model = randomize_constants(create(name)).eval()
            for size in (int(s) for s in args.sizes.split(",")):
                config = BenchConfig(iterations=runs.get(size, 5), warmup_iters=args.warmup, warmup_seconds=0.0)
                print(f"[{time.perf_counter() - start:6.0f}s] {name} {size}x{size} ...", flush=True)
                part = bench_model(model, model_name=name, workdir=tmp, backends=("torch", "ort"),
                                   shapes=[(1, 3, size, size)], threads=threads, config=config, device="cpu")
                result.rows += part.rows
                result.config = config
                for row in part.rows:
                    s = row.stats
                    print(f"    {row.backend:<6} {row.threads} thr {row.status:<8} "
                          f"median {s.median if s else float('nan'):9.1f} ms  "
                          f"psnr {row.psnr_db}  export {row.export_seconds}  {row.reason or ''}", flush=True)
                result.write(args.out, stem=stem, title="CPU: eager torch vs ONNX Runtime, fp32")
    print(f"done in {time.perf_counter() - start:.0f} s; wrote {args.out}/{stem}.*")
    return 0


if __name__ == "__main__":
    sys.exit(main())
