"""The FP16/BF16 graph pass: valid ONNX, float32 edges, islands where the policy puts them,
parity with the eager float32 model, and a strongly typed TensorRT-RTX build.

PSNR floors (dB, against eager float32, two real photographs cropped to 64x96):

- FP16 run by ONNX Runtime: measured 70.8 (M3SNet), 80.7 (MPRNet), 65.1 (MHNet); floor 55.
- On the rounding twin (:func:`emulate_low_precision`, every stored tensor rounded), which
  ONNX Runtime's own FP16 understates: FP16 66.6 / 75.3 / 61.8, floor 55; BF16 49.0 / 56.1 /
  42.5, floor 36 (MHNet lowest: its top-k attention amplifies small differences). BF16 is only
  emulated: ONNX Runtime's CPU provider has no BF16 kernels for Conv, Add, Mul, MatMul, ...
- Float32 graph for scale: 136 / 144 / 130 dB.
"""

from __future__ import annotations

import ml_dtypes
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from conftest import TINY
from onnx import TensorProto, helper, numpy_helper

from irdeploy.core.images import psnr, read_image, sample_path
from irdeploy.export.precision import BF16_FP32_OPS, DEFAULT_FP32_OPS, emulate_low_precision, to_mixed_precision

LOW = {"fp16": TensorProto.FLOAT16, "bf16": TensorProto.BFLOAT16}
FLOOR = {"fp16": 55.0, "bf16": 36.0}


def photos(height: int = 64, width: int = 96) -> np.ndarray:
    """Centre crops of both sample photographs as one float32 NCHW batch."""
    crops = []
    for name in ("chelsea.png", "coffee.png"):
        img = read_image(sample_path(name))
        top, left = (img.shape[0] - height) // 2, (img.shape[1] - width) // 2
        crops.append(img[top:top + height, left:left + width])
    return np.ascontiguousarray(np.stack(crops).transpose(0, 3, 1, 2))


def eager(model: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        out = model(torch.from_numpy(x))
    return (out[0] if isinstance(out, (list, tuple)) else out).numpy()


def run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def elem_types(model: onnx.ModelProto) -> dict[str, int]:
    g = model.graph
    types = {t.name: t.data_type for t in g.initializer}
    types.update({v.name: v.type.tensor_type.elem_type for v in [*g.input, *g.value_info, *g.output]})
    return types


@pytest.fixture(scope="module")
def mixed(tiny_onnx):
    """``mixed(arch, precision, attention="matmul") -> (graph, info, eager_model)``, cached."""
    cache: dict = {}

    def get(arch: str, precision: str, attention: str = "matmul"):
        if (arch, precision, attention) not in cache:
            path, model = tiny_onnx(arch, attention=attention)
            graph, info = to_mixed_precision(onnx.load(path), precision)
            cache[arch, precision, attention] = (graph, info, model)
        return cache[arch, precision, attention]

    return get


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
@pytest.mark.parametrize("arch", list(TINY))
def test_valid_graph_with_islands_where_the_policy_says(mixed, arch: str, precision: str) -> None:
    graph, info, _ = mixed(arch, precision)
    onnx.checker.check_model(graph, full_check=True)
    types = elem_types(graph)
    low = LOW[precision]
    assert [types[v.name] for v in [*graph.graph.input, *graph.graph.output]] == [TensorProto.FLOAT] * 2
    outputs = {v.name for v in graph.graph.output}
    policy = DEFAULT_FP32_OPS | (BF16_FP32_OPS if precision == "bf16" else frozenset())
    for node in graph.graph.node:
        out = types[node.output[0]]
        if outputs.intersection(node.output) or node.op_type in policy:
            assert out == TensorProto.FLOAT, node.name
        elif out != TensorProto.INT64 and node.op_type in ("Conv", "LayerNormalization", "MatMul", "Softmax", "Mul"):
            assert out == low, node.name
        if node.op_type == "Resize":
            assert types[node.input[2]] == TensorProto.FLOAT  # scales are coordinates
    expect_fp32 = sum(n.op_type in policy for n in graph.graph.node) + 1  # + the output Add
    if arch == "mhnet" and precision == "bf16":
        expect_fp32 += 1  # TopK takes bfloat16 only from opset 24
    assert info.fp32_nodes == expect_fp32
    assert info.fp32_islands == info.fp32_nodes  # every island is one node in these graphs
    assert 0 < info.fp32_share < 0.1
    assert info.casts_inserted == sum(n.op_type == "Cast" for n in graph.graph.node)


@pytest.mark.parametrize("arch", list(TINY))
def test_fp16_runs_in_onnxruntime_close_to_eager(mixed, arch: str) -> None:
    graph, _, model = mixed(arch, "fp16")
    x = photos()
    reference = eager(model, x)
    assert psnr(run(graph, x), reference) > FLOOR["fp16"]
    assert psnr(run(emulate_low_precision(graph), x), reference) > FLOOR["fp16"]


@pytest.mark.parametrize("arch", list(TINY))
def test_bf16_emulated_close_to_eager(mixed, arch: str) -> None:
    graph, _, model = mixed(arch, "bf16")
    twin = emulate_low_precision(graph)
    onnx.checker.check_model(twin, full_check=True)
    assert not any(t.data_type == TensorProto.BFLOAT16 for t in twin.graph.initializer)
    x = photos()
    value = psnr(run(twin, x), eager(model, x))
    assert FLOOR["bf16"] < value < 80.0  # rounding really happens: not the float32 graph


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_opset23_attention_goes_low(mixed, precision: str) -> None:
    graph, _, model = mixed("m3snet", precision, "onnx23")
    onnx.checker.check_model(graph, full_check=True)
    types = elem_types(graph)
    (attention,) = [n for n in graph.graph.node if n.op_type == "Attention"]
    assert {types[name] for name in [*attention.input, *attention.output]} == {LOW[precision]}
    x = photos()
    runnable = graph if precision == "fp16" else emulate_low_precision(graph)
    assert psnr(run(runnable, x), eager(model, x)) > FLOOR[precision]


@pytest.mark.parametrize(
    ("arch", "precision", "attention"),
    [("m3snet", "fp16", "matmul"), ("mhnet", "bf16", "matmul"), ("m3snet", "bf16", "onnx23")],
)
def test_strongly_typed_tensorrt_rtx_build(mixed, arch: str, precision: str, attention: str) -> None:
    try:
        import tensorrt_rtx as trt
    except ImportError as exc:
        pytest.skip(f"tensorrt_rtx is not importable ({exc}); install irdeploy[rtx]")
    graph, _, model = mixed(arch, precision, attention)
    logger = trt.Logger(trt.Logger.ERROR)
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    assert parser.parse(graph.SerializeToString()), [str(parser.get_error(i)) for i in range(parser.num_errors)]
    low = {"fp16": trt.DataType.HALF, "bf16": trt.DataType.BF16}[precision]
    layers = [network.get_layer(i) for i in range(network.num_layers)]
    assert {l.get_output(0).dtype for l in layers if l.type == trt.LayerType.CONVOLUTION} == {low}
    assert {l.get_output(0).dtype for l in layers if l.type == trt.LayerType.REDUCE} == {trt.DataType.FLOAT}
    for layer in layers:  # no dedicated kernel for channel attention's shapes: let TensorRT decompose it
        if layer.type == trt.LayerType.ATTENTION_INPUT:
            layer.__class__ = trt.IAttentionInputLayer
            layer.attention.decomposable = True
    config = builder.create_builder_config()
    profile = builder.create_optimization_profile()
    m = model.pad_multiple
    profile.set_shape("input", (1, 3, m, m), (1, 3, 4 * m, 4 * m), (2, 3, 8 * m, 8 * m))
    config.add_optimization_profile(profile)
    assert builder.build_serialized_network(network, config) is not None


def test_unknown_precision_is_one_clear_line() -> None:
    graph = _graph([helper.make_node("Relu", ["x"], ["y"])], [])
    with pytest.raises(ValueError, match=r"^unknown precision 'fp8'; choose from fp16, bf16$"):
        to_mixed_precision(graph, "fp8")


def test_weight_read_in_both_precisions_is_duplicated() -> None:
    w = numpy_helper.from_array(np.full((1, 4), 70000.0, np.float32), "w")  # beyond float16's range
    nodes = [helper.make_node("Mul", ["x", "w"], ["a"], name="low"),
             helper.make_node("Add", ["a", "w"], ["y"], name="out")]  # writes the output: float32
    graph, info = to_mixed_precision(_graph(nodes, [w]), "fp16")
    onnx.checker.check_model(graph, full_check=True)
    inits = {t.name: numpy_helper.to_array(t) for t in graph.graph.initializer}
    assert inits["w"].dtype == np.float32 and inits["w_fp16"].dtype == np.float16
    assert np.isfinite(inits["w_fp16"]).all()  # clipped to 65504, not inf
    assert (info.low_nodes, info.fp32_nodes, info.fp32_islands, info.casts_inserted) == (1, 1, 1, 2)


def test_constants_lift_and_exact_cast_pairs_fold() -> None:
    half = helper.make_tensor("half", TensorProto.FLOAT, [], [0.5])
    nodes = [
        helper.make_node("Cast", ["x"], ["h"], to=TensorProto.FLOAT16, name="down"),
        helper.make_node("Cast", ["h"], ["f"], to=TensorProto.FLOAT, name="up"),  # kept float32
        helper.make_node("Constant", [], ["c"], value=half, name="const"),
        helper.make_node("Mul", ["f", "c"], ["m"], name="mul"),
        helper.make_node("Neg", ["m"], ["y"], name="neg"),
    ]
    graph, _ = to_mixed_precision(_graph(nodes, []), "fp16", fp32_nodes=["up", "neg"])
    onnx.checker.check_model(graph, full_check=True)
    ops = {n.name: n for n in graph.graph.node}
    # Mul reads the float16 tensor directly: Cast(up) -> Cast(back to fp16) was folded away.
    assert "up" not in ops and list(ops["mul"].input) == ["h", "c"]
    assert graph.graph.initializer[0].data_type == TensorProto.FLOAT16
    x = np.linspace(-3, 3, 8, dtype=np.float32).reshape(2, 4)
    expected = -(x.astype(np.float16) * np.float16(0.5)).astype(np.float32)
    np.testing.assert_array_equal(run(emulate_low_precision(graph), x), expected)


def test_lossy_cast_pair_is_kept() -> None:
    nodes = [helper.make_node("Cast", ["x"], ["h"], to=TensorProto.FLOAT16),
             helper.make_node("Cast", ["h"], ["y"], to=TensorProto.FLOAT)]
    graph, _ = to_mixed_precision(_graph(nodes, []), "fp16")
    assert [n.op_type for n in graph.graph.node] == ["Cast", "Cast"]
    x = np.array([[1.0001, 2049.0, 3.1416, -0.3]] * 2, np.float32)
    np.testing.assert_array_equal(run(graph, x), x.astype(np.float16).astype(np.float32))


def test_resize_coordinates_stay_float32() -> None:
    scales = numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")
    nodes = [helper.make_node("Resize", ["x", "", "scales"], ["r"], mode="linear", name="resize"),
             helper.make_node("Relu", ["r"], ["y"])]
    model = _graph(nodes, [scales], shape=[1, 1, 2, 2], out_shape=[1, 1, 4, 4])
    graph, _ = to_mixed_precision(model, "bf16")
    onnx.checker.check_model(graph, full_check=True)
    types = elem_types(graph)
    assert types["scales"] == TensorProto.FLOAT and types["r"] == TensorProto.BFLOAT16
    assert [o.version for o in graph.opset_import] == [22]  # Conv & co. take bfloat16 from 22


def test_emulation_rounds_like_the_real_type() -> None:
    k = numpy_helper.from_array(np.array(1.37, np.float32), "k")
    nodes = [helper.make_node("Mul", ["x", "k"], ["a"]), helper.make_node("Mul", ["a", "k"], ["b"]),
             helper.make_node("Relu", ["b"], ["y"])]
    x = np.random.default_rng(0).uniform(1, 5, (2, 4)).astype(np.float32)
    for precision, dtype in (("fp16", np.float16), ("bf16", ml_dtypes.bfloat16)):
        graph, _ = to_mixed_precision(_graph(nodes, [k]), precision, fp32_nodes=())
        r = lambda v: v.astype(dtype).astype(np.float32)  # noqa: E731
        kk = r(np.float32(1.37))
        np.testing.assert_array_equal(run(emulate_low_precision(graph), x), r(r(r(x) * kk) * kk))


def _graph(nodes, inits, shape=(2, 4), out_shape=None) -> onnx.ModelProto:
    g = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(out_shape or shape))], inits,
    )
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])
