"""The torch GPU paths on an NVIDIA GPU without TensorRT: low-precision parity and speed.

For each model (random weights, constants randomized so no block is an identity) at one size:

- eager fp16 / bf16 parity per module family on CUDA (``irdeploy.export.eager_audit`` with
  ``device="cuda"``), to compare with the CPU-emulated policy of the ONNX pass;
- whole-model rows, each with its PSNR against eager float32 on the same GPU (TF32 off) and its
  latency (CUDA events, median of ``--iters`` after warm-up): eager fp32 / fp16 / bf16 (weights
  and input cast), autocast fp16 / bf16,
  ``torch.compile`` fp32 / fp16, and a hand-captured CUDA graph of eager fp16.

Writes ``benchmarks/results/gpu_torch-<gpu>-<date>.{json,md}``. Run from the repository root:
``python benchmarks/gpu_torch.py --models m3snet-32,mhnet,mprnet-deblur --size 256``.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import platform
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from irdeploy.export.eager_audit import eager_audit
from irdeploy.core.images import psnr
from irdeploy.model import create, final_image
from irdeploy.model.init import randomize_constants

RESULTS = Path(__file__).parent / "results"


def cuda_median_ms(fn: Callable[[], object], iters: int, warmup: int = 5) -> float:
    """Median latency of ``fn`` in ms, timed with CUDA events around each call."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def graphed(model: torch.nn.Module, example: torch.Tensor) -> Callable[[], torch.Tensor]:
    """Capture one eager forward pass into a CUDA graph; replays read ``example``'s storage."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream), torch.inference_mode():
        for _ in range(3):  # warm-up on a side stream, as CUDA-graph capture requires
            model(example)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph), torch.inference_mode():
        out = final_image(model(example))

    def replay() -> torch.Tensor:
        graph.replay()
        return out

    return replay


def rows_for(name: str, size: int, iters: int) -> dict:
    torch.manual_seed(0)
    model = randomize_constants(create(name), seed=0).eval().cuda()
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.random((1, 3, size, size), dtype=np.float32)).cuda()
    with torch.inference_mode():
        reference = final_image(model(x)).float().cpu().numpy()

    variants: dict[str, Callable[[], torch.Tensor]] = {}

    def eager(m: torch.nn.Module, inp: torch.Tensor) -> Callable[[], torch.Tensor]:
        def run() -> torch.Tensor:
            with torch.inference_mode():
                return final_image(m(inp))
        return run

    def autocast(dtype: torch.dtype) -> Callable[[], torch.Tensor]:
        def run() -> torch.Tensor:
            with torch.inference_mode(), torch.autocast("cuda", dtype=dtype):
                return final_image(model(x))
        return run

    variants["eager fp32"] = eager(model, x)
    for label, dtype in (("fp16", torch.float16), ("bf16", torch.bfloat16)):
        variants[f"eager {label}"] = eager(copy.deepcopy(model).to(dtype), x.to(dtype))
        variants[f"autocast {label}"] = autocast(dtype)
    variants["compile fp32"] = eager(torch.compile(model), x)
    half = copy.deepcopy(model).half()
    variants["compile fp16"] = eager(torch.compile(half), x.half())
    variants["cuda graph fp16"] = graphed(half, x.half())

    rows = []
    for label, fn in variants.items():
        try:
            out = fn().float().cpu().numpy()
            rows.append({"variant": label, "psnr_db": round(psnr(out, reference), 2),
                         "median_ms": round(cuda_median_ms(fn, iters), 3)})
        except Exception as exc:  # a variant the GPU or torch build cannot run is a row with the reason
            rows.append({"variant": label, "error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"})
    audit = {p: [vars(r) for r in eager_audit(model.cpu(), [x.cpu().numpy()], p, device="cuda")] for p in ("fp16", "bf16")}
    return {"model": name, "size": size, "rows": rows, "eager_audit": audit}


def to_markdown(result: dict) -> str:
    lines = [f"# torch GPU paths on {result['gpu']} ({result['date']})", "",
             f"torch {result['torch']}, CUDA {result['cuda']}, TF32 off; PSNR vs eager fp32 on the same GPU; "
             "latency: CUDA events, median.", ""]
    for m in result["models"]:
        lines += [f"## {m['model']} at {m['size']}x{m['size']}", "", "| variant | PSNR dB | median ms |", "|---|---:|---:|"]
        for r in m["rows"]:
            lines.append(f"| {r['variant']} | {r.get('psnr_db', '-')} | {r.get('median_ms', r.get('error', '-'))} |")
        for precision, rows in m["eager_audit"].items():
            lines += ["", f"{precision}, one module family at a time: " + ", ".join(
                f"{r['family']} {r['psnr']:.1f} dB" for r in rows)]
        lines.append("")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="m3snet-32,mhnet,mprnet-deblur")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--iters", type=int, default=50)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("gpu_torch: error: no CUDA device visible to torch; run this on an NVIDIA GPU machine", file=sys.stderr)
        return 2
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    gpu = torch.cuda.get_device_name()
    result = {"gpu": gpu, "capability": ".".join(map(str, torch.cuda.get_device_capability())),
              "torch": torch.__version__, "cuda": torch.version.cuda, "python": platform.python_version(),
              "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "models": [rows_for(name, args.size, args.iters) for name in args.models.split(",")]}
    stem = f"gpu_torch-{gpu.replace(' ', '_')}-{result['date'][:10]}"
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{stem}.json").write_text(json.dumps(result, indent=1))
    (RESULTS / f"{stem}.md").write_text(to_markdown(result))
    print(to_markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
