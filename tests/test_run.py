"""RUN: window attention, the heterogeneous U-Net, training, and its ONNX export and engine build."""

from __future__ import annotations

import math

import numpy as np
import onnx
import pytest
import torch
from conftest import TINY, requires_rtx, tiny_model

from irdeploy.export import graph
from irdeploy.core.images import read_image, sample_path, to_batch
from irdeploy.model import create
from irdeploy.model.attention import ChannelAttention, WindowAttention
from irdeploy.model.init import randomize_constants
from irdeploy.model.layers import LayerNorm2d, NAFBlock
from irdeploy.model.run import AttentionBlock
from irdeploy.core.ort_backend import OnnxRuntimeBackend

STATIC = (1, 64, 64)


def _attention_blocks(model: torch.nn.Module) -> int:
    return sum(isinstance(m, AttentionBlock) for m in model.modules())


def _dense_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Softmax attention written out, as the reference for F.scaled_dot_product_attention."""
    logits = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    return torch.softmax(logits, dim=-1) @ v


def test_levels_use_the_operators_the_paper_describes() -> None:
    model = tiny_model("run")
    top_enc, top_dec = model.encoders[0][0], model.decoders[-1][0]
    assert isinstance(top_enc.attn, WindowAttention) and isinstance(top_dec.attn, WindowAttention)
    assert all(isinstance(b, NAFBlock) for level in (1, 2) for b in model.encoders[level])
    assert all(isinstance(b, NAFBlock) for j in (0, 1) for b in model.decoders[j])
    assert all(isinstance(b.attn, ChannelAttention) for b in model.middle_blks)
    assert model.pad_multiple == 8 and model.pad_mode == "constant"


def test_window_attention_is_dense_attention_inside_each_window() -> None:
    torch.manual_seed(1)
    attn = WindowAttention(8, num_heads=2, window_size=4).eval()
    x = torch.rand(1, 8, 8, 12)
    with torch.no_grad():
        out = attn(x)
        q, k, v = attn.qkv_dwconv(attn.qkv(x)).chunk(3, dim=1)
        expected = torch.zeros_like(x)
        for i in range(0, 8, 4):
            for j in range(0, 12, 4):
                heads = [t[..., i:i + 4, j:j + 4].reshape(1, 2, 4, 16).transpose(-2, -1) for t in (q, k, v)]
                o = _dense_attention(*heads).transpose(-2, -1).reshape(1, 8, 4, 4)
                expected[..., i:i + 4, j:j + 4] = o
        expected = attn.project_out(expected)
    assert torch.allclose(out, expected, atol=1e-5)


def test_windows_do_not_see_each_other_beyond_the_depthwise_conv() -> None:
    torch.manual_seed(2)
    attn = WindowAttention(4, num_heads=1, window_size=8).eval()
    x = torch.rand(1, 4, 16, 16)
    y = x.clone()
    y[..., 0, 0] += 1.0
    with torch.no_grad():
        a, b = attn(x), attn(y)
    changed = (a - b).abs().amax(dim=1)[0] > 0
    assert changed[:8, :8].any()
    # the 3x3 depthwise conv reaches one pixel into the neighbouring windows, attention no further
    assert not changed[9:, :].any() and not changed[:, 9:].any()


@pytest.mark.parametrize("size", [(1, 1), (13, 29), (37, 45), (64, 24)])
def test_any_size_batch_independent(size: tuple[int, int]) -> None:
    model = tiny_model("run")
    x = torch.rand(2, 3, *size)
    with torch.no_grad():
        out = model(x)
        single = model(x[1:])
    assert out.shape == x.shape
    assert torch.allclose(out[1:], single, atol=1e-5)


def test_window_attention_pads_any_size() -> None:
    attn = WindowAttention(4, num_heads=2, window_size=8).eval()
    x = torch.rand(1, 4, 10, 13)
    with torch.no_grad():
        out = attn(x)
        padded = attn(torch.nn.functional.pad(x, (0, 3, 0, 6)))
    assert out.shape == x.shape and torch.allclose(out, padded[..., :10, :13], atol=1e-6)


def test_pad_multiple_follows_window_and_level() -> None:
    with torch.device("meta"):
        assert create("run", width=8, window_size=16).pad_multiple == 16
        deep_ssa = create("run", width=8, level_ops=["ssa", "ssa", "conv", "csa"], window_size=8)
        assert deep_ssa.pad_multiple == 16  # level 1 works at half size: 8-pixel windows need 16 input pixels
        assert create("run", width=8, window_size=6).pad_multiple == 24  # lcm(8, 6)
    model = randomize_constants(create("run", **{**TINY["run"], "level_ops": ["ssa", "ssa", "conv", "csa"]})).eval()
    with torch.no_grad():
        assert model(torch.rand(1, 3, 21, 35)).shape == (1, 3, 21, 35)


def test_bad_configurations_are_one_line() -> None:
    cases = [
        (dict(level_ops=["ssa", "conv", "csa"]), "level_ops needs 4 entries"),
        (dict(num_heads=[1, 2]), "num_heads needs 4 entries"),
        (dict(level_ops=["ssa", "mlp", "conv", "csa"]), "unknown level operator"),
        (dict(width=6, num_heads=[4, 1, 1, 1]), "attention width 6 is not divisible by 4 heads"),
        (dict(window_size=0), "window_size=0 \\(must be at least 1\\)"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ValueError, match=message):
            create("run", **{**TINY["run"], **kwargs})
    with pytest.raises(TypeError, match="unknown argument.*windows"):
        create("run-s", windows=8)


def test_backward_reaches_every_parameter() -> None:
    model = randomize_constants(create("run", **TINY["run"])).train()
    x = torch.rand(2, 3, 24, 40)
    out = model(x)
    torch.sqrt((out - torch.rand_like(x)) ** 2 + 1e-6).mean().backward()
    for name, param in model.named_parameters():
        assert param.grad is not None, f"{name} got no gradient"
        assert torch.isfinite(param.grad).all() and param.grad.abs().sum() > 0, f"{name}: gradient {param.grad}"


def test_presets_and_stats() -> None:
    from irdeploy.model.stats import model_stats

    with torch.device("meta"):
        small, base = create("run-s"), create("run-b")
    s, b = model_stats(small), model_stats(base)
    assert s.parameters < b.parameters and s.gmacs < b.gmacs
    # the counter sees the window attention's two matmuls (2 x pixels x window^2 x width MACs)
    # besides its three convs, so RUN's GMACs compare with the other models'
    c, pixels = 32, 64 * 48
    attn = WindowAttention(c, num_heads=2, window_size=8)
    convs = pixels * (c * 3 * c + 3 * c * 9 + c * c)
    assert model_stats(attn, size=(64, 48), channels=c).gmacs * 1e9 == pytest.approx(convs + 2 * pixels * 64 * c)


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    """A real photograph crop, NCHW float32, off the padding multiple."""
    return to_batch(read_image(sample_path())[:75, :90])


@pytest.mark.parametrize("static", [None, STATIC], ids=["dynamic", "static"])
def test_export_is_clean_and_matches_eager(tiny_onnx, photo, static) -> None:
    path, model = tiny_onnx("run", static=static)
    report = tiny_onnx.reports[path]
    assert report.parity.passed and len(report.parity.cases) == 3
    proto = onnx.load(path)
    layernorms = sum(isinstance(m, LayerNorm2d) for m in model.modules())
    assert graph.problems(proto, layernorms) == []
    assert report.layernorm_nodes == layernorms
    ops = graph.op_histogram(proto)
    assert ops["Pad"] == 0 and ops["Attention"] == 0 and ops["Gather"] == 0
    cores = graph.attention_cores(proto)
    assert len(cores) == _attention_blocks(model) == 3  # 2 SSA + 1 CSA
    assert {c.kind for c in cores} == {"matmul-softmax-matmul"} and ops["Softmax"] == len(cores)
    if static:
        assert graph.is_static(proto) and not graph.shape_arithmetic(proto)
        return
    x = np.concatenate([photo, photo[..., ::-1, :]])  # batch 2, 75x90: off the multiple of 8
    with torch.no_grad():
        ref = model(torch.from_numpy(x.copy())).numpy()
    # The backend pads with the inference default (replicate); the eager reference pads as
    # upstream does inside the network, so the backend is given the network's own mode.
    out = OnnxRuntimeBackend(path, providers=["CPUExecutionProvider"], pad_mode=model.pad_mode).infer(x)
    assert out.shape == ref.shape and np.abs(out - ref).max() < 1e-4


def test_window_core_has_nothing_between(tiny_onnx) -> None:
    """Each SSA core: q and k scaled by a Mul each, then MatMul -> Softmax -> MatMul."""
    path, _ = tiny_onnx("run", static=STATIC)
    proto = onnx.load(path)
    producer = {o: n for n in proto.graph.node for o in n.output}
    nodes = {n.name: n for n in proto.graph.node}
    window_cores = 0
    for core in graph.attention_cores(proto):
        first, softmax, second = (nodes[name] for name in core.nodes)
        assert producer[softmax.input[0]] is first and softmax.output[0] in second.input
        inputs = [producer[i] for i in first.input]
        if all(n.op_type == "Mul" for n in inputs) and not any(producer.get(i) and producer[i].op_type == "Div"
                                                             for n in inputs for i in n.input):
            window_cores += 1
    assert window_cores == 2


def test_onnx23_export_has_one_attention_node_per_block(tiny_onnx) -> None:
    path, model = tiny_onnx("run", attention="onnx23", static=STATIC)
    proto = onnx.load(path)
    ops = graph.op_histogram(proto)
    assert ops["Attention"] == _attention_blocks(model) and ops["Softmax"] == 0 and ops["MatMul"] == 0
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) == 23
    assert tiny_onnx.reports[path].parity.passed and not graph.shape_arithmetic(proto)


@requires_rtx
def test_tensorrt_rtx_parses_and_builds(tiny_onnx, tmp_path) -> None:
    from irdeploy.export.tensorrt_check import check_onnx
    from irdeploy.runtime.tensorrt import build_engine

    static, _ = tiny_onnx("run", static=STATIC)
    check = check_onnx(static, flavour="rtx")
    assert check.ok and check.normalization == 14 and check.shape_layers == 0
    onnx23, _ = tiny_onnx("run", attention="onnx23", static=STATIC)
    assert check_onnx(onnx23, flavour="rtx").attention == 3
    dynamic, model = tiny_onnx("run")
    m = model.pad_multiple
    result = build_engine(dynamic, tmp_path / "run.fp16.engine", precision="fp16", flavour="rtx",
                          shapes={"min": (1, 3, m, m), "opt": (1, 3, 4 * m, 4 * m), "max": (2, 3, 8 * m, 8 * m)})
    assert result.engine_path.stat().st_size > 0 and result.sidecar["precision"] == "fp16"
