"""The INT8 export step: calibration crops -> Q/DQ graph -> placement check -> metadata.

Defaults, measured (``benchmarks/int8_calibration.py``, results in ``benchmarks/results/``):
Percentile (2048 bins) gave the highest PSNR against eager float32 on every tiny zoo model and
on the trained quickstart checkpoint, at the cost of MinMax; clipping at the 99.99th percentile
of |x| (:data:`~irdeploy.export.quantize.PERCENTILE`) rather than ONNX Runtime's 99.999th was
0.5-1.3 dB closer on all six tiny models and moved the quickstart's task ΔPSNR from -0.361 to
-0.288 dB; Entropy
(TensorRT's KL recipe) was no better and, in ONNX Runtime's pure-Python search, 50-300x slower
to calibrate. Four 128x128 crops of each image: the calibrator sees 65 k pixels per image, and
a crop is large enough for the U-Nets' bottom levels (1/16 of the size) to see context.

The input convolutions stay float by default (``input_convs="float"``): the Conv nodes that read
the image itself (:func:`~irdeploy.export.quantize.input_convolutions`) see a [0, 1] image,
which symmetric int8 keeps in 128 of its 256 levels; the int8 audit ranked that layer worst on
the trained quickstart model, and keeping it float moved the task-level ΔPSNR against float32
from -0.56 to -0.36 dB (``benchmarks/int8_table.py task-inputs``). It is a 3-channel input, a small share of
the MACs (0.3% of M3SNet-32's at 256x256). ``input_convs="int8"`` quantizes them too.
"""

from __future__ import annotations

import os
from collections.abc import Collection
from typing import Any

import numpy as np
import onnx

from .calibration import calibration_crops, calibration_images, calibration_record
from .quantize import BUDGET_MIB, CALIBRATORS, input_convolutions, placement_problems, quantize_int8

DEFAULT_METHOD = "percentile"
CROP_SIZE = 128
CROPS_PER_IMAGE = 4
INPUT_CONVS = ("float", "int8")  # the first is the default


class PlacementError(ValueError):
    """The quantizer produced a Q/DQ placement TensorRT would reject or run unfused."""


def quantize_for_export(
    model_fp32: onnx.ModelProto,
    multiple: int,
    channels: int = 3,
    *,
    calibration: str | os.PathLike | None = None,
    method: str | None = None,
    fp32_nodes: Collection[str] = (),
    crop_size: int | tuple[int, int] = CROP_SIZE,
    crops_per_image: int = CROPS_PER_IMAGE,
    batch: int | None = None,
    input_convs: str = INPUT_CONVS[0],
    budget_mib: int = BUDGET_MIB,
) -> tuple[onnx.ModelProto, dict[str, Any]]:
    """``(int8 graph, metadata extra)`` for ``to_onnx``: calibrated on ``calibration``'s images.

    A static graph is calibrated at its own size: pass ``crop_size=(H, W)`` and, for a fixed
    batch above one, ``batch`` (the crops are then fed ``batch`` at a time).

    The extra holds the :class:`~irdeploy.export.calibration.CalibrationRecord` and what was
    quantized; it lands in the graph metadata and, through the build, in the engine sidecar.
    """
    from irdeploy.core.progress import step

    method = method or DEFAULT_METHOD
    if input_convs not in INPUT_CONVS:
        raise ValueError(f"input_convs must be one of {', '.join(INPUT_CONVS)}, not {input_convs!r}")
    kept_inputs = input_convolutions(model_fp32) if input_convs == "float" else []
    keep = list(dict.fromkeys([*fp32_nodes, *kept_inputs]))
    source, paths = calibration_images(calibration)
    crops = calibration_crops(paths, size=crop_size, per_image=crops_per_image, multiple=multiple, channels=channels)
    size = "x".join(map(str, crops[0].shape[-2:]))
    if batch and batch > 1:
        crops = crops * -(-batch // len(crops))  # at least one full batch
        crops = [np.concatenate(crops[i:i + batch]) for i in range(0, len(crops) - batch + 1, batch)]
    with step(f"calibrating int8 ({method}) on {len(crops)} crops of {len(paths)} images from {source}"):
        quantized, info = quantize_int8(model_fp32, crops, method=method, fp32_nodes=keep, budget_mib=budget_mib)
    problems = placement_problems(quantized)
    if problems:
        raise PlacementError(f"int8 graph has a Q/DQ placement TensorRT cannot fuse: {problems[0]}"
                             + (f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""))
    record = calibration_record(method, source, paths, per_image=crops_per_image, size=size,
                                batch=crops[0].shape[0], plan=info.ranges,
                                percentile=CALIBRATORS[method][1].get("percentile"))
    extra = {"calibration": record.to_dict(),
             "int8": {"quantized": info.quantized, "activations": info.activations, "fp32_nodes": list(fp32_nodes),
                      "input_convs": input_convs, "float_input_convs": kept_inputs}}
    return quantized, extra
