"""Everything irdeploy can check on an NVIDIA GPU, in one command that fits a borrowed machine.

Made for a GPU box lent for a few minutes: no network, about ten minutes per command and fifteen
in all, the checkout copied over with little beside it. Packages come as wheels in a folder
(``--wheels DIR``, cp312 wheels downloaded elsewhere with ``pip download --no-deps
--only-binary=:all: --python-version 3.12 --platform manylinux_2_28_x86_64 ...``) and are
installed with ``pip install --no-index --no-deps --target``; nothing is fetched.

Every stage runs in its own process with its own time limit, and every stage runs even when an
earlier one failed, ordered by what a short lease is worth spending on:

1. ``info``: what is there (GPU, compute capability, driver and CUDA versions, torch and its
   CUDA, which TensorRT flavours import, ONNX Runtime's providers);
2. ``cuda``: the cuda-bindings layer on the real driver (pinned copies, a stream, timing events,
   a CUDA graph captured around a stand-in kernel and replayed), checked byte for byte;
3. ``rtx``: TensorRT-RTX on this GPU: a tiny engine built for the default targets and for
   ``current``, each loaded and run (and, where the GPU is not a target, run again untargeted),
   PSNR against ONNX Runtime on the CPU; on Hopper the one-line refusals are the result;
4. ``tests``: ``pytest tests/gpu`` (real engines of the tiny models) and the rule tests;
5. ``torch``: ``benchmarks/gpu_torch.py`` (torch eager fp16/bf16 parity, torch.compile, CUDA
   graphs) at a small size;
6. ``bench``: ``irdeploy bench`` on a tiny M3SNet with every backend and precision that runs here;
7. ``bench-full`` (``--full``): the full-size benchmark, a separate stage with its own limit.

New stages (e.g. an int8 engine row) go in :data:`STAGES`. The whole check, without
``bench-full``, is planned to stay under 8 minutes on an H100/H200.

Writes ``benchmarks/results/gpu_check-<device>-<date>.json`` (machine, per-stage status, seconds,
limits and results) and ``.log`` (every stage's output). ``--dry-run`` runs the same stages on a
CPU against :mod:`irdeploy.runtime.tensorrt.simulated` (a simulated H200) so that CI keeps the
script working; its files go to a temporary folder unless ``--out`` is given.

    python benchmarks/gpu_check.py --wheels wheels/          # on the GPU machine
    python benchmarks/gpu_check.py --dry-run                 # anywhere
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
RESULT_MARK = "GPUCHECK-RESULT "
DRY_GPU = ("Simulated NVIDIA H200", "9.0")  # the dry run's GPU: Hopper, which TensorRT-RTX does not target
TINY = ["--model", "m3snet", "--arg", "width=8", "--arg", "enc_blk_nums=[1,1,1,1]"]


@dataclass
class Stage:
    """One step of the check: ``argv(dry_run, ctx)`` is run as its own process under ``limit`` seconds."""

    name: str
    limit: int
    proves: str
    argv: Callable[[bool, dict[str, Any]], list[str] | None]
    optional: bool = False  # only with --full


def _self(stage: str) -> Callable[[bool, dict[str, Any]], list[str]]:
    return lambda dry, ctx: [sys.executable, str(Path(__file__).resolve()), "--stage", stage, *(["--dry-run"] if dry else [])]


def _tests(dry: bool, ctx: dict[str, Any]) -> list[str]:
    return [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", str(ROOT / "tests" / "gpu"),
            str(ROOT / "tests" / "test_gpu_engine_rules.py")]


def _torch(dry: bool, ctx: dict[str, Any]) -> list[str]:
    script = str(ROOT / "benchmarks" / "gpu_torch.py")
    # the dry run has no CUDA device: it checks that the script imports and parses its arguments
    return [sys.executable, script, "--help"] if dry else [sys.executable, script, "--models", "m3snet-32", "--size", "128", "--iters", "20"]


def _bench(full: bool) -> Callable[[bool, dict[str, Any]], list[str]]:
    def argv(dry: bool, ctx: dict[str, Any]) -> list[str]:
        out = str(Path(ctx["out"]) / f"gpu_check-{ctx['device']}-{ctx['date']}-bench{'-full' if full else ''}")
        if dry:
            # torch eager runs, the trt row is skipped with its reason; no export, so CI stays quick
            return [sys.executable, "-m", "irdeploy", "bench", *TINY, "--device", "cpu", "--backends", "torch,trt",
                    "--precisions", "fp32", "--shapes", "1x3x32x32", "--iterations", "2", "--warmup", "0",
                    "--warmup-seconds", "0", "--quiet", "--out", out]
        model = ["--model", "m3snet-32"] if full else TINY
        shapes = "1x3x256x256,1x3x720x1280" if full else "1x3x256x256"
        return [sys.executable, "-m", "irdeploy", "bench", *model, "--device", "cuda",
                "--backends", "torch,torch-compile,ort,trt", "--precisions", "fp32,fp16,bf16", "--shapes", shapes,
                "--iterations", "50" if full else "20", "--quiet", "--out", out]

    return argv


def _int8(dry: bool, ctx: dict[str, Any]) -> list[str]:
    """The int8 engine row (issue #18): tiny M3SNet calibrated on the shipped photographs, ORT's
    int8 kernels and the TensorRT int8 engine beside fp32, PSNR against eager beside each latency."""
    out = str(Path(ctx["out"]) / f"gpu_check-{ctx['device']}-{ctx['date']}-int8")
    device = ["--device", "cpu", "--backends", "ort"] if dry else ["--device", "cuda", "--backends", "ort,trt"]
    return [sys.executable, "-m", "irdeploy", "bench", *TINY, *device, "--precisions", "fp32,int8",
            "--shapes", "1x3x64x64" if dry else "1x3x256x256", "--iterations", "2" if dry else "20",
            *(["--warmup", "0", "--warmup-seconds", "0"] if dry else []), "--quiet", "--out", out]


# Ordered by value for a short lease; each stage's limit is its own, the sum (without bench-full)
# stays inside the 8-minute plan. Add new stages (an int8 engine row, ...) here.
STAGES = [
    Stage("info", 60, "what this machine has: GPU, driver, CUDA, torch, TensorRT flavours, ORT providers", _self("info")),
    Stage("cuda", 60, "cuda-bindings on the real driver: pinned copies, stream, events, graph capture and replay",
          _self("cuda")),
    Stage("rtx", 120, "TensorRT-RTX builds for default targets and 'current', loads and runs a tiny engine",
          _self("rtx")),
    Stage("tests", 150, "tests/gpu: real engines of the tiny models, every precision, graphs, parity", _tests),
    Stage("torch", 90, "torch eager fp16/bf16 parity, torch.compile and CUDA graphs on this GPU", _torch),
    Stage("bench", 120, "irdeploy bench rows that run here (tiny M3SNet, every backend and precision)", _bench(False)),
    Stage("int8", 90, "int8 rows: the calibrated Q/DQ graph in ONNX Runtime and as a TensorRT engine, with PSNR", _int8),
    Stage("bench-full", 540, "the full-size M3SNet-32 benchmark at 256x256 and 720p", _bench(True), optional=True),
]


# -- stages run in their own process ----------------------------------------------------------------


def stage_info(dry: bool) -> dict[str, Any]:
    """What is installed and visible, without importing both TensorRT flavours into one process."""
    import importlib.metadata
    import importlib.util

    info: dict[str, Any] = {"python": sys.version.split()[0]}
    if dry:
        info.update(gpu=DRY_GPU[0], compute_capability=DRY_GPU[1], driver="simulated", dry_run=True)
    else:
        smi = subprocess.run(["nvidia-smi", "--query-gpu=name,compute_cap,driver_version,memory.total", "--format=csv,noheader"],
                             capture_output=True, text=True) if _which("nvidia-smi") else None
        info["nvidia_smi"] = smi.stdout.strip() if smi and smi.returncode == 0 else "unavailable"
        try:
            from irdeploy.runtime.tensorrt.device import _versions, cuda_version, cudart, current_gpu

            gpu = current_gpu()
            driver, runtime = _versions(cudart())
            info.update(gpu=gpu.name, compute_capability=gpu.compute_capability,
                        driver_cuda=cuda_version(driver), runtime_cuda=cuda_version(runtime))
        except Exception as exc:  # the line itself is the finding (no GPU, driver too old, ...)
            info["gpu_error"] = _line(exc)
    for dist in ("torch", "onnxruntime", "onnxruntime-gpu", "tensorrt", "tensorrt-cu12", "tensorrt-cu13", "tensorrt-rtx-cu13",
                 "cuda-bindings", "numpy", "onnx"):
        try:
            info.setdefault("versions", {})[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            pass
    info["tensorrt_modules"] = {m: importlib.util.find_spec(m) is not None for m in ("tensorrt", "tensorrt_rtx")}
    probe = ("import torch; print(torch.__version__, torch.version.cuda, torch.cuda.is_available())")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    info["torch"] = done.stdout.strip() or _last(done.stderr)
    done = subprocess.run([sys.executable, "-c", "import onnxruntime as o; print(o.__version__, o.get_available_providers())"],
                          capture_output=True, text=True, timeout=60)
    info["onnxruntime"] = done.stdout.strip() or _last(done.stderr)
    return info


def stage_cuda(rt: Any) -> dict[str, Any]:
    """Pinned host memory, async copies on a stream, events, and a captured graph around a
    device-to-device copy (the stand-in kernel), each checked against the bytes it should move."""
    import ctypes

    import numpy as np

    from irdeploy.runtime.tensorrt.device import _versions, check, cuda_version, current_gpu

    gpu = current_gpu()
    driver, runtime = _versions(rt)
    n = 1 << 20
    nbytes = n * 4
    host_a, host_b = (check(rt.cudaMallocHost(nbytes), "cudaMallocHost") for _ in range(2))
    a, b = (np.frombuffer((ctypes.c_uint8 * nbytes).from_address(p), dtype=np.float32) for p in (host_a, host_b))
    a[:] = np.arange(n, dtype=np.float32)
    dev_a, dev_b = (check(rt.cudaMalloc(nbytes), "cudaMalloc") for _ in range(2))
    stream = check(rt.cudaStreamCreate(), "cudaStreamCreate")
    start, end = (check(rt.cudaEventCreate(), "cudaEventCreate") for _ in range(2))
    kind = rt.cudaMemcpyKind
    try:
        check(rt.cudaMemcpyAsync(dev_a, host_a, nbytes, kind.cudaMemcpyHostToDevice, stream), "cudaMemcpyAsync")
        check(rt.cudaEventRecord(start, stream), "cudaEventRecord")
        check(rt.cudaMemcpyAsync(dev_b, dev_a, nbytes, kind.cudaMemcpyDeviceToDevice, stream), "cudaMemcpyAsync")
        check(rt.cudaEventRecord(end, stream), "cudaEventRecord")
        check(rt.cudaMemcpyAsync(host_b, dev_b, nbytes, kind.cudaMemcpyDeviceToHost, stream), "cudaMemcpyAsync")
        check(rt.cudaStreamSynchronize(stream), "cudaStreamSynchronize")
        copy_ok = bool(np.array_equal(a, b))
        copy_ms = float(check(rt.cudaEventElapsedTime(start, end), "cudaEventElapsedTime"))
        # graph: capture the device-to-device copy once, clear the target, replay, compare
        check(rt.cudaStreamBeginCapture(stream, rt.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal),
              "cudaStreamBeginCapture")
        try:
            check(rt.cudaMemcpyAsync(dev_b, dev_a, nbytes, kind.cudaMemcpyDeviceToDevice, stream), "cudaMemcpyAsync")
        finally:
            graph = check(rt.cudaStreamEndCapture(stream), "cudaStreamEndCapture")
        graph_exec = check(rt.cudaGraphInstantiate(graph, 0), "cudaGraphInstantiate")
        b[:] = 0
        check(rt.cudaMemcpyAsync(dev_b, host_b, nbytes, kind.cudaMemcpyHostToDevice, stream), "cudaMemcpyAsync")
        check(rt.cudaGraphLaunch(graph_exec, stream), "cudaGraphLaunch")
        check(rt.cudaMemcpyAsync(host_b, dev_b, nbytes, kind.cudaMemcpyDeviceToHost, stream), "cudaMemcpyAsync")
        check(rt.cudaStreamSynchronize(stream), "cudaStreamSynchronize")
        graph_ok = bool(np.array_equal(a, b))
        check(rt.cudaGraphExecDestroy(graph_exec), "cudaGraphExecDestroy")
        check(rt.cudaGraphDestroy(graph), "cudaGraphDestroy")
    finally:
        for event in (start, end):
            rt.cudaEventDestroy(event)
        rt.cudaStreamDestroy(stream)
        for p in (dev_a, dev_b):
            rt.cudaFree(p)
        for p in (host_a, host_b):
            rt.cudaFreeHost(p)
    if not (copy_ok and graph_ok):
        raise RuntimeError(f"bytes differ after the {'copies' if not copy_ok else 'graph replay'}")
    return {"gpu": gpu.name, "compute_capability": gpu.compute_capability, "driver_cuda": cuda_version(driver),
            "runtime_cuda": cuda_version(runtime), "copy_ok": copy_ok, "graph_replay_ok": graph_ok,
            "d2d_copy_ms": round(copy_ms, 4), "d2d_gbps": round(2 * nbytes / copy_ms / 1e6, 1) if copy_ms > 0 else None}


def _tiny_onnx(path: Path) -> None:
    """A conv + ReLU graph on a static 1x3x32x32 input: TensorRT builds it in about a second."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.standard_normal((3, 3, 3, 3)).astype(np.float32) * 0.3, "w")
    bias = numpy_helper.from_array(rng.standard_normal(3).astype(np.float32) * 0.1, "b")
    nodes = [helper.make_node("Conv", ["input", "w", "b"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c"], ["output"])]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 32, 32])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 3, 32, 32])], [weight, bias])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), path)


def stage_rtx(dry: bool) -> dict[str, Any]:
    """Build for the default targets and for 'current'; load and run each (checked, then untargeted)."""
    import numpy as np
    import onnxruntime as ort

    from irdeploy.core.images import psnr
    from irdeploy.runtime.tensorrt import TensorRTEngine, build_engine

    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="irdeploy-gpucheck-") as tmp:
        onnx_path = Path(tmp) / "tiny.onnx"
        _tiny_onnx(onnx_path)
        batch = np.random.default_rng(1).random((1, 3, 32, 32), dtype=np.float32)
        reference = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"]).run(None, {"input": batch})[0]
        engines = {}
        for label, targets in (("default RTX targets", None), ("current GPU", ["current"])):
            path = Path(tmp) / f"{label.replace(' ', '_')}.engine"
            built = _row(rows, f"build fp16 for {label}", lambda p=path, t=targets: {
                "targets": build_engine(onnx_path, p, precision="fp16", flavour="rtx", compute_capabilities=t).sidecar["target"]})
            if built:
                engines[label] = path
        if dry:  # the simulator runs simulated engines, not TensorRT's: run one with the same checks
            from irdeploy.runtime.tensorrt import simulated

            engines = {"simulated engine for 8.9": simulated.write_engine(Path(tmp) / "sim.engine", flavour="rtx", gpu=("x", "8.9"),
                                                                          profile=((1, 3, 32, 32),) * 3)}
            reference = (0.5 * batch + 0.25).astype(np.float32)
        for label, path in engines.items():
            for untargeted in (False, True):
                def run(p: Path = path, u: bool = untargeted) -> dict[str, Any]:
                    with TensorRTEngine(p, allow_untargeted_gpu=u) as engine:
                        out = np.asarray(engine.infer(batch), dtype=np.float32)
                    return {"psnr_db": round(float(psnr(out, reference)), 2)}

                _row(rows, f"run engine built for {label}" + (" (untargeted allowed)" if untargeted else ""), run)
    import importlib.metadata

    try:
        version = importlib.metadata.version("tensorrt-rtx-cu13")
    except importlib.metadata.PackageNotFoundError:
        version = None
    return {"tensorrt_rtx": version, "steps": rows}


def _row(rows: list[dict[str, Any]], name: str, fn: Callable[[], Any]) -> Any:
    """One probe step: ``ok`` with its figures, or its one-line error; never raises."""
    try:
        value = fn()
        rows.append({"step": name, "ok": True, **(value if isinstance(value, dict) else {})})
        return value
    except Exception as exc:
        rows.append({"step": name, "ok": False, "error": _line(exc)})
        return None


def run_stage(name: str, dry: bool) -> int:
    """``--stage NAME``: run one in-process stage and print its result as one marked JSON line."""
    if name == "info":
        result = stage_info(dry)
    elif dry:
        from irdeploy.runtime.tensorrt.simulated import SimulatedCuda, simulate

        with simulate(SimulatedCuda(gpus=(DRY_GPU,))) as cuda:
            result = stage_cuda(cuda) if name == "cuda" else stage_rtx(dry)
    else:
        from irdeploy.runtime.tensorrt.device import cudart

        result = stage_cuda(cudart()) if name == "cuda" else stage_rtx(dry)
    print(RESULT_MARK + json.dumps(result))
    failed = name == "rtx" and not any(r["ok"] for r in result["steps"] if r["step"].startswith("run"))
    return 1 if failed else 0


# -- the driver ------------------------------------------------------------------------------------------


def _which(cmd: str) -> bool:
    return any((Path(d) / cmd).is_file() for d in os.environ.get("PATH", "").split(os.pathsep))


def _line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300]}" if text else type(exc).__name__


def _last(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


def _site(site: Path, wheels: Path | None, dry: bool, log: Any) -> dict[str, Any]:
    """Install ``wheels`` into ``site`` (no index, no dependencies) and make this checkout importable
    there as ``irdeploy``; what was found and done."""
    site.mkdir(parents=True, exist_ok=True)
    found = sorted(p.name for p in wheels.glob("*.whl")) if wheels else []
    report: dict[str, Any] = {"site": str(site), "wheels": found}
    if wheels and not found:
        report["error"] = f"no .whl files in {wheels}"
    elif found and not dry:
        cmd = [sys.executable, "-m", "pip", "install", "--no-index", "--no-deps", "--quiet", "--target", str(site),
               *(str(wheels / w) for w in found)]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        log.write(f"$ {' '.join(cmd)}\n{done.stdout}{done.stderr}\n")
        report["installed"] = done.returncode == 0
        if done.returncode:
            report["error"] = _last(done.stderr)
    link = site / "irdeploy"
    if not link.exists():
        link.symlink_to(ROOT, target_is_directory=True)
    return report


def _run(stage: Stage, argv: list[str], env: dict[str, str], log: Any, limit: float) -> dict[str, Any]:
    """Run one stage under ``limit`` seconds (its own, or what is left of the budget); its whole
    process group is killed at the limit."""
    log.write(f"\n===== {stage.name} (limit {limit:.0f} s): {stage.proves}\n$ {' '.join(argv)}\n")
    log.flush()
    start = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT,
                            start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=limit)
        status = "ok" if proc.returncode == 0 else "failed"
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        status = "timeout"
    seconds = round(time.monotonic() - start, 1)
    log.write(output + f"\n----- {stage.name}: {status} after {seconds} s (rc {proc.returncode})\n")
    log.flush()
    result = None
    for line in output.splitlines():
        if line.startswith(RESULT_MARK):
            result = json.loads(line[len(RESULT_MARK):])
    return {"stage": stage.name, "status": status, "rc": proc.returncode, "seconds": seconds, "limit": round(limit),
            "proves": stage.proves, "result": result, "tail": _last(output) if status != "ok" else None}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wheels", type=Path, help="folder of wheels to install (pip --no-index --no-deps --target)")
    parser.add_argument("--site", type=Path, help="where they are installed (default: a folder under the system temp dir)")
    parser.add_argument("--dry-run", action="store_true", help="run every stage on this CPU against the simulator")
    parser.add_argument("--full", action="store_true", help="also run the full-size benchmark stage")
    parser.add_argument("--budget", type=float, default=570,
                        help="seconds for the whole check (default: %(default)s, inside a 10-minute command limit); "
                             "a stage gets its own limit or what is left, and none starts with under 10 s left")
    parser.add_argument("--stages", help="comma-separated subset, e.g. info,cuda,rtx")
    parser.add_argument("--out", type=Path, help="folder for the JSON summary and log (default benchmarks/results; "
                        "a temporary folder for --dry-run)")
    parser.add_argument("--stage", help=argparse.SUPPRESS)  # internal: run one in-process stage
    args = parser.parse_args(argv)
    if args.stage:
        return run_stage(args.stage, args.dry_run)
    names = [s.name for s in STAGES]
    chosen = args.stages.split(",") if args.stages else [s.name for s in STAGES if args.full or not s.optional]
    unknown = [n for n in chosen if n not in names]
    if unknown:
        print(f"gpu_check: error: unknown stage {', '.join(unknown)}; choose from {', '.join(names)}", file=sys.stderr)
        return 2
    if args.wheels and not args.wheels.is_dir():
        print(f"gpu_check: error: --wheels {args.wheels}: not a folder", file=sys.stderr)
        return 2
    out = args.out or (Path(tempfile.mkdtemp(prefix="irdeploy-gpucheck-dry-")) if args.dry_run else RESULTS)
    out.mkdir(parents=True, exist_ok=True)
    site = args.site or Path(tempfile.gettempdir()) / ("irdeploy-gpu-site-dry" if args.dry_run else "irdeploy-gpu-site")
    date = datetime.datetime.now(datetime.timezone.utc)
    ctx: dict[str, Any] = {"out": str(out), "date": date.strftime("%Y-%m-%d"), "device": "pending"}
    log_path = out / f"gpu_check-pending-{date.strftime('%Y%m%dT%H%M%S')}.log"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(log_path, "w") as log:
        log.write(f"gpu_check {'dry run ' if args.dry_run else ''}{date.isoformat(timespec='seconds')}\n")
        install = _site(site, args.wheels, args.dry_run, log)
        env["PYTHONPATH"] = os.pathsep.join([str(site), *([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])])
        print(f"gpu_check: wheels {len(install['wheels'])} from {args.wheels or '-'} -> {site}"
              + (f" ({install['error']})" if "error" in install else ""))
        stages = []
        deadline = time.monotonic() + args.budget
        for stage in STAGES:
            if stage.name not in chosen:
                continue
            left = deadline - time.monotonic()
            if left < 10:
                stages.append({"stage": stage.name, "status": "not started", "rc": None, "seconds": 0, "limit": stage.limit,
                               "proves": stage.proves, "result": None, "tail": f"the {args.budget:.0f} s budget was spent"})
                print(f"gpu_check: {stage.name}: not started (the {args.budget:.0f} s budget was spent)", flush=True)
                continue
            limit = min(stage.limit, left)
            print(f"gpu_check: {stage.name} (limit {limit:.0f} s): {stage.proves}", flush=True)
            record = _run(stage, stage.argv(args.dry_run, ctx), env, log, limit)
            stages.append(record)
            if stage.name == "info" and record["result"]:
                info = record["result"]
                gpu = re.sub(r"[^A-Za-z0-9.]+", "_", info.get("gpu", "no-gpu")).strip("_")
                ctx["device"] = f"dry-run-{gpu}" if args.dry_run else gpu
                print("gpu_check: found " + "; ".join(f"{k} {v}" for k, v in info.items() if k != "versions"))
            print(f"gpu_check: {stage.name}: {record['status']} in {record['seconds']} s"
                  + (f" ({record['tail']})" if record["tail"] else ""), flush=True)
    stem = f"gpu_check-{ctx['device']}-{ctx['date']}"
    final_log = out / f"{stem}.log"
    log_path.replace(final_log)
    summary = {"device": ctx["device"], "date": date.isoformat(timespec="seconds"), "dry_run": args.dry_run,
               "install": install, "stages": stages, "log": final_log.name}
    (out / f"{stem}.json").write_text(json.dumps(summary, indent=1) + "\n")
    failed = [s["stage"] for s in stages if s["status"] != "ok"]
    print(f"gpu_check: wrote {out / (stem + '.json')} and {final_log.name}; "
          + (f"not ok: {', '.join(failed)}" if failed else "every stage ok"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
