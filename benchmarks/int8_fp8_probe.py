"""FP8 (E4M3) on these networks: does TensorRT-RTX build it, and what does it cost in PSNR?

A tiny M3SNet (random weights, constants randomised) is exported in float32 and quantized twice
with ONNX Runtime's ``quantize_static``: FP8 E4M3 (its Distribution calibrator, per tensor, the
only FP8 path it has) on every convolution except the depthwise/grouped ones (TensorRT has no
optimised FP8 kernels for those, NVIDIA/TensorRT#4524), and irdeploy's int8 (per-channel,
percentile) on every convolution. Both run in ONNX Runtime's CPU provider (FP8 as
dequantize-then-float: no FP8 kernels) against the float32 graph on a photo crop; the FP8 graph
is parsed and built by TensorRT-RTX for SM 8.9 on this CPU-only machine.

Usage: python benchmarks/int8_fp8_probe.py   (writes benchmarks/results/int8_fp8_probe-<date>.json)
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def main() -> int:
    from conftest import tiny_model
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    from irdeploy.core.images import psnr
    from irdeploy.export import to_onnx
    from irdeploy.export.calibration import calibration_crops, calibration_images, crop_reader
    from irdeploy.export.int8_audit import node_kinds
    from irdeploy.export.quantize import MIN_OPSET, _at_least_opset, attention_products, quantize_int8

    torch.set_num_threads(2)
    tmp = Path(tempfile.mkdtemp(prefix="irdeploy-fp8-"))
    to_onnx(tiny_model("m3snet"), tmp / "fp32.onnx", tensorrt=False, parity=False)
    fp32 = _at_least_opset(onnx.load(tmp / "fp32.onnx"), MIN_OPSET)
    onnx.save(fp32, tmp / "fp32-19.onnx")
    kinds = node_kinds(fp32)
    excluded = [n for n, k in kinds.items() if k in ("depthwise conv", "grouped conv")] + attention_products(fp32)
    crops = calibration_crops(calibration_images()[1], size=64, per_image=2, multiple=16)

    start = time.perf_counter()
    quantize_static(str(tmp / "fp32-19.onnx"), str(tmp / "fp8.onnx"), crop_reader(crops), quant_format=QuantFormat.QDQ,
                    op_types_to_quantize=["Conv"], activation_type=QuantType.QFLOAT8E4M3FN,
                    weight_type=QuantType.QFLOAT8E4M3FN, calibrate_method=CalibrationMethod.Distribution,
                    nodes_to_exclude=excluded,
                    extra_options={"QuantizeBias": False, "OpTypesToExcludeOutputQuantization": ["Conv"],
                                   "DedicatedQDQPair": True})
    fp8_seconds = time.perf_counter() - start
    int8, _ = quantize_int8(fp32, crops)
    x = crops[1]

    def run(model) -> np.ndarray:
        data = model if isinstance(model, (str, bytes)) else model.SerializeToString()
        return ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]

    ref = run(str(tmp / "fp32-19.onnx"))
    result = {"date": dt.date.today().isoformat(), "model": "tiny m3snet (tests/conftest.py TINY), random weights",
              "convs": sum(k.endswith("conv") for k in kinds.values()), "fp8_excluded": len(excluded),
              "fp8_quantize_seconds": round(fp8_seconds, 1),
              "psnr_vs_fp32": {"fp8_e4m3": psnr(run(str(tmp / "fp8.onnx")), ref), "int8": psnr(run(int8), ref)},
              "onnxruntime": ort.__version__}
    import tensorrt_rtx as trt

    logger = trt.Logger(trt.Logger.ERROR)
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    result["rtx_parse"] = bool(parser.parse((tmp / "fp8.onnx").read_bytes()))
    if result["rtx_parse"]:
        config = builder.create_builder_config()
        profile = builder.create_optimization_profile()
        profile.set_shape("input", (1, 3, 32, 32), (1, 3, 64, 64), (1, 3, 64, 64))
        config.add_optimization_profile(profile)
        config.num_compute_capabilities = 1
        config.set_compute_capability(trt.ComputeCapability.SM89, 0)
        start = time.perf_counter()
        result["rtx_build_sm89"] = builder.build_serialized_network(network, config) is not None
        result["rtx_build_seconds"] = round(time.perf_counter() - start, 1)
    result["tensorrt_rtx"] = trt.__version__
    out = Path(__file__).parent / "results" / f"int8_fp8_probe-{result['date']}.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
