"""TensorRT engines as a :class:`~irdeploy.core.backend.Backend`, the backend only the runtime has.

The interface, its pad/crop, ONNX Runtime and the provider order are in the core
(:mod:`irdeploy.core.backend`, :mod:`irdeploy.core.ort_backend`) and eager PyTorch in the export
layer (:mod:`irdeploy.export.torch_backend`), because the export's parity gate runs them too;
``validate`` judges an engine with the same comparator adapter (:mod:`irdeploy.export.parity`).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from irdeploy.core.backend import Backend


class TensorRTBackend(Backend):
    """A TensorRT engine (needs an NVIDIA GPU); padding from the engine's sidecar."""

    def __init__(self, path: str | os.PathLike, **engine_options: Any) -> None:
        from .tensorrt import TensorRTEngine

        self.engine = TensorRTEngine(path, **engine_options)
        self.pad_multiple = self.engine.pad_multiple
        self.pad_mode = self.engine.sidecar.get("pad_mode", "constant")
        self.device = "cuda"
        self.min_shape = tuple(self.engine.profile.min)
        self.max_shape = tuple(self.engine.profile.max)
        self.channels = int(self.engine.profile.max[1])

    @property
    def name(self) -> str:  # type: ignore[override]
        """With the launch path (it changes if a CUDA-graph capture fails): end-to-end and
        compute-only figures both time that path."""
        return f"tensorrt ({self.engine.sidecar.get('precision', '?')}, {self.engine.launch_path})"

    def _run(self, batch: np.ndarray) -> np.ndarray:
        return np.asarray(self.engine.infer(batch), dtype=np.float32)  # BF16/FP16/FP8 engine outputs too

    def close(self) -> None:
        self.engine.close()
