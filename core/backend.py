"""One interface for every way irdeploy runs a model: ``backend.infer(batch) -> batch``.

Batches are float32 NCHW numpy arrays in [0, 1] of any H and W; each backend applies the
padding contract of its artifact (pad to the network's multiple, run, crop) here, once, so that
the export's parity gate, ``validate``, benchmarks and ``restore`` treat them alike. The base is
torch-free and lives in the core because every layer runs backends: the export gate runs ONNX
Runtime against eager PyTorch, the runtime adds TensorRT engines.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np

from .padding import crop_batch, pad_batch


class Backend(ABC):
    """A loaded model that restores NCHW float32 batches."""

    name: str
    pad_multiple: int = 1
    pad_mode: str = "constant"
    channels: int = 3  # image channels the network takes
    # The smallest and largest NCHW batch the artifact accepts after padding (a TensorRT
    # profile's min and max); None: any size.
    min_shape: tuple[int, ...] | None = None
    max_shape: tuple[int, ...] | None = None
    # How open_backend obtained the ONNX graph or engine (irdeploy.runtime.artifacts.Artifact).
    artifact: Any = None

    @property
    def alignment(self) -> int:
        """The H/W multiple the network computes on: tiles that start on it see the same
        downsampling grid as the whole image (see :mod:`irdeploy.runtime.tiling`)."""
        return self.pad_multiple

    def infer(self, batch: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        if batch.ndim != 4:
            raise ValueError(f"{self.name}: expected an NCHW batch, got shape {batch.shape}")
        h, w = batch.shape[-2:]
        out = self._run(pad_batch(batch, self.pad_multiple, self.pad_mode))
        return np.ascontiguousarray(crop_batch(out, h, w))

    @abstractmethod
    def _run(self, batch: np.ndarray) -> np.ndarray:
        """Run on a batch already padded to the multiple."""

    def close(self) -> None:
        """Release sessions, engines and device memory (idempotent)."""

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
