"""Precision names, spelled once for the export, the engine build, the benchmark and the CLI.

A graph (and an eager run) is float32 or mixed precision with float16 or bfloat16 compute; an
engine build adds ``tf32`` (a float32 graph with TF32 matmuls) and ``best`` (fp16 compute with
TF32 allowed), which are builder settings rather than graph types. ``int8`` is a graph with
calibrated Q/DQ pairs; its engine runs the float parts through the fp16 policy.
"""

from __future__ import annotations

from collections.abc import Sequence

PRECISIONS = ("fp32", "fp16", "bf16")  # what an ONNX graph or an eager run computes in
REDUCED = ("fp16", "bf16")  # the mixed-precision graphs (float32 inputs/outputs, 16-bit inside)
QUANTIZED = ("int8",)  # Q/DQ graphs: int8 Conv/ConvTranspose/MatMul inputs, calibrated (irdeploy.export.quantize)
EXPORT_PRECISIONS = (*PRECISIONS, *QUANTIZED)  # what ``irdeploy export --precision`` writes
ENGINE_PRECISIONS = ("fp32", "tf32", "fp16", "bf16", "best", "int8")  # TensorRT build settings
# int8 activation-range calibrators (ONNX Runtime's MinMax, Percentile, Entropy; see irdeploy.export.int8)
CALIBRATION_METHODS = ("minmax", "percentile", "entropy")


def check_precision(precision: str, allowed: Sequence[str] = PRECISIONS) -> str:
    """``precision`` if it is one of ``allowed``, else ``ValueError`` naming the choices."""
    if precision not in allowed:
        raise ValueError(f"unknown precision {precision!r}; choose from {', '.join(allowed)}")
    return precision
