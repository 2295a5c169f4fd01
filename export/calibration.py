"""Calibration data for INT8: crops of real photographs, and the record of which ones were used.

An INT8 graph's activation scales are measured, not derived: ONNX Runtime's calibrator runs the
float32 graph on these crops and records each quantized tensor's range. A restoration network
sees natural images, so it is calibrated on natural images (random inputs have a flat
spectrum and wider ranges than any photograph; calibrating on them wastes int8 levels). By
default the shipped photographs (:data:`irdeploy.core.images.SAMPLES`) are used; any folder of
images can be given instead.

The :class:`CalibrationRecord` (method and its percentile, crop size, each image's name and
sha256, one digest over them, and how the calibration ran: crops per graph run, tensor groups,
memory budget) goes into the graph's metadata and from there into the engine sidecar, so an
engine says what its scales were measured on.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from irdeploy.core.fileio import sha256_file, sha256_json
from irdeploy.core.images import SAMPLES, ImageError, read_image, sample_path
from irdeploy.core.pairs import PairingError, list_images
from irdeploy.core.precision import CALIBRATION_METHODS as METHODS

SHIPPED = "shipped photographs"


@dataclass(frozen=True)
class CalibrationRecord:
    """What an INT8 graph's scales were measured on (stored in its metadata and the sidecar)."""

    method: str
    source: str  # the folder, or "shipped photographs"
    images: tuple[dict[str, str], ...]  # {"name", "sha256"} per image, in the order used
    crops_per_image: int
    crop_size: str  # "HxW"
    sha256: str  # over method, crop settings and the images' digests
    # how it ran (export.int8_ranges); the ranges do not depend on it, so it is not in sha256
    crops_per_pass: int = 1  # crops in one graph run (a static batch feeds a batch)
    tensors: int = 0  # activation tensors calibrated
    tensor_groups: int = 1  # graph runs per crop
    budget_mib: int = 0  # calibration tensors one run may hold
    percentile: float | None = None  # Percentile's clipping point of |x| (in sha256); None for other methods

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "images": [dict(i) for i in self.images]}


def calibration_images(folder: str | os.PathLike | None = None) -> tuple[str, list[Path]]:
    """``(source, paths)``: the images of ``folder``, or the shipped photographs when ``None``.

    Raises ``ValueError`` (one line) for a missing folder or one without images.
    """
    if folder is None:
        return SHIPPED, [sample_path(name) for name in SAMPLES]
    try:
        return str(folder), list_images(folder)
    except PairingError as exc:
        raise ValueError(f"calibration: {exc}") from None


def calibration_crops(paths: list[Path], *, size: int | tuple[int, int], per_image: int, multiple: int = 1,
                      channels: int = 3, seed: int = 0) -> list[np.ndarray]:
    """``per_image`` random ``size`` crops (square, or ``(h, w)``) of each image as float32 1xCxHxW arrays.

    Sizes are rounded up to ``multiple`` so the graph runs the crops unpadded; an image smaller
    than a crop is mirrored up to it. Crops are seeded: the same folder calibrates the same way
    twice.
    """
    ch, cw = (size, size) if isinstance(size, int) else size
    ch, cw = -(-ch // multiple) * multiple, -(-cw // multiple) * multiple
    rng = np.random.default_rng(seed)
    crops = []
    for path in paths:
        try:
            image = read_image(path, channels=channels)
        except ImageError as exc:
            raise ValueError(f"calibration: {exc}") from None
        h, w = image.shape[:2]
        if h < ch or w < cw:
            image = np.pad(image, ((0, max(0, ch - h)), (0, max(0, cw - w)), (0, 0)), mode="symmetric")
            h, w = image.shape[:2]
        for _ in range(per_image):
            top, left = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
            crop = image[top:top + ch, left:left + cw].transpose(2, 0, 1)[None]
            crops.append(np.ascontiguousarray(crop, dtype=np.float32))
    return crops


def calibration_record(method: str, source: str, paths: list[Path], *, per_image: int, size: str,
                       batch: int = 1, plan=None, percentile: float | None = None) -> CalibrationRecord:
    """The record of a calibration; ``plan`` is the :class:`~irdeploy.export.int8_ranges.RangePlan`,
    ``percentile`` the Percentile method's clipping point (it changes the ranges, so it is hashed)."""
    images = tuple({"name": p.name, "sha256": sha256_file(p)} for p in paths)
    setting = {} if percentile is None else {"percentile": percentile}
    digest = sha256_json({"method": method, **setting, "crops_per_image": per_image, "crop_size": size,
                          "images": [i["sha256"] for i in images]})
    how = {} if plan is None else {"tensors": plan.tensors, "tensor_groups": plan.groups, "budget_mib": plan.budget_mib}
    return CalibrationRecord(method, source, images, per_image, size, digest, crops_per_pass=batch, **how,
                             percentile=percentile)


def crop_reader(crops, input_name: str = "input"):
    """An ONNX Runtime ``CalibrationDataReader`` that feeds ``crops`` (float32 NCHW) to
    ``input_name`` once each: the one reader the int8 benchmarks share (for ONNX Runtime's own
    ``quantize_static`` calibration).
    ONNX Runtime is imported here, not at module import, so image-only users of this module
    do not load its quantization tooling."""
    from onnxruntime.quantization import CalibrationDataReader

    class _CropReader(CalibrationDataReader):
        def __init__(self) -> None:
            self._crops = iter(crops)

        def get_next(self) -> dict[str, np.ndarray] | None:
            crop = next(self._crops, None)
            return None if crop is None else {input_name: crop}

    return _CropReader()
