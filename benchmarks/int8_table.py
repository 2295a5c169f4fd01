"""INT8 beside fp32/fp16/bf16: quality, ONNX Runtime CPU latency, conversion cost, FP8 coverage.

Three phases, each model's conversion in its own process (so its peak RSS is its own):

1. ``convert``: per preset (random weights, constants randomised as in the tests) export the
   static float32 graph at 256x256, then the fp16 and bf16 graphs (irdeploy's mixed-precision
   pass) and the int8 graph (calibrated on the shipped photographs, default method); per step
   the seconds and the process's peak RSS so far. PSNR against eager float32 on a random input
   and two photo crops: fp32/int8 run by ONNX Runtime (int8 with its integer kernels), fp16 by
   ONNX Runtime and on the storage-rounding twin, bf16 on the twin only (no CPU kernels). MACs
   by layer kind from the static graph: what FP8 (E4M3) could cover in TensorRT, which has no
   FP8 depthwise/grouped convolutions (NVIDIA/TensorRT#4524).
2. ``task``: the bundled quickstart checkpoint (a trained M3SNet) restores the four shipped
   photographs blurred as the quickstart blurs them; PSNR against the sharp photographs for
   eager, fp32, fp16, bf16 (twin) and int8, and for int8 each calibration method.
   ``task-inputs``: int8 with the input convolutions in int8 and float (the default);
   ``task-keep``: the default int8 graph with its K worst layers by the int8 audit kept float.
3. ``latency`` (run it under ``flock /tmp/irdeploy-timing.lock``): ONNX Runtime CPU, 2 threads,
   fp32 / fp16 / int8 graphs of phase 1 interleaved round by round; medians, spread and the
   per-round int8/fp32 ratio. ``uptime`` before and after goes into the results.

Usage:
    python benchmarks/int8_table.py convert --models m3snet-32,mprnet-deblur,mhnet,nafnet-gopro-32,restormer-derain
    python benchmarks/int8_table.py task
    python benchmarks/int8_table.py task-inputs   # input convolutions int8 vs float (the default)
    python benchmarks/int8_table.py task-keep     # the default int8 graph with its K worst layers float
    flock /tmp/irdeploy-timing.lock python benchmarks/int8_table.py latency --rounds 7
    python benchmarks/int8_table.py table      # benchmarks/results/int8-<date>.md from the JSON
Work files go to /tmp/irdeploy-int8-bench (override with --work).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results"
SIZE = 256
PRECISIONS = ("fp32", "fp16", "bf16", "int8")
TIMED = ("fp32", "fp16", "int8")  # ONNX Runtime's CPU provider has no BF16 kernels


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _run(graph_bytes: bytes, inputs: list[np.ndarray], threads: int = 2) -> list[np.ndarray]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(graph_bytes, options, providers=["CPUExecutionProvider"])
    return [session.run(None, {"input": x})[0] for x in inputs]


def _psnr(outputs, references) -> float:
    from irdeploy.core.images import psnr

    return min(psnr(o, r) for o, r in zip(outputs, references))


def mac_split(graph) -> dict[str, float]:
    """GMACs per layer kind of a static graph (shapes from ONNX shape inference)."""
    import onnx

    from irdeploy.export.int8_audit import node_kinds

    inferred = onnx.shape_inference.infer_shapes(graph)
    dims = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
            for v in [*inferred.graph.value_info, *inferred.graph.output, *inferred.graph.input]}
    inits = {t.name: list(t.dims) for t in graph.graph.initializer}
    kinds = node_kinds(graph)
    macs: dict[str, float] = {}
    for node in graph.graph.node:
        kind = kinds.get(node.name)
        if kind is None:
            continue
        out = dims.get(node.output[0])
        if not out or 0 in out:
            continue
        if node.op_type == "MatMul":
            a = dims.get(node.input[0]) or inits.get(node.input[0])
            value = float(np.prod(out)) * (a[-1] if a else 0)
        else:
            w = inits[node.input[1]]
            if node.op_type == "ConvTranspose":  # every input pixel scatters a Cout/g x k x k patch
                x = dims[node.input[0]]
                value = float(np.prod(x)) * w[1] * float(np.prod(w[2:]))
            else:
                value = float(np.prod(out)) * w[1] * float(np.prod(w[2:]))
        macs[kind] = macs.get(kind, 0.0) + value / 1e9
    return macs


def convert(preset: str, work: Path) -> dict:
    """Phase 1 for one preset, in this process."""
    import onnx
    import torch

    from irdeploy.export import to_onnx
    from irdeploy.export.int8 import DEFAULT_METHOD, quantize_for_export
    from irdeploy.export.parity import make_inputs
    from irdeploy.export.precision import emulate_low_precision, to_mixed_precision
    from irdeploy.model import create, final_image
    from irdeploy.model.init import randomize_constants
    from irdeploy.model.spec import pad_multiple

    torch.set_num_threads(2)
    torch.manual_seed(0)
    model = randomize_constants(create(preset), seed=0).eval()
    m = pad_multiple(model)
    inputs = [x for _, x in make_inputs(3, [(1, SIZE, SIZE)] * 3)]
    with torch.inference_mode():
        references = [final_image(model(torch.from_numpy(x))).numpy() for x in inputs]
    row: dict = {"model": preset, "steps": {}, "psnr": {}, "rss_start_mib": round(_rss_mib())}
    path = work / f"{preset}-fp32.onnx"
    start = time.perf_counter()
    to_onnx(model, path, static_shape=(SIZE, SIZE), tensorrt=False, parity=False)
    row["steps"]["fp32"] = {"seconds": round(time.perf_counter() - start, 1), "peak_rss_mib": round(_rss_mib())}
    fp32 = onnx.load(path)
    graphs = {"fp32": fp32}
    for precision in ("fp16", "bf16"):
        start = time.perf_counter()
        graphs[precision], _ = to_mixed_precision(fp32, precision)
        row["steps"][precision] = {"seconds": round(time.perf_counter() - start, 1), "peak_rss_mib": round(_rss_mib())}
    start = time.perf_counter()
    graphs["int8"], extra = quantize_for_export(fp32, m, crop_size=(SIZE, SIZE))  # a static graph: its own size
    row["steps"]["int8"] = {"seconds": round(time.perf_counter() - start, 1), "peak_rss_mib": round(_rss_mib()),
                            "method": DEFAULT_METHOD, "percentile": extra["calibration"].get("percentile"),
                            "quantized": extra["int8"]["quantized"],
                            "calibration": {k: extra["calibration"][k] for k in
                                            ("crop_size", "crops_per_pass", "tensors", "tensor_groups", "budget_mib")}}
    for precision in ("fp16", "int8"):
        onnx.save(graphs[precision], work / f"{preset}-{precision}.onnx")
    row["psnr"]["fp32"] = _psnr(_run(fp32.SerializeToString(), inputs), references)
    row["psnr"]["fp16"] = _psnr(_run(graphs["fp16"].SerializeToString(), inputs), references)
    row["psnr"]["fp16_twin"] = _psnr(_run(emulate_low_precision(graphs["fp16"]).SerializeToString(), inputs), references)
    row["psnr"]["bf16_twin"] = _psnr(_run(emulate_low_precision(graphs["bf16"]).SerializeToString(), inputs), references)
    row["psnr"]["int8"] = _psnr(_run(graphs["int8"].SerializeToString(), inputs), references)
    twin16, _ = to_mixed_precision(graphs["int8"], "fp16")  # what the TensorRT int8 engine stores
    row["psnr"]["int8_fp16_twin"] = _psnr(_run(emulate_low_precision(twin16).SerializeToString(), inputs), references)
    row["gmacs_256"] = {k: round(v, 2) for k, v in mac_split(fp32).items()}
    return row


def _quickstart_photos():
    """The bundled quickstart model and the shipped photographs blurred as it learned (9-px box),
    edge-padded to its multiple: ``(model, recipe, multiple, [(name, x, target, h, w)])``."""
    import torch

    from irdeploy.core.images import SAMPLES, read_image, sample_path
    from irdeploy.model import load_model
    from irdeploy.model.degrade import motion_blur
    from irdeploy.model.spec import pad_multiple
    from irdeploy.runtime.quickstart import _bundled_checkpoint, bundled_recipe

    torch.set_num_threads(2)
    recipe = bundled_recipe()
    model = load_model(recipe["model"], _bundled_checkpoint(recipe), **recipe["args"]).eval()
    m = pad_multiple(model)
    photos = []
    for name in SAMPLES:
        target = read_image(sample_path(name))
        h, w = target.shape[:2]
        x = np.pad(motion_blur(target, 9), ((0, -h % m), (0, -w % m), (0, 0)), mode="edge").transpose(2, 0, 1)[None]
        photos.append((name, np.ascontiguousarray(x, np.float32), target, h, w))
    return model, recipe, m, photos


def task(work: Path, methods: list[str]) -> dict:
    """Phase 2: the trained quickstart checkpoint on the blurred shipped photographs."""
    import onnx
    import torch

    from irdeploy.core.images import psnr
    from irdeploy.export import to_onnx
    from irdeploy.export.int8 import quantize_for_export
    from irdeploy.export.precision import emulate_low_precision, to_mixed_precision

    model, recipe, m, photos = _quickstart_photos()
    path = work / "quickstart-fp32.onnx"
    to_onnx(model, path, tensorrt=False, parity=False)
    fp32 = onnx.load(path)
    graphs = {"fp32": fp32,
              "fp16": to_mixed_precision(fp32, "fp16")[0],
              "fp16_twin": emulate_low_precision(to_mixed_precision(fp32, "fp16")[0]),
              "bf16_twin": emulate_low_precision(to_mixed_precision(fp32, "bf16")[0])}
    seconds = {}
    for method in methods:
        start = time.perf_counter()
        graphs[f"int8_{method}"] = quantize_for_export(fp32, m, method=method)[0]
        seconds[method] = round(time.perf_counter() - start, 1)
    with torch.inference_mode():
        eager = {name: model(torch.from_numpy(x))[0].numpy().transpose(1, 2, 0)[:h, :w] for name, x, _, h, w in photos}
    rows: dict = {"eager": {name: psnr(np.clip(eager[name], 0, 1), t) for name, _, t, _, _ in photos}, "vs_eager": {}}
    for key, graph in graphs.items():
        outs = _run(graph.SerializeToString(), [x for _, x, _, _, _ in photos])
        restored = {name: o[0].transpose(1, 2, 0)[:h, :w] for (name, _, _, h, w), o in zip(photos, outs)}
        rows[key] = {name: psnr(np.clip(restored[name], 0, 1), t) for name, _, t, _, _ in photos}
        rows["vs_eager"][key] = min(psnr(restored[n], eager[n]) for n in eager)
    rows["blurred"] = {name: psnr(np.clip(x[0].transpose(1, 2, 0)[:h, :w], 0, 1), t) for name, x, t, h, w in photos}
    rows["calibration_seconds"] = seconds
    rows["model"] = recipe["summary"]
    return rows


def task_keep(work: Path, keeps: list[int]) -> dict:
    """Phase 2b: the quickstart int8 graph with its K worst layers (by the int8 audit) kept float."""
    from irdeploy.core.images import psnr
    from irdeploy.export.int8_audit import int8_audit, prepare
    from irdeploy.export.quantize import PERCENTILE, unquantized

    model, _, _, named = _quickstart_photos()
    photos = [(x, t, h, w) for _, x, t, h, w in named]
    start = time.perf_counter()
    fp32, q, inputs, references = prepare(model, (128, 128))
    rows = [r for r in int8_audit(fp32, q, inputs, references) if r.kind]
    audit_seconds = round(time.perf_counter() - start, 1)

    def mean_psnr(graph) -> float:
        outs = _run(graph.SerializeToString(), [x for x, _, _, _ in photos])
        return statistics.mean(psnr(np.clip(o[0].transpose(1, 2, 0)[:h, :w], 0, 1), t) for o, (_, t, h, w) in zip(outs, photos))

    base = mean_psnr(fp32)
    out = {"fp32_psnr": base, "percentile": PERCENTILE, "audit_seconds": audit_seconds, "worst": [r.to_dict() for r in rows[:8]], "keep": {}}
    for k in keeps:
        graph = unquantized(q, fp32, [r.node for r in rows[:k]])
        out["keep"][str(k)] = round(mean_psnr(graph) - base, 3)
    return out


def task_inputs(work: Path) -> dict:
    """Phase 2c: the quickstart task ΔPSNR (percentile) with the input convolutions in int8 (the
    earlier default) and float (the default now), two further steps measured beside them, and the
    default graph calibrated at the earlier percentile, 99.999."""
    import onnx

    from irdeploy.core.images import psnr
    from irdeploy.export import quantize
    from irdeploy.export import to_onnx
    from irdeploy.export.int8 import quantize_for_export

    model, _, m, photos = _quickstart_photos()
    path = work / "quickstart-fp32.onnx"
    to_onnx(model, path, tensorrt=False, parity=False)
    fp32 = onnx.load(path)

    def mean_psnr(graph) -> float:
        outs = _run(graph.SerializeToString(), [x for _, x, _, _, _ in photos])
        return statistics.mean(psnr(np.clip(o[0].transpose(1, 2, 0)[:h, :w], 0, 1), t)
                               for o, (_, _, t, h, w) in zip(outs, photos))

    base = mean_psnr(fp32)
    strided = [n.name for n in fp32.graph.node if n.op_type == "Conv"
               and any(a.name == "strides" and max(a.ints) > 1 for a in n.attribute)]
    out: dict = {"input_convs": quantize.input_convolutions(fp32), "first_strided_conv": strided[0], "delta": {}}
    variants = [("input convs int8", {"input_convs": "int8"}), ("input convs float (default)", {}),
                ("input convs + first strided conv float", {"fp32_nodes": strided[:1]})]
    for label, kwargs in variants:
        out["delta"][label] = round(mean_psnr(quantize_for_export(fp32, m, **kwargs)[0]) - base, 3)
    out["percentile"] = quantize.PERCENTILE
    settings = quantize.CALIBRATORS["percentile"][1]
    settings["percentile"] = 99.999
    try:
        out["delta"]["input convs float, percentile 99.999 (earlier default)"] = round(
            mean_psnr(quantize_for_export(fp32, m)[0]) - base, 3)
    finally:
        settings["percentile"] = quantize.PERCENTILE
    return out


def latency(work: Path, rounds: int, threads: int, presets: set[str] | None = None) -> dict:
    """Phase 3: interleaved ONNX Runtime CPU latency of the graphs of phase 1 (``presets``: only these)."""
    import onnxruntime as ort

    uptime_before = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    rng = np.random.default_rng(0)
    x = rng.random((1, 3, SIZE, SIZE), dtype=np.float32)
    out: dict = {}
    for fp32 in sorted(work.glob("*-fp32.onnx")):
        preset = fp32.name[: -len("-fp32.onnx")]
        if preset == "quickstart" or not all((work / f"{preset}-{p}.onnx").is_file() for p in TIMED):
            continue
        if presets is not None and preset not in presets:
            continue
        sessions = {}
        for precision in TIMED:
            options = ort.SessionOptions()
            options.log_severity_level = 3
            options.intra_op_num_threads = threads
            sessions[precision] = ort.InferenceSession(str(work / f"{preset}-{precision}.onnx"), options,
                                                       providers=["CPUExecutionProvider"])
            sessions[precision].run(None, {"input": x})  # warm-up
        times: dict[str, list[float]] = {p: [] for p in TIMED}
        for _ in range(rounds):
            for precision, session in sessions.items():
                start = time.perf_counter()
                session.run(None, {"input": x})
                times[precision].append(time.perf_counter() - start)
        ratios = [f / i for f, i in zip(times["fp32"], times["int8"])]
        out[preset] = {
            "median_ms": {p: round(1e3 * statistics.median(t), 1) for p, t in times.items()},
            "min_max_ms": {p: [round(1e3 * min(t), 1), round(1e3 * max(t), 1)] for p, t in times.items()},
            "int8_speedup_median": round(statistics.median(ratios), 3),
            "int8_speedup_range": [round(min(ratios), 3), round(max(ratios), 3)],
            "fp16_speedup_median": round(statistics.median(f / h for f, h in zip(times["fp32"], times["fp16"])), 3),
        }
    uptime_after = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    return {"rows": out, "rounds": rounds, "threads": threads, "uptime_before": uptime_before,
            "uptime_after": uptime_after, "onnxruntime": ort.__version__}


def table(results: dict) -> str:
    """The Markdown results table (also pasted into the README's INT8 section)."""
    lines = [f"# INT8 beside fp32/fp16/bf16 ({results['date']})", "",
             f"Machine: {results['machine']}; {results['versions']}.", ""]
    conv = results.get("convert", {})
    lat = results.get("latency", {}).get("rows", {})
    lines += ["## Quality, ONNX Runtime CPU latency (256x256, 2 threads) and conversion cost", "",
              "PSNR vs eager float32 (worst of a random input and two photo crops, random weights); latency "
              "median of interleaved rounds; conversion seconds and process peak RSS after the step.", "",
              "| model | precision | PSNR dB | ORT CPU ms | vs fp32 | convert s | peak RSS MiB |",
              "|---|---|---|---|---|---|---|"]
    for preset, row in conv.items():
        timing = lat.get(preset, {})
        for p in PRECISIONS:
            psnr = row["psnr"].get(p if p in ("fp32", "int8") else f"{p}_twin")
            ms = timing.get("median_ms", {}).get(p)
            speed = {"int8": timing.get("int8_speedup_median"), "fp16": timing.get("fp16_speedup_median"),
                     "fp32": 1.0 if ms else None}.get(p)
            step = row["steps"][p]
            note = "" if p in ("fp32", "int8") else " (twin)"
            label = f"{p} (p99.999)" if p == "int8" and step.get("percentile") is None else p
            lines.append(f"| {preset} | {label} | {psnr:.1f}{note} | {ms if ms else 'n/a'} | "
                         f"{f'{speed:.2f}x' if speed else '-'} | {step['seconds']} | {step['peak_rss_mib']} |")
    earlier = [k for k, v in conv.items() if v["steps"]["int8"].get("percentile") is None]
    if earlier:
        lines += ["", "int8 (p99.999): calibrated at percentile 99.999 (the earlier default), not re-measured at "
                  "99.99 (the default now): " + ", ".join(earlier) + "; see the notes."]
    lines += ["", "(twin) = storage-rounding emulation (ONNX Runtime has no BF16 CPU kernels and skips most FP16 rounding); "
              "int8 runs ONNX Runtime's integer kernels. int8 with its float parts in fp16, as the TensorRT engine "
              "stores them (twin): " + ", ".join(f"{k} {v['psnr']['int8_fp16_twin']:.1f} dB" for k, v in conv.items()) + ".", ""]
    if lat:
        lines += ["int8/fp32 speed-up per round (min-max): " + ", ".join(
            f"{k} {v['int8_speedup_median']:.2f}x ({v['int8_speedup_range'][0]:.2f}-{v['int8_speedup_range'][1]:.2f})"
            for k, v in lat.items()) + f"; {results['latency']['rounds']} rounds.",
            f"uptime before: `{results['latency']['uptime_before']}`; after: `{results['latency']['uptime_after']}`.", ""]
        per_row = {k: v["uptime"] for k, v in lat.items() if "uptime" in v}
        if per_row:
            lines[-2:-1] = ["uptime before / after each row's run: " + "; ".join(
                f"{k} `{u[0]}` / `{u[1]}`" for k, u in per_row.items()) + "."]
    lines += ["## What FP8 (E4M3) could cover: GMACs at 256x256 by layer kind", "",
              "| model | dense conv | 1x1 conv | depthwise/grouped | deconv | matmul | dense share |", "|---|---|---|---|---|---|---|"]
    for preset, row in conv.items():
        g = row["gmacs_256"]
        dense = g.get("dense conv", 0) + g.get("1x1 conv", 0) + g.get("matmul", 0) + g.get("deconv", 0)
        total = sum(g.values())
        lines.append(f"| {preset} | {g.get('dense conv', 0):.2f} | {g.get('1x1 conv', 0):.2f} | "
                     f"{g.get('depthwise conv', 0) + g.get('grouped conv', 0):.2f} | {g.get('deconv', 0):.2f} | "
                     f"{g.get('matmul', 0):.2f} | {dense / total:.1%} |")
    task_rows = results.get("task")
    if task_rows:
        lines += ["", f"## Task level: {task_rows['model']}, four shipped photographs, 9-pixel box blur", "",
                  "PSNR dB against the sharp photographs (mean of four, outputs clipped to [0, 1]); ΔPSNR against "
                  "the float32 graph (itself within 130 dB of eager float32); PSNR vs eager: worst photo.", "",
                  "| variant | PSNR dB | ΔPSNR dB | PSNR vs eager dB |", "|---|---|---|---|"]
        eager = statistics.mean(task_rows["fp32"].values())
        lines.append(f"| blurred input | {statistics.mean(task_rows['blurred'].values()):.2f} | - | - |")
        for key, vs in task_rows["vs_eager"].items():
            mean = statistics.mean(task_rows[key].values())
            lines.append(f"| {key} | {mean:.2f} | {mean - eager:+.3f} | {vs:.1f} |")
        lines += ["", "Calibration seconds: " + ", ".join(f"{k} {v}" for k, v in task_rows["calibration_seconds"].items()) + "."]
    keep = results.get("task_keep")
    if keep:
        lines += ["", f"The same int8 graph (percentile {keep.get('percentile', 99.999)}) with its K worst layers by `fp16-audit --precision int8` kept "
                  f"float (audit {keep['audit_seconds']} s): ΔPSNR dB against the float32 graph", "",
                  "| K | " + " | ".join(keep["keep"]) + " |", "|---|" + "---|" * len(keep["keep"]),
                  "| ΔPSNR | " + " | ".join(f"{v:+.3f}" for v in keep["keep"].values()) + " |", "",
                  "Worst layers alone: " + ", ".join(f"{w['node']} ({w['kind']}) {w['psnr']:.1f} dB" for w in keep["worst"][:5]) + "."]
    inputs = results.get("task_inputs")
    if inputs:
        lines += ["", "The input convolutions (" + ", ".join(inputs["input_convs"]) + ", reading the image) and "
                  f"further steps, percentile {inputs.get('percentile', 99.999)} unless named: ΔPSNR dB against the "
                  "float32 graph", "",
                  "| variant | ΔPSNR dB |", "|---|---|",
                  *(f"| {k} | {v:+.3f} |" for k, v in inputs["delta"].items())]
    if results.get("notes"):
        lines += ["", "## Notes", "", *(f"- {n}" for n in results["notes"])]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("phase", choices=("convert", "task", "task-keep", "task-inputs", "latency", "table", "one"))
    parser.add_argument("--models", default="m3snet-32,mprnet-deblur,mhnet,nafnet-gopro-32,restormer-derain")
    parser.add_argument("--methods", default="minmax,percentile,entropy")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--only", default="", help="latency: re-measure these presets, keep the other rows")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--work", default="/tmp/irdeploy-int8-bench")
    parser.add_argument("--results", default=str(RESULTS / f"int8-{dt.date.today().isoformat()}.json"))
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    results_path = Path(args.results)
    results = json.loads(results_path.read_text()) if results_path.is_file() else {}
    if args.phase == "one":  # a child of "convert": print one model's row as JSON
        print(json.dumps(convert(args.models, work)))
        return 0
    import onnxruntime
    import torch

    results.update(date=dt.date.today().isoformat(), machine=f"{platform.processor() or platform.machine()}, "
                   f"{__import__('os').cpu_count()} cores", versions=f"torch {torch.__version__}, onnxruntime {onnxruntime.__version__}")
    try:
        from irdeploy.runtime.bench import cpu_name

        results["machine"] = f"{cpu_name()}, {__import__('os').cpu_count()} cores"
    except ImportError:
        pass
    if args.phase == "convert":
        results.setdefault("convert", {})
        for preset in args.models.split(","):
            print(f"converting {preset} (fp32, fp16, bf16, int8) ...", file=sys.stderr, flush=True)
            before = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
            child = subprocess.run([sys.executable, __file__, "one", "--models", preset, "--work", str(work)],
                                   capture_output=True, text=True)
            if child.returncode != 0:
                print(child.stderr[-2000:], file=sys.stderr)
                last = child.stderr.strip().splitlines()[-1:] or [f"exit status {child.returncode}"]
                earlier = results["convert"].get(preset, {})
                if "error" in earlier or not earlier:
                    results["convert"][preset] = {"error": last[0]}
                else:  # a re-measurement failed: the earlier row stays, and says so
                    earlier["remeasure_error"] = last[0]
                continue
            results["convert"][preset] = json.loads(child.stdout.strip().splitlines()[-1])
            results["convert"][preset]["uptime"] = [before, subprocess.run(["uptime"], capture_output=True,
                                                                           text=True).stdout.strip()]
            print(json.dumps(results["convert"][preset]), file=sys.stderr)
            results_path.write_text(json.dumps(results, indent=1))
    elif args.phase == "task":
        results["task"] = task(work, args.methods.split(","))
    elif args.phase == "task-inputs":
        results["task_inputs"] = task_inputs(work)
    elif args.phase == "task-keep":
        results["task_keep"] = task_keep(work, [0, 1, 2, 4, 8, 16])
    elif args.phase == "latency" and args.only:  # re-measure some rows, keep the others with their uptime
        fresh = latency(work, args.rounds, args.threads, set(args.only.split(",")))
        old = results.get("latency", {})
        for row in fresh["rows"].values():
            row["uptime"] = [fresh["uptime_before"], fresh["uptime_after"]]
        for row in old.get("rows", {}).values():
            row.setdefault("uptime", [old["uptime_before"], old["uptime_after"]])
        results["latency"] = {**old, "rows": {**old.get("rows", {}), **fresh["rows"]}, "rounds": fresh["rounds"]}
    elif args.phase == "latency":
        results["latency"] = latency(work, args.rounds, args.threads)
    results_path.write_text(json.dumps(results, indent=1))
    if args.phase == "table" or all(k in results for k in ("convert", "task", "latency")):
        results["convert"] = {k: v for k, v in results.get("convert", {}).items() if "error" not in v}
        results_path.with_suffix(".md").write_text(table(results))
        print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
