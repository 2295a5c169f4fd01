"""One runner hierarchy (#16): the export's parity gate and ``validate`` judge Backend objects.

Both paths open the candidate as a :class:`~irdeploy.core.backend.Backend` and hand it, with the
eager :class:`~irdeploy.export.torch_backend.TorchBackend`, to Polygraphy's comparator through
one adapter. The candidate here pads to three times the graph's multiple, a contract only its
own ``Backend.infer`` knows: a second pad/crop (to the graph's recorded multiple) would feed its
``_run`` a batch it refuses, and an eager reference that did not pad as the candidate does
differs by 2.7e-3 on the unaligned input (over fp32's 1e-3), so the gate would fail.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import TINY, tiny_model

from irdeploy.core.ort_backend import OnnxRuntimeBackend
from irdeploy.export import parity
from irdeploy.model.spec import pad_multiple


class CoarseOnnxRuntime(OnnxRuntimeBackend):
    """ONNX Runtime on a dynamic graph, padded to 3x its multiple (still a multiple, so legal)."""

    def __init__(self, graph, **options) -> None:
        super().__init__(graph, **options)
        self.pad_multiple *= 3
        self.name = f"coarse {self.name}"

    def _run(self, batch: np.ndarray) -> np.ndarray:
        if batch.shape[-2] % self.pad_multiple or batch.shape[-1] % self.pad_multiple:
            raise ValueError(f"{self.name}: {batch.shape} is not padded to {self.pad_multiple}")
        return super()._run(batch)


def test_export_gate_and_validate_run_the_same_backend(tmp_path, monkeypatch, capsys) -> None:
    from irdeploy.export import to_onnx
    from irdeploy.model import load_model, save_checkpoint
    from irdeploy.runtime.cli import main

    monkeypatch.setattr(parity, "OnnxRuntimeBackend", CoarseOnnxRuntime)
    checkpoint = save_checkpoint(tiny_model("m3snet"), tmp_path / "m.pth")
    model = load_model("m3snet", checkpoint, **TINY["m3snet"])
    graph = tmp_path / "m.onnx"
    gate = to_onnx(model, graph, tensorrt=False).parity
    assert gate.passed and gate.backend == "coarse ort (CPUExecutionProvider)", gate.summary()
    assert any(c.shape[-1] % (3 * pad_multiple(model)) for c in gate.cases)  # an unaligned input was judged

    args = [a for k, v in TINY["m3snet"].items() for a in ("--arg", f"{k}={json.dumps(v)}")]
    code = main(["validate", "--model", "m3snet", *args, "--checkpoint", str(checkpoint), "--onnx", str(graph)])
    out = capsys.readouterr().out
    assert code == 0 and "parity passed" in out and "coarse ort (CPUExecutionProvider)" in out, out


def test_compare_refuses_a_candidate_padded_off_the_networks_multiple(tiny_onnx) -> None:
    path, model = tiny_onnx("m3snet")
    m = pad_multiple(model)
    with OnnxRuntimeBackend(path, providers=["CPUExecutionProvider"], pad_multiple=m + m // 2) as candidate:
        with pytest.raises(ValueError, match=f"pads to a multiple of {m + m // 2}, but this model needs a multiple of {m}:"):
            parity.compare(model, candidate, parity.make_inputs(3, parity.parity_sizes(m))[:1], precision="fp32")
