"""What TensorRT-RTX does on a GPU it does not list (e.g. Hopper, compute capability 9.0).

NVIDIA lists RTX compute capabilities 7.5 to 12.x for TensorRT-RTX; data-centre Hopper is not
among them. This probe records, step by step and without stopping at the first failure, what
actually happens on the GPU it runs on:

1. build a tiny M3SNet engine ahead of time for the default RTX targets (works without a GPU);
2. build one for ``compute_capabilities=["current"]`` (asks the builder for this GPU);
3. load and run each engine: with the compute-capability check, then with
   ``allow_untargeted_gpu=True`` so that TensorRT-RTX's own just-in-time step decides;
4. when something runs, its PSNR against eager float32.

Each step is a row (``ok`` with figures, or the one-line error). Writes
``benchmarks/results/rtx_jit_probe-<gpu>-<date>.json``. Needs torch (to export the tiny model),
``tensorrt-rtx`` and ``cuda-bindings``; run from the repository root.
"""

from __future__ import annotations

import datetime
import json
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from irdeploy.export import to_onnx
from irdeploy.core.images import psnr
from irdeploy.model import create
from irdeploy.model.init import randomize_constants
from irdeploy.runtime.tensorrt import TensorRTEngine, build_engine
from irdeploy.runtime.tensorrt.device import current_gpu
from irdeploy.runtime.tensorrt.errors import NoGPUError

RESULTS = Path(__file__).parent / "results"
SHAPES = {"min": (1, 3, 32, 32), "opt": (1, 3, 64, 64), "max": (1, 3, 64, 64)}


def step(rows: list[dict[str, Any]], name: str, fn: Callable[[], Any]) -> Any:
    """Run one step, record ``ok`` and its figures or the error line, never raise."""
    try:
        value = fn()
        rows.append({"step": name, "ok": True, **(value if isinstance(value, dict) else {})})
        return value
    except Exception as exc:
        rows.append({"step": name, "ok": False, "error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"})
        return None


def main() -> int:
    try:
        gpu = current_gpu()
    except NoGPUError as exc:
        print(f"rtx_jit_probe: error: {exc}", file=sys.stderr)
        return 2
    torch.manual_seed(0)
    model = randomize_constants(create("m3snet", width=8, enc_blk_nums=[1, 1, 1, 1]), seed=0).eval()
    batch = np.random.default_rng(0).random((1, 3, 64, 64), dtype=np.float32)
    with torch.no_grad():
        reference = model(torch.from_numpy(batch)).numpy()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = Path(tmp) / "m3snet-tiny.onnx"
        to_onnx(model, onnx_path, tensorrt=False)
        engines = {}
        for label, targets in (("default RTX targets", None), ("current GPU", ["current"])):
            built = step(rows, f"build fp16 for {label}", lambda t=targets, lab=label: {
                "targets": build_engine(onnx_path, Path(tmp) / f"{lab.replace(' ', '_')}.engine", precision="fp16",
                                        shapes=SHAPES, flavour="rtx", compute_capabilities=t).sidecar["target"]})
            if built:
                engines[label] = Path(tmp) / f"{label.replace(' ', '_')}.engine"
        for label, path in engines.items():
            for untargeted in (False, True):
                def run(p: Path = path, u: bool = untargeted) -> dict:
                    with TensorRTEngine(p, allow_untargeted_gpu=u) as engine:
                        out = engine.infer(batch)
                    return {"psnr_db": round(psnr(out, reference), 2)}

                step(rows, f"run engine built for {label}" + (" (untargeted allowed)" if untargeted else ""), run)
    import tensorrt_rtx

    result = {"gpu": gpu.name, "compute_capability": gpu.compute_capability, "tensorrt_rtx": tensorrt_rtx.__version__,
              "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), "steps": rows}
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"rtx_jit_probe-{gpu.name.replace(' ', '_')}-{result['date'][:10]}.json"
    out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
