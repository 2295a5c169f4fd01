"""ModelOpt AutoCast vs our mixed-precision pass on the full-size presets, on CPU.

For each model: random weights (constants randomised, as in ``tests/conftest.py``), a float32
export with ``irdeploy.export.to_onnx`` at a static 1x3xSxS, then each converter in a child
process (so its time and peak RSS are its own):

- ``modelopt``: :func:`irdeploy.export.autocast.autocast_modelopt`, run with the Python of a
  venv holding ``nvidia-modelopt[onnx]`` (``--modelopt-python``), calibrated on photo crops
  other than the evaluation crops (and once, FP16 only, on AutoCast's default random inputs);
- ``ours``: :func:`irdeploy.export.precision.to_mixed_precision`, with this Python.

Each converted graph is measured against eager float32 (torch) on two photographs: PSNR and max
abs error when ONNX Runtime's CPU provider runs the real graph, and on the rounding twin
(:func:`irdeploy.export.precision.emulate_low_precision`), which rounds every tensor the graph
stores in low precision. The twin is the number to compare: ORT's CPU provider computes FP16
nodes it has no kernel for in float32 and drops the Cast pairs between them (so it understates
the error), and it has no BF16 kernels at all. Graph statistics come from the graph itself,
the same way for both converters. ORT CPU latency (1 thread) is an aside.

    /work/venv/bin/python benchmarks/autocast_comparison.py \\
        --modelopt-python /tmp/venv-modelopt/bin/python --size 256
    /work/venv/bin/python benchmarks/autocast_comparison.py \\
        --modelopt-python /tmp/venv-modelopt/bin/python --size 128 --models mhnet --resume

writes ``benchmarks/results/autocast_comparison.json`` and ``.md`` (``--resume`` adds rows to
them; ``--render-only`` rewrites the .md from the .json). A conversion past ``--max-rss-gb``
(default 9) is killed and recorded as such: AutoCast's reference run holds every intermediate
tensor, and MHNet at 256x256 passes 9 GB. The ModelOpt venv needs ``torch==2.13.0``,
``nvidia-modelopt[onnx]`` and irdeploy (``pip install -e . --no-deps`` plus its dependencies
other than onnx/onnxruntime).
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
MODELS = ("m3snet-32", "mhnet", "mprnet-derain")
IMAGES = ("chelsea.png", "coffee.png")
FLOAT, HALF, BF16 = 1, 10, 16
LOW_NAMES = {HALF: "fp16", BF16: "bf16"}
HEAVY = frozenset({"Conv", "ConvTranspose", "MatMul", "Gemm"})
# Nodes that move or re-type data without computing on it; Cast is counted on its own.
NOT_COMPUTE = frozenset({"Cast", "Constant", "Shape", "Size", "Identity"})


# --------------------------------------------------------------------------------------------
# Child processes: one conversion each, timed, with its own peak RSS.


def _status_mb(field: str) -> float:
    """A memory line of /proc/self/status (Linux) in MB: VmRSS now, VmHWM the peak since exec.

    Not ``getrusage``: its ru_maxrss survives fork+exec, so a child would report its parent's peak.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"no {field} in /proc/self/status")


def child_convert(args: argparse.Namespace) -> None:
    import onnx

    if args.method == "modelopt":
        from irdeploy.export.autocast import autocast_modelopt

        import modelopt.onnx.autocast  # noqa: F401  (import cost outside the timing)
    else:
        from irdeploy.export.precision import to_mixed_precision
    model = onnx.load(args.src)
    calibration = None
    if args.calib:
        with np.load(args.calib) as data:
            calibration = [{model.graph.input[0].name: data[k]} for k in sorted(data.files)]
    gc.collect()
    rss_before, rss_now = _status_mb("VmHWM"), _status_mb("VmRSS")
    start = time.perf_counter()
    info = None
    if args.method == "modelopt":
        out = autocast_modelopt(model, args.precision, calibration=calibration, log_level="ERROR")
    else:
        out, mp = to_mixed_precision(model, args.precision)
        info = {"fp32_share": mp.fp32_share, "low_nodes": mp.low_nodes, "fp32_nodes": mp.fp32_nodes,
                "fp32_islands": mp.fp32_islands, "casts_inserted": mp.casts_inserted}
    seconds = time.perf_counter() - start
    rss_peak = _status_mb("VmHWM")
    onnx.save(out, args.dst)
    print("RESULT " + json.dumps({"seconds": seconds, "rss_before_mb": rss_before, "rss_peak_mb": rss_peak,
                                  "rss_current_before_mb": rss_now,
                                  "pass_info": info}))


def child_versions(_args: argparse.Namespace) -> None:
    print("RESULT " + json.dumps(versions()))


def versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for name in ("torch", "onnx", "onnxruntime", "onnxruntime-gpu", "onnxscript", "numpy", "nvidia-modelopt",
                 "onnx-graphsurgeon", "polygraphy"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    return out


def run_child(python: str, argv: list[str], max_rss_gb: float | None = None, timeout: float = 1800) -> dict:
    """Run this script's child command with ``python``: its RESULT, its peak RSS from the OS.

    A child whose resident memory passes ``max_rss_gb`` is killed (the machine is shared): the
    result is then an error saying so, with the time it took to get there.
    """
    import tempfile

    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen([python, __file__, *argv], stdout=out, stderr=err, text=True,
                                env={**os.environ, "OMP_NUM_THREADS": "2"})
        start = time.perf_counter()
        peak = 0.0
        killed = None
        while proc.poll() is None:
            rss = _proc_rss_gb(proc.pid)
            peak = max(peak, rss or 0.0)
            if max_rss_gb and rss and rss > max_rss_gb:
                proc.kill()
                killed = f"killed by the benchmark: RSS passed {max_rss_gb:g} GB after {time.perf_counter() - start:.0f} s"
            elif time.perf_counter() - start > timeout:
                proc.kill()
                killed = f"killed by the benchmark: still running after {timeout:.0f} s"
            time.sleep(0.25)
        wall = time.perf_counter() - start
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if killed:
        return {"error": killed, "rss_peak_seen_gb": round(peak, 2), "wall_s": wall}
    if proc.returncode != 0:
        tail = "\n".join(stderr.strip().splitlines()[-15:])
        return {"error": f"exit {proc.returncode}: {tail}", "rss_peak_seen_gb": round(peak, 2)}
    line = next((ln for ln in reversed(stdout.splitlines()) if ln.startswith("RESULT ")), None)
    if line is None:
        return {"error": "no RESULT line: " + "\n".join(stderr.strip().splitlines()[-15:])}
    result = json.loads(line[len("RESULT "):])
    result["wall_s"] = wall
    result["rss_peak_seen_gb"] = round(peak, 2)
    return result


def _proc_rss_gb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return None


# --------------------------------------------------------------------------------------------
# Parent: export, reference, evaluation.


def photo_batches(size: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Evaluation crops (centre) and calibration crops (opposite corners) of both photos, 1x3xSxS."""
    from irdeploy.core.images import read_image, sample_path

    evals, calib = [], []
    for i, name in enumerate(IMAGES):
        img = read_image(sample_path(name))
        h, w = img.shape[:2]
        if min(h, w) < size:
            raise SystemExit(f"{name} is {h}x{w}: smaller than --size {size}")
        top, left = (h - size) // 2, (w - size) // 2
        evals.append(img[top:top + size, left:left + size])
        calib.append(img[:size, :size] if i == 0 else img[h - size:, w - size:])
    to_nchw = lambda a: np.ascontiguousarray(a.transpose(2, 0, 1)[None], dtype=np.float32)  # noqa: E731
    return [to_nchw(a) for a in evals], [to_nchw(a) for a in calib]


def full_size_model(name: str):
    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import randomize_constants

    import torch

    from irdeploy.model import create

    torch.manual_seed(0)
    return randomize_constants(create(name), seed=0).eval()


def eager_outputs(model, batches: list[np.ndarray]) -> list[np.ndarray]:
    import torch

    outs = []
    with torch.no_grad():
        for x in batches:
            y = model(torch.from_numpy(x))
            outs.append((y[0] if isinstance(y, (list, tuple)) else y).numpy())
    return outs


def graph_stats(model) -> dict:
    """Precision of every node that computes on float data, from the graph's own types."""
    import onnx

    try:
        g = onnx.shape_inference.infer_shapes(model).graph
    except Exception:  # noqa: BLE001 - fall back to the value info the converter wrote
        g = model.graph
    types = {t.name: t.data_type for t in g.initializer}
    types.update({v.name: v.type.tensor_type.elem_type for v in [*g.input, *g.value_info, *g.output]})
    float_types = {FLOAT, HALF, BF16}
    per = Counter()
    heavy = Counter()
    fp32_ops = Counter()
    for node in g.node:
        if node.op_type in NOT_COMPUTE:
            continue
        outs = [types.get(o) for o in node.output if o]
        ins = [types.get(i) for i in node.input if i]
        float_outs = [t for t in outs if t in float_types]
        dtype = float_outs[0] if float_outs else next((t for t in ins if t in float_types), None)
        if dtype is None:
            continue
        key = "fp32" if dtype == FLOAT else "low"
        per[key] += 1
        if node.op_type in HEAVY:
            heavy[key] += 1
        if dtype == FLOAT:
            fp32_ops[node.op_type] += 1
    total = per["fp32"] + per["low"]
    htotal = heavy["fp32"] + heavy["low"]
    return {
        "nodes": len(g.node),
        "compute_nodes": total,
        "fp32_compute_nodes": per["fp32"],
        "fp32_share": per["fp32"] / total if total else 0.0,
        "conv_matmul_nodes": htotal,
        "fp32_conv_matmul": heavy["fp32"],
        "fp32_ops": dict(fp32_ops.most_common()),
        "casts": sum(1 for n in g.node if n.op_type == "Cast"),
        "opset": max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")),
        "file_mb": model.ByteSize() / 2**20,
    }


def ort_session(model_bytes: bytes):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])


def accuracy(model_bytes: bytes, batches: list[np.ndarray], refs: list[np.ndarray], latency_runs: int) -> dict:
    from irdeploy.core.images import psnr

    try:
        session = ort_session(model_bytes)
    except Exception as exc:  # noqa: BLE001 - e.g. no BF16 kernel on the CPU provider
        return {"error": str(exc).strip().splitlines()[0][:300]}
    name = session.get_inputs()[0].name
    psnrs, errs = [], []
    try:
        for x, ref in zip(batches, refs):
            y = session.run(None, {name: x})[0].astype(np.float32)
            psnrs.append(psnr(y, ref))
            errs.append(float(np.max(np.abs(y - ref))))
    except Exception as exc:  # noqa: BLE001
        return {"error": str(exc).strip().splitlines()[0][:300]}
    result = {"psnr_db": [round(p, 2) for p in psnrs], "worst_psnr_db": round(min(psnrs), 2),
              "max_abs": max(errs), "finite": bool(np.isfinite(errs).all())}
    if latency_runs:
        times = []
        for _ in range(latency_runs):
            start = time.perf_counter()
            session.run(None, {name: batches[0]})
            times.append(time.perf_counter() - start)
        result["ort_cpu_ms_1thread"] = round(1000 * statistics.median(times), 1)
    return result


def evaluate(path: Path, batches, refs, latency_runs: int) -> dict:
    import onnx

    from irdeploy.export.precision import emulate_low_precision

    model = onnx.load(path)
    out = {"graph": graph_stats(model)}
    out["ort_cpu"] = accuracy(model.SerializeToString(), batches, refs, latency_runs)
    gc.collect()
    try:
        twin = emulate_low_precision(model)
        out["emulated"] = accuracy(twin.SerializeToString(), batches, refs, 0)
    except Exception as exc:  # noqa: BLE001
        out["emulated"] = {"error": f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:300]}"}
    return out


def main_run(args: argparse.Namespace) -> None:
    import torch

    from irdeploy.export import to_onnx

    torch.set_num_threads(args.threads)
    work = Path(args.workdir) / f"{args.size}"
    work.mkdir(parents=True, exist_ok=True)
    size = args.size
    evals, calib = photo_batches(size)
    calib_path = work / f"calib{args.calib_batches}.npz"
    np.savez(calib_path, **{f"b{i}": c for i, c in enumerate(calib[:args.calib_batches])})
    meta = {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "versions_main": versions(),
        "versions_modelopt_env": run_child(args.modelopt_python, ["_versions"]),
        "images": [f"{n} centre SxS crop" for n in IMAGES],
        "calibration": {1: "chelsea.png top-left SxS crop (one batch)",
                        2: "chelsea.png top-left and coffee.png bottom-right SxS crops (two batches; AutoCast "
                           "aggregates both)"}[args.calib_batches],
        "max_rss_gb": args.max_rss_gb,
        "notes": list(args.note),
        "ort_threads": 1,
        "torch_threads": args.threads,
    }
    results = {"meta": meta, "models": {}}
    out_dir = Path(args.out)
    previous = out_dir / "autocast_comparison.json"
    if args.resume and previous.is_file():
        old = json.loads(previous.read_text())
        results["models"] = old.get("models", {})
        meta["notes"] = [n for n in old.get("meta", {}).get("notes", []) if n not in meta["notes"]] + meta["notes"]

    for name in args.models:
        key_model = f"{name} {size}x{size}"
        entry = results["models"].setdefault(key_model, {"model": name, "size": size, "methods": {}})
        print(f"== {key_model}", flush=True)
        src = work / f"{name}-fp32.onnx"
        model = full_size_model(name)
        refs = eager_outputs(model, evals)
        if not src.is_file():
            start = time.perf_counter()
            to_onnx(model, src, static_shape=(1, size, size), tensorrt=False, parity=False)
            entry["export_s"] = round(time.perf_counter() - start, 1)
        entry["params_m"] = round(sum(p.numel() for p in model.parameters()) / 1e6, 2)
        del model
        gc.collect()
        entry["fp32_onnx"] = evaluate(src, evals, refs, args.latency_runs)
        print(f"   fp32 onnx: {summary(entry['fp32_onnx'])}", flush=True)

        jobs = []
        for precision in args.precisions:
            if not args.skip_modelopt:
                jobs.append((f"modelopt-{precision}", args.modelopt_python, "modelopt", precision, True))
            jobs.append((f"ours-{precision}", sys.executable, "ours", precision, False))
        if args.random_calibration and not args.skip_modelopt:
            jobs.append(("modelopt-fp16-randomcal", args.modelopt_python, "modelopt", "fp16", False))
        for key, python, method, precision, calibrated in jobs:
            if args.resume and "error" not in entry["methods"].get(key, {"error": 1}):
                continue
            dst = work / f"{name}-{key}.onnx"
            argv = ["_convert", "--method", method, "--precision", precision, "--src", str(src), "--dst", str(dst)]
            if calibrated:
                argv += ["--calib", str(calib_path)]
            conv = run_child(python, argv, max_rss_gb=args.max_rss_gb)
            if calibrated:
                conv["calibration_batches"] = args.calib_batches
            row = {"conversion": conv}
            if "error" not in conv:
                row.update(evaluate(dst, evals, refs, args.latency_runs))
                dst.unlink(missing_ok=True)
            entry["methods"][key] = row
            print(f"   {key}: {summary(row)}", flush=True)
            gc.collect()
            write_results(results, out_dir)
    write_results(results, out_dir)


def summary(row: dict) -> str:
    if "error" in row.get("conversion", {}):
        return "conversion failed: " + row["conversion"]["error"].splitlines()[-1]
    parts = []
    if "conversion" in row:
        c = row["conversion"]
        parts.append(f"{c['seconds']:.1f}s peak {c['rss_peak_mb']:.0f}MB")
    g = row["graph"]
    parts.append(f"fp32 {g['fp32_compute_nodes']}/{g['compute_nodes']} casts {g['casts']}")
    for k in ("ort_cpu", "emulated"):
        r = row.get(k, {})
        parts.append(f"{k} " + (f"{r['worst_psnr_db']}dB max {r['max_abs']:.3g}" if "worst_psnr_db" in r
                                else f"n/a ({r.get('error', '')[:80]})"))
    return "; ".join(parts)


def machine() -> dict:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = None
    try:
        mem = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError):
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": mem, "os": platform.platform(), "gpu": None}


def write_results(results: dict, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "autocast_comparison.json").write_text(json.dumps(results, indent=1, default=_json_default) + "\n")
    (out_dir / "autocast_comparison.md").write_text(markdown(results))


def _json_default(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    raise TypeError(type(value))


def _fmt(value, spec: str, missing: str = "n/a") -> str:
    return missing if value is None else format(value, spec)


def _added(conv: dict) -> float:
    before = conv.get("rss_current_before_mb") or conv["rss_before_mb"]
    return max(0.0, conv["rss_peak_mb"] - before)


def markdown(results: dict) -> str:
    meta = results["meta"]
    mo = meta.get("versions_modelopt_env", {})
    vm = meta["versions_main"]
    lines = [
        "# ModelOpt AutoCast vs `to_mixed_precision` (CPU)",
        "",
        f"Date: {meta['date']}. Machine: {meta['machine']['cpu']}, {meta['machine']['cores']} cores, "
        f"{meta['machine']['memory_gib']} GiB, no GPU.",
        f"Main env: Python {vm.get('python')}, torch {vm.get('torch')}, onnx {vm.get('onnx')}, "
        f"onnxruntime {vm.get('onnxruntime')}, onnxscript {vm.get('onnxscript')}.",
        f"ModelOpt env: nvidia-modelopt {mo.get('nvidia-modelopt')}, onnx {mo.get('onnx')}, "
        f"onnxruntime-gpu {mo.get('onnxruntime-gpu')} (CPU provider), torch {mo.get('torch')}.",
        "",
        "Full-size presets, random weights with constants randomised, static 1x3xSxS (S per row), "
        "float32 export by `irdeploy.export.to_onnx` (opset 18). Inputs: "
        + ", ".join(meta["images"]) + f". AutoCast calibration: {meta['calibration']}; "
        "`randomcal` = AutoCast's default random inputs. All numbers against eager float32 (torch). "
        f"A conversion whose RSS passed {meta.get('max_rss_gb')} GB was killed (shared 24 GiB machine).",
        "",
        "- **emulated**: PSNR / max abs on the rounding twin (`emulate_low_precision`: every tensor the graph "
        "stores in FP16/BF16 is rounded; arithmetic in float32). The comparable accuracy number.",
        "- **ORT**: the real graph on ONNX Runtime's CPU provider (FP16 nodes without a CPU kernel run in "
        "float32, so it understates the error; no BF16 kernels at all).",
        "- **fp32 nodes**: nodes computing on float data that stay float32 (Cast/Shape/Constant/Identity "
        "not counted); **conv/mm fp32**: of those, Conv/ConvTranspose/MatMul/Gemm.",
        "- **time / peak RSS**: conversion only, in its own process. Peak RSS includes the interpreter, "
        "imports (torch) and the loaded model; *+conv* = peak minus the RSS just before converting, "
        "i.e. what the conversion itself added (0 when it stayed below the import-time peak).",
        "- **ORT ms**: ONNX Runtime CPU, 1 thread, median; an aside (FP16 on CPU is not a speed target).",
        "",
        "| model | method | fp32 nodes | conv/mm fp32 | Casts | emulated PSNR dB | emulated max abs | "
        "ORT PSNR dB | ORT max abs | time s | peak RSS MB (+conv) | ORT ms |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, entry in results["models"].items():
        rows = [("fp32 onnx", entry.get("fp32_onnx"))] + list(entry.get("methods", {}).items())
        for key, row in rows:
            if row is None:
                continue
            conv = row.get("conversion", {})
            if "error" in conv:
                why = conv["error"].splitlines()[0][:140]
                lines.append(f"| {name} | {key} | failed: {why} |" + " |" * 6
                             + f" {_fmt(conv.get('wall_s'), '.0f', '-')} | "
                             + f"> {1024 * conv.get('rss_peak_seen_gb', 0):.0f} seen | - |")
                continue
            g = row["graph"]
            em, rt = row.get("emulated", {}), row.get("ort_cpu", {})
            em_p = _fmt(em.get("worst_psnr_db"), ".1f", "n/a" if key != "fp32 onnx" else "-")
            rt_err = rt.get("error", "")
            rt_p = _fmt(rt.get("worst_psnr_db"), ".1f",
                        "n/a: no CPU kernel" if "NOT_IMPLEMENTED" in rt_err else f"n/a: {rt_err[:60]}")
            lines.append(
                f"| {name} | {key} | {g['fp32_compute_nodes']}/{g['compute_nodes']} ({100 * g['fp32_share']:.1f}%) | "
                f"{g['fp32_conv_matmul']}/{g['conv_matmul_nodes']} | {g['casts']} | {em_p} | "
                f"{_fmt(em.get('max_abs'), '.2e', '-')} | {rt_p} | {_fmt(rt.get('max_abs'), '.2e', '-')} | "
                f"{_fmt(conv.get('seconds'), '.1f', '-')} | "
                + (f"{conv['rss_peak_mb']:.0f} (+{_added(conv):.0f})" if conv else "-")
                + f" | {_fmt(rt.get('ort_cpu_ms_1thread'), '.0f', '-')} |"
            )
    lines += ["", "Float32 op types per converted graph:", ""]
    for name, entry in results["models"].items():
        for key, row in entry.get("methods", {}).items():
            if "graph" in row:
                ops = ", ".join(f"{op} {n}" for op, n in row["graph"]["fp32_ops"].items()) or "none"
                lines.append(f"- {name} / {key}: {ops}")
    if meta.get("notes"):
        lines += ["", "Notes:", ""] + [f"- {note}" for note in meta["notes"]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd")
    c = sub.add_parser("_convert")
    c.add_argument("--method", choices=("modelopt", "ours"), required=True)
    c.add_argument("--precision", choices=("fp16", "bf16"), required=True)
    c.add_argument("--src", required=True)
    c.add_argument("--dst", required=True)
    c.add_argument("--calib")
    sub.add_parser("_versions")
    parser.add_argument("--modelopt-python", default=os.environ.get("IRDEPLOY_MODELOPT_PYTHON", sys.executable))
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--precisions", nargs="+", default=["fp16", "bf16"], choices=("fp16", "bf16"))
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2, help="torch threads for export and eager")
    parser.add_argument("--latency-runs", type=int, default=3)
    parser.add_argument("--random-calibration", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--workdir", default="/tmp/irdeploy-autocast-bench")
    parser.add_argument("--calib-batches", type=int, default=1, choices=(1, 2),
                        help="AutoCast calibration batches; its reference run keeps every tensor of every batch")
    parser.add_argument("--max-rss-gb", type=float, default=9.0, help="kill a conversion past this RSS (shared machine)")
    parser.add_argument("--skip-modelopt", action="store_true", help="only our pass (no ModelOpt env needed)")
    parser.add_argument("--note", action="append", default=[], help="a line for the results' notes")
    parser.add_argument("--out", default=str(RESULTS), help="folder for the .json and .md results")
    parser.add_argument("--render-only", action="store_true", help="rewrite the .md from the .json in --out")
    parser.add_argument("--resume", action="store_true", help="keep rows of an earlier run's JSON; skip done ones")
    args = parser.parse_args(argv)
    if args.cmd == "_convert":
        child_convert(args)
    elif args.cmd == "_versions":
        child_versions(args)
    elif args.render_only:
        out_dir = Path(args.out)
        (out_dir / "autocast_comparison.md").write_text(markdown(json.loads((out_dir / "autocast_comparison.json").read_text())))
    else:
        main_run(args)


if __name__ == "__main__":
    main()
