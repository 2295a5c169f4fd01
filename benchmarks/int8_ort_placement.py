"""Why ONNX Runtime's CPU int8 is not faster on irdeploy's TensorRT-placed Q/DQ graph: measured.

ONNX Runtime fuses ``DQ -> Conv -> Q`` into its integer ``QLinearConv``; irdeploy's int8 graph
has Q/DQ on convolution *inputs* only (what TensorRT fuses, and all TensorRT-RTX accepts), so ORT
fuses only the convolutions whose output goes straight into another convolution's Q and runs the
rest as float convolutions with extra Q/DQ work. For comparison this script quantizes the same
static M3SNet-32 graph the way ORT's CPU guide recommends (QDQ on inputs and outputs, uint8
activations, MinMax on two 256x256 photo crops) and times the three graphs interleaved (2
threads, under ``flock /tmp/irdeploy-timing.lock``), with the fused-op counts of ORT's optimized
graphs and PSNR against the float32 graph on the timed input.

Needs ``benchmarks/int8_table.py convert --models m3snet-32`` first (its work folder).
Usage: flock /tmp/irdeploy-timing.lock python benchmarks/int8_ort_placement.py
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

WORK = Path("/tmp/irdeploy-int8-bench")
OUT = Path(__file__).parent / "results"


def main() -> int:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    from irdeploy.core.images import psnr
    from irdeploy.export.calibration import calibration_crops, calibration_images, crop_reader
    from irdeploy.export.quantize import MIN_OPSET, _at_least_opset

    fp32_path = WORK / "m3snet-32-fp32.onnx"
    onnx.save(_at_least_opset(onnx.load(fp32_path), MIN_OPSET), WORK / "m3snet-32-fp32-19.onnx")
    crops = calibration_crops(calibration_images()[1][:2], size=256, per_image=1, multiple=16)

    ort_style = WORK / "m3snet-32-int8-ort-placement.onnx"
    quantize_static(str(WORK / "m3snet-32-fp32-19.onnx"), str(ort_style), crop_reader(crops), quant_format=QuantFormat.QDQ,
                    op_types_to_quantize=["Conv"], per_channel=True, activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax,
                    extra_options={"WeightSymmetric": True})
    result: dict = {"uptime_before": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip(), "rows": {}}
    x = np.random.default_rng(0).random((1, 3, 256, 256), dtype=np.float32)
    graphs = {"fp32": fp32_path, "int8 (irdeploy, TensorRT placement)": WORK / "m3snet-32-int8.onnx",
              "int8 (ORT CPU placement)": ort_style}
    sessions = {}
    for k, (name, path) in enumerate(graphs.items()):
        options = ort.SessionOptions()
        options.intra_op_num_threads = 2
        options.log_severity_level = 3
        options.optimized_model_filepath = str(WORK / f"ort-optimized-{k}.onnx")
        sessions[name] = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        sessions[name].run(None, {"input": x})
    times: dict[str, list[float]] = {k: [] for k in sessions}
    outs = {}
    for _ in range(7):
        for name, session in sessions.items():
            start = time.perf_counter()
            outs[name] = session.run(None, {"input": x})[0]
            times[name].append(time.perf_counter() - start)
    for k, name in enumerate(sessions):
        ops = Counter(n.op_type for n in onnx.load(WORK / f"ort-optimized-{k}.onnx").graph.node)
        result["rows"][name] = {
            "median_ms": round(1e3 * statistics.median(times[name]), 1),
            "speedup_vs_fp32_per_round_median": round(statistics.median(f / t for f, t in zip(times["fp32"], times[name])), 2),
            "psnr_vs_fp32": psnr(outs[name], outs["fp32"]),
            "ort_optimized_ops": {o: ops[o] for o in ("QLinearConv", "Conv", "FusedConv", "QuantizeLinear", "DequantizeLinear") if ops[o]},
        }
    result["uptime_after"] = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    result["onnxruntime"] = ort.__version__
    (OUT / "int8_ort_placement-2026-12-01.json").write_text(json.dumps(result, indent=1, default=str) + "\n")
    print(json.dumps(result, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
