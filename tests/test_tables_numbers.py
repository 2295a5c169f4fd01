"""One number, one definition (issue #17, section 6): a figure two commands print is the same.

- parameters: the module's count (``irdeploy.model.stats.parameter_count``) in ``models``, the
  export report and ``inspect`` of the exported file (read back from its metadata);
- the exporter and folding pass ``inspect`` names for a file irdeploy exported;
- fp16 parity: ``validate --onnx`` re-runs the export's gate (same inputs, same emulation);
- the build summary names TensorRT's ATTENTION layers and the graph's attention cores apart,
  and reports the SHAPE layers its sidecar lists.
"""

from __future__ import annotations

from collections import Counter

import onnx
import pytest

from conftest import requires_rtx, tiny_model
from irdeploy.export import inspect_onnx, to_onnx
from irdeploy.export.parity import graph_parity
from irdeploy.model.stats import parameter_count


def test_parameters_and_exporter_are_the_same_in_export_and_inspect(tiny_onnx) -> None:
    path, model = tiny_onnx("m3snet")
    exported, inspected = tiny_onnx.reports[path], inspect_onnx(path, tensorrt=False)
    assert exported.parameters == inspected.parameters == parameter_count(model)
    assert inspected.exporter == exported.exporter and exported.exporter.startswith("torch.onnx.export(dynamo=True)")
    assert inspected.simplifier == exported.simplifier and "onnxscript" in inspected.simplifier
    rows = dict(inspected.lines())
    assert "unknown" not in rows["exporter"] and "n/a" not in rows["exporter"]
    assert rows["parameters"].startswith(f"{parameter_count(model) / 1e6:.2f} M")


def test_validate_reports_the_export_fp16_parity(tmp_path) -> None:
    model = tiny_model("m3snet")
    path = tmp_path / "m.fp16.onnx"
    report = to_onnx(model, path, precision="fp16", static_shape=(1, 48, 64), tensorrt=False)
    again, how = graph_parity(onnx.load(path), model)
    assert [c.psnr for c in again.cases] == pytest.approx([c.psnr for c in report.parity.cases], abs=1e-9)
    assert [c.shape for c in again.cases] == [c.shape for c in report.parity.cases]
    assert again.worst_psnr == pytest.approx(report.parity.worst_psnr, abs=1e-9) and "emulation" in how


@requires_rtx
def test_build_summary_names_attention_layers_and_graph_cores_apart(tiny_onnx, tmp_path) -> None:
    from irdeploy.runtime.tensorrt import build_engine

    path, _ = tiny_onnx("m3snet")  # dynamic N/H/W: TensorRT adds its own shape layers
    result = build_engine(path, tmp_path / "m.engine", precision="fp32", flavour="rtx",
                          shapes={"min": (1, 3, 32, 32), "opt": (1, 3, 64, 64), "max": (1, 3, 64, 64)})
    summary, net = result.summary(), result.sidecar["network"]
    assert net["attention_cores"] == dict(Counter(c.kind for c in inspect_onnx(path, tensorrt=False).attention_cores))
    assert f"ATTENTION layers {net['attention']}" in summary and "graph attention cores 1 x matmul-softmax-matmul" in summary
    assert f"SHAPE {net['layers'].get('SHAPE', 0)}" in summary and net["layers"].get("SHAPE", 0) > 0
