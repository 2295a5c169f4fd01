"""Eager PyTorch as a :class:`~irdeploy.core.backend.Backend`: the reference every artifact is judged by.

In the export layer because the parity gate runs it against ONNX Runtime (the export may not
import the runtime) and it needs torch, which the core never imports; torch is imported when a
backend is made, so importing this module stays torch-free (``irdeploy.runtime.bench`` does).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from irdeploy.core.backend import Backend
from irdeploy.core.padding import INFERENCE_PAD_MODE, PAD_MODES


class TorchBackend(Backend):
    """Eager PyTorch (optionally ``torch.compile``).

    Pads unaligned inputs with ``pad_mode`` before the network, as the graph backends do (the
    network's own pad, upstream's mode, is then a no-op): every backend restores the same pixels.
    """

    def __init__(self, model: Any, *, device: str = "cpu", compile: bool = False,
                 pad_mode: str = INFERENCE_PAD_MODE) -> None:
        import torch

        if pad_mode not in PAD_MODES:
            raise ValueError(f"unknown pad mode {pad_mode!r}; choose from {', '.join(PAD_MODES)}")
        from irdeploy.model.spec import pad_multiple, record_of

        self.pad_multiple = pad_multiple(model)
        self.pad_mode = pad_mode
        spec = record_of(model).spec

        self.torch = torch
        self.device = torch.device(device)
        self.model = model.eval().to(self.device)
        self.runner = torch.compile(self.model) if compile else self.model
        self.name = "torch-compile" if compile else "torch"
        self.final_image = spec.image
        self.channels = record_of(model).channels

    def _run(self, batch: np.ndarray) -> np.ndarray:
        torch = self.torch
        with torch.inference_mode():
            out = self.runner(torch.from_numpy(batch).to(self.device))
        return self.final_image(out).float().cpu().numpy()

    def infer_tensor(self, batch: Any) -> Any:
        """Device-resident variant: a torch tensor in, a torch tensor out, no host copies."""
        with self.torch.inference_mode():
            return self.final_image(self.runner(batch))
