"""Which graph forms should `irdeploy export` emit? Measured, side by side.

Exports one model (default M3SNet-32, static 1x3xSxS) in several forms and, for each, records
ONNX Runtime CPU latency (interleaved A B C A B C ... so drift hits all forms alike), the op
histogram and, where TensorRT-RTX is installed, the parsed network's layer histogram:

- ``ln-transpose + matmul``: LayerNorm as Transpose -> LayerNormalization -> Transpose (default);
- ``ln-transpose + onnx23``: the same with the opset-23 ``Attention`` operator;
- ``ln-channel-axis + matmul``: LayerNorm written over the channel axis in place (ReduceMean over
  C, no transposes; the decomposed form the export otherwise refuses), the alternative layout.

Usage: python benchmarks/export_forms.py [--model m3snet-32] [--size 256] [--threads 2] [--runs 30]
Writes benchmarks/results/export_forms-<date>.json and .md.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

from irdeploy.export import to_onnx
from irdeploy.export import graph
from irdeploy.core.padding import pad_batch
from irdeploy.model import create
from irdeploy.model.init import randomize_constants
from irdeploy.model.layers import LayerNorm2d
from irdeploy.runtime.bench import cpu_name

RESULTS = Path(__file__).parent / "results"


@contextlib.contextmanager
def channel_axis_layernorm() -> Iterator[None]:
    """Temporarily write LayerNorm2d as mean/variance over dim 1 (no transposes)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mu = x.mean(1, keepdim=True)
        var = (x - mu).pow(2).mean(1, keepdim=True)
        y = (x - mu) / torch.sqrt(var + self.eps)
        return self.weight.view(1, -1, 1, 1) * y + self.bias.view(1, -1, 1, 1)

    original = LayerNorm2d.forward
    LayerNorm2d.forward = forward
    try:
        yield
    finally:
        LayerNorm2d.forward = original


def tensorrt_layers(path: Path) -> dict[str, int] | str:
    try:
        from irdeploy.core.tensorrt import TensorRTUnavailable
        from irdeploy.export.tensorrt_check import check_onnx
    except ImportError as exc:
        return f"unavailable: {exc}"
    try:
        return dict(check_onnx(path.read_bytes()).layers)
    except TensorRTUnavailable as exc:
        return f"unavailable: {exc}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="m3snet-32")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    model = randomize_constants(create(args.model)).eval()
    forms = {
        "ln-transpose + matmul": (contextlib.nullcontext, "matmul"),
        "ln-transpose + onnx23": (contextlib.nullcontext, "onnx23"),
        "ln-channel-axis + matmul": (channel_axis_layernorm, "matmul"),
    }
    work = Path(tempfile.mkdtemp(prefix="irdeploy-forms-"))
    x = np.random.default_rng(0).random((1, 3, args.size, args.size), dtype=np.float32)
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    sessions, rows = {}, {}
    for label, (context, attention) in forms.items():
        path = work / f"{label.replace(' + ', '_')}.onnx"
        with context():
            report = to_onnx(model, path, static_shape=(args.size, args.size), attention=attention, tensorrt=False)
        proto = onnx.load(path)
        sessions[label] = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        rows[label] = {
            "ops": dict(graph.op_histogram(proto)),
            "nodes": report.node_count,
            "parity_max_abs": report.parity.max_abs,
            "tensorrt_layers": tensorrt_layers(path),
            "times_ms": [],
        }
    feed = {"input": pad_batch(x, model.pad_multiple)}
    for session in sessions.values():  # warm-up
        for _ in range(3):
            session.run(None, feed)
    for _ in range(args.runs):
        for label, session in sessions.items():
            start = time.perf_counter_ns()
            session.run(None, feed)
            rows[label]["times_ms"].append((time.perf_counter_ns() - start) / 1e6)
    base = statistics.median(rows["ln-transpose + matmul"]["times_ms"])
    for row in rows.values():
        row["median_ms"] = statistics.median(row["times_ms"])
        row["vs_default"] = row["median_ms"] / base

    result = {
        "what": "ONNX Runtime CPU latency and graph/TensorRT layer counts per export form",
        "model": args.model, "input": [1, 3, args.size, args.size], "threads": args.threads, "runs": args.runs,
        "date": dt.date.today().isoformat(), "machine": cpu_name(),
        "cpu_count": __import__("os").cpu_count(), "python": sys.version.split()[0],
        "versions": {"torch": torch.__version__, "onnxruntime": ort.__version__, "onnx": onnx.__version__},
        "forms": rows,
    }
    RESULTS.mkdir(exist_ok=True)
    stem = RESULTS / f"export_forms-{args.model}-{args.size}-{result['date']}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=1))
    lines = [f"# Export forms: {args.model}, 1x3x{args.size}x{args.size}, ONNX Runtime CPU, {args.threads} threads",
             "", f"{result['date']}, {result['machine']}, torch {torch.__version__}, onnxruntime {ort.__version__}; "
             f"median of {args.runs} interleaved runs.", "",
             "| form | median ms | vs default | nodes | Transpose | LayerNormalization | TensorRT NORMALIZATION | TensorRT layers |",
             "|---|---|---|---|---|---|---|---|"]
    for label, row in rows.items():
        trt = row["tensorrt_layers"]
        norm = trt.get("NORMALIZATION", 0) if isinstance(trt, dict) else "n/a"
        total = sum(trt.values()) if isinstance(trt, dict) else "n/a"
        lines.append(f"| {label} | {row['median_ms']:.1f} | {row['vs_default']:.2f}x | {row['nodes']} | "
                     f"{row['ops'].get('Transpose', 0)} | {row['ops'].get('LayerNormalization', 0)} | {norm} | {total} |")
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
