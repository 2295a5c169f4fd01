"""The runtime half of the padding contract (numpy only, no torch).

Exported graphs take H and W that are multiples of the network's ``pad_multiple`` and contain
no padding arithmetic (see :mod:`irdeploy.export.tracing`). Whoever runs a graph pads the batch
exactly as the eager model pads internally (``constant`` zeros for M3SNet/MHNet, ``reflect``
for MPRNet; both recorded in the ONNX metadata), runs it, and crops the result back.
"""

from __future__ import annotations

import numpy as np

PAD_MODES = ("constant", "reflect")


def aligned(size: int, multiple: int) -> int:
    """The smallest multiple of ``multiple`` that is >= ``size``."""
    return -(-size // multiple) * multiple


def pad_batch(batch: np.ndarray, multiple: int, mode: str = "constant") -> np.ndarray:
    """Pad an NCHW batch at the bottom/right to multiples of ``multiple`` (no copy if aligned)."""
    if mode not in PAD_MODES:
        raise ValueError(f"unknown pad mode {mode!r}; expected one of {', '.join(PAD_MODES)}")
    h, w = batch.shape[-2:]
    ph, pw = aligned(h, multiple) - h, aligned(w, multiple) - w
    if not (ph or pw):
        return batch
    if mode == "reflect" and (ph >= h or pw >= w):
        raise ValueError(f"input {h}x{w} is too small to reflect-pad to a multiple of {multiple}")
    return np.pad(batch, ((0, 0), (0, 0), (0, ph), (0, pw)), mode=mode)


def crop_batch(batch: np.ndarray, height: int, width: int) -> np.ndarray:
    return batch[..., :height, :width]
