"""TensorRT's parser on the exported graphs: one NORMALIZATION layer per LayerNorm, fused attention
for opset 23, no shape arithmetic in a static graph, and one readable line for a rejected graph."""

from __future__ import annotations

import sys

import onnx
import pytest
from onnx import TensorProto, helper

from conftest import requires_rtx

from irdeploy.core.tensorrt import TensorRTUnavailable, flavour_of, import_tensorrt
from irdeploy.export.tensorrt_check import TensorRTParseError, check_onnx
from irdeploy.model.attention import ChannelAttention
from irdeploy.model.layers import LayerNorm2d

needs_rtx = requires_rtx


def _count(model, cls) -> int:
    return sum(isinstance(m, cls) for m in model.modules())


def _layernorm_nodes(path) -> int:
    return sum(n.op_type == "LayerNormalization" for n in onnx.load(path).graph.node)


@needs_rtx
@pytest.mark.parametrize("arch", ["m3snet", "mprnet", "mhnet"])
def test_one_normalization_layer_per_layernorm(tiny_onnx, arch):
    path, model = tiny_onnx(arch)
    result = check_onnx(path, flavour="rtx")
    assert result.ok, result.summary()
    modules = _count(model, LayerNorm2d)
    assert _layernorm_nodes(path) == modules
    assert result.normalization == modules
    assert result.attention == 0  # matmul attention stays MatMul -> Softmax -> MatMul
    assert result.layers["NORMALIZATION" if modules else "CONVOLUTION"] > 0


def test_normalization_counts_are_not_vacuous(tiny_onnx):
    """The tiny M3SNet and MHNet have LayerNorms; MPRNet has none (its count is an exact zero)."""
    assert _count(tiny_onnx("m3snet")[1], LayerNorm2d) > 0
    assert _count(tiny_onnx("mhnet")[1], LayerNorm2d) > 0
    assert _count(tiny_onnx("mprnet")[1], LayerNorm2d) == 0


@needs_rtx
def test_opset23_attention_becomes_attention_layer_pairs(tiny_onnx):
    path, model = tiny_onnx("m3snet", attention="onnx23")
    result = check_onnx(path, flavour="rtx")
    assert result.ok, result.summary()
    blocks = _count(model, ChannelAttention)
    assert blocks > 0
    assert result.layers["ATTENTION_INPUT"] == result.layers["ATTENTION_OUTPUT"] == blocks
    assert result.attention == blocks
    assert "MATRIX_MULTIPLY" not in result.layers
    assert result.normalization == _count(model, LayerNorm2d)


@needs_rtx
def test_static_graph_has_no_shape_arithmetic(tiny_onnx):
    path, model = tiny_onnx("m3snet", static=(1, 64, 64))
    result = check_onnx(path, flavour="rtx")
    assert result.ok, result.summary()
    assert result.layers.get("SHAPE", 0) == 0
    assert result.layers.get("GATHER", 0) == 0
    assert result.shape_layers == 0
    assert result.normalization == _count(model, LayerNorm2d)
    # The dynamic graph of the same model does carry TensorRT's own shape arithmetic.
    assert check_onnx(tiny_onnx("m3snet")[0], flavour="rtx").shape_layers > 0


@needs_rtx
def test_summary_and_dict_describe_the_network(tiny_onnx):
    result = check_onnx(tiny_onnx("m3snet", static=(1, 64, 64))[0].read_bytes(), flavour="rtx")
    line = result.summary()
    assert "\n" not in line
    assert line.startswith("TensorRT-RTX ") and f"NORMALIZATION {result.normalization}" in line
    data = result.to_dict()
    assert data["flavour"] == "rtx" and data["ok"] and data["errors"] == []
    assert data["normalization"] == result.normalization
    assert sum(data["layers"].values()) == sum(result.layers.values())


def _rejected_graph() -> bytes:
    """A valid ONNX graph whose second node (Unique) TensorRT has no layer for."""
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 8, 8])
    y = helper.make_tensor_value_info("output", TensorProto.FLOAT, ["n"])
    nodes = [
        helper.make_node("Relu", ["input"], ["r"], name="fine_relu"),
        helper.make_node("Unique", ["r"], ["output"], name="the_unique_node"),
    ]
    model = helper.make_model(helper.make_graph(nodes, "rejected", [x], [y]), opset_imports=[helper.make_opsetid("", 18)])
    onnx.checker.check_model(model)
    return model.SerializeToString()


@needs_rtx
def test_rejected_graph_gives_one_line_naming_the_node():
    result = check_onnx(_rejected_graph(), flavour="rtx")
    assert not result.ok
    assert result.errors[0].node_name == "the_unique_node"
    assert result.errors[0].op_type == "Unique"
    line = result.summary()
    assert "\n" not in line
    assert "the_unique_node" in line and "(Unique)" in line and "cannot parse" in line
    with pytest.raises(TensorRTParseError, match="the_unique_node") as info:
        result.raise_if_failed()
    assert "\n" not in str(info.value)


@needs_rtx
def test_missing_file_is_one_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such ONNX file"):
        check_onnx(tmp_path / "absent.onnx", flavour="rtx")


@needs_rtx
def test_auto_falls_back_to_rtx_when_tensorrt_does_not_import(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # makes `import tensorrt` raise ImportError
    trt = import_tensorrt("auto")
    assert flavour_of(trt) == "rtx"


def test_missing_tensorrt_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    monkeypatch.setitem(sys.modules, "tensorrt_rtx", None)
    with pytest.raises(TensorRTUnavailable, match="pip install tensorrt-rtx-cu13") as info:
        import_tensorrt("auto")
    assert "pip install tensorrt-cu13" in str(info.value)
    assert "\n" not in str(info.value)
    with pytest.raises(TensorRTUnavailable, match="tensorrt-cu13"):
        import_tensorrt("tensorrt")


def test_unknown_flavour_is_rejected():
    with pytest.raises(ValueError, match="unknown TensorRT flavour"):
        import_tensorrt("trt12")
