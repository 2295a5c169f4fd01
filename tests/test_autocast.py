"""ModelOpt AutoCast wrapper: a one-line error without the extra, a real conversion with it.

The conversion tests run only where ``nvidia-modelopt[onnx]`` is installed (``pip install
"irdeploy[modelopt]"``); elsewhere they are skipped with the reason. Measured with ModelOpt 0.47
on the tiny models (two photographs, 32x48, ONNX Runtime CPU): M3SNet 70.5 dB against eager
float32 with every node FP16 (no activation passes 512), MHNet 64.3 dB, MPRNet 83.4 dB; the floor
for M3SNet is 50 dB.
"""

from __future__ import annotations

import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from irdeploy.export.autocast import INSTALL_HINT, ModelOptUnavailable, autocast_modelopt, modelopt_available
from irdeploy.core.images import psnr, read_image, sample_path

FLOAT, HALF = TensorProto.FLOAT, TensorProto.FLOAT16


def needs_modelopt() -> None:
    if not modelopt_available():
        pytest.skip(f"NVIDIA ModelOpt is not installed: {INSTALL_HINT}")


def run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def output_types(model: onnx.ModelProto) -> dict[str, int]:
    """Element type of every node output, from the graph's own value info and shape inference."""
    g = onnx.shape_inference.infer_shapes(model).graph
    return {v.name: v.type.tensor_type.elem_type for v in [*g.input, *g.value_info, *g.output]}


def scaled_graph(scale: float = 1000.0) -> onnx.ModelProto:
    """x -> Conv -> Mul(scale) -> Mul(1/scale) -> Relu -> y: one tensor far beyond FP16's comfort."""
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32) * 0.2, "w"),
        numpy_helper.from_array(np.array(scale, np.float32), "up"),
        numpy_helper.from_array(np.array(1.0 / scale, np.float32), "down"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Mul", ["c", "up"], ["big"], name="scale_up"),
        helper.make_node("Mul", ["big", "down"], ["small"], name="scale_down"),
        helper.make_node("Relu", ["small"], ["y"], name="relu"),
    ]
    graph = helper.make_graph(
        nodes, "scaled", [helper.make_tensor_value_info("x", FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", FLOAT, [1, 4, 8, 8])], inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def test_missing_modelopt_is_one_clear_line(monkeypatch):
    for name in ("modelopt", "modelopt.onnx", "modelopt.onnx.autocast"):
        monkeypatch.setitem(sys.modules, name, None)  # import now fails, installed or not
    assert not modelopt_available()
    with pytest.raises(ModelOptUnavailable) as info:
        autocast_modelopt(scaled_graph(), "fp16")
    message = str(info.value)
    assert isinstance(info.value, ImportError)
    assert "\n" not in message and len(message) < 200
    assert 'pip install ".[modelopt]"' in message
    assert "modelopt" in message.split(";")[0]  # says what is missing before what to do


def test_bad_precision_is_a_value_error():
    with pytest.raises(ValueError, match="fp16, bf16"):
        autocast_modelopt(scaled_graph(), "fp8")


def test_autocast_keeps_large_tensors_float32():
    needs_modelopt()
    x = np.random.default_rng(1).random((1, 3, 8, 8), dtype=np.float32)
    out = autocast_modelopt(scaled_graph(), "fp16", calibration=x)
    types = output_types(out)
    assert [types[v.name] for v in [*out.graph.input, *out.graph.output]] == [FLOAT, FLOAT]
    by_name = {n.name: n for n in out.graph.node}
    # Reference run: |big| > data_max (512), so both nodes touching it stay float32; conv goes low.
    assert types[by_name["scale_up"].output[0]] == FLOAT
    assert types[by_name["conv"].output[0]] == HALF
    np.testing.assert_allclose(run(out, x), run(scaled_graph(), x), atol=2e-2)
    # With the threshold above the data, everything goes low.
    all_low = autocast_modelopt(scaled_graph(), "fp16", calibration=x, data_max=1e6)
    assert output_types(all_low)[{n.name: n for n in all_low.graph.node}["scale_up"].output[0]] == HALF
    # Our float32 op list is honoured whatever the data says.
    kept = autocast_modelopt(scaled_graph(), "fp16", calibration=x, data_max=1e6, fp32_ops=["Conv"])
    assert output_types(kept)[{n.name: n for n in kept.graph.node}["conv"].output[0]] == FLOAT


def test_dynamic_graph_without_calibration_is_refused():
    needs_modelopt()
    model = scaled_graph()
    model.graph.input[0].type.tensor_type.shape.dim[2].dim_param = "H"
    with pytest.raises(ValueError, match="calibration"):
        autocast_modelopt(model, "fp16")


def test_autocast_tiny_m3snet_matches_eager(tiny_onnx, tmp_path):
    needs_modelopt()
    path, model = tiny_onnx("m3snet", static=(2, 32, 48))
    crops = [read_image(sample_path(name))[100:132, 100:148] for name in ("chelsea.png", "coffee.png")]
    x = np.ascontiguousarray(np.stack(crops).transpose(0, 3, 1, 2))
    out = autocast_modelopt(path, "fp16", calibration=x)  # a path works as well as a ModelProto
    onnx.checker.check_model(out)
    assert {v.type.tensor_type.elem_type for v in [*out.graph.input, *out.graph.output]} == {FLOAT}
    assert HALF in set(output_types(out).values())
    with torch.no_grad():
        reference = model(torch.from_numpy(x)).numpy()
    assert psnr(run(out, x), reference) > 50.0
