"""The runtime half of the padding contract (numpy only, no torch).

Exported graphs take H and W that are multiples of the network's ``pad_multiple`` and contain
no padding arithmetic (see :mod:`irdeploy.export.tracing`). Whoever runs a graph pads the batch
at the bottom and right with the mode recorded in the ONNX metadata (and engine sidecar), runs
it, and crops the result back.

Inference pads with :data:`INFERENCE_PAD_MODE` (``replicate``), not with upstream's mode: the
networks pad internally in their forward (zeros for M3SNet/MHNet/RUN, ``reflect`` for MPRNet),
and zeros, which they never saw in training, leave a bright line a few pixels inside the right
or bottom edge of an unaligned photograph (the quickstart checkpoint on chelsea.png: worst
border column 29.6 vs an interior of 2.7 on 0-255 with zeros, 0.8 with replicate;
``benchmarks/results/pad_modes-*``). The runtime pads before the network, so the network's own
pad is a no-op on the aligned input; upstream's mode stays selectable (``--pad-mode constant``).
"""

from __future__ import annotations

import numpy as np

PAD_MODES = ("constant", "reflect", "replicate")
INFERENCE_PAD_MODE = "replicate"
_NUMPY_MODES = {"constant": "constant", "reflect": "reflect", "replicate": "edge"}


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
    return np.pad(batch, ((0, 0), (0, 0), (0, ph), (0, pw)), mode=_NUMPY_MODES[mode])


def crop_batch(batch: np.ndarray, height: int, width: int) -> np.ndarray:
    return batch[..., :height, :width]
