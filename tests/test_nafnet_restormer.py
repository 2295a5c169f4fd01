"""NAFNet and Restormer: fidelity to the upstream code (reference vectors, official BasicSR
checkpoints, full-size state-dict manifests, NAFNetLocal's TLC), and the paths every zoo network
takes: a clean ONNX export, mixed precision, TensorRT-RTX builds, identity init, the fp16 audit.
Restormer's BiasFree LayerNorm is not a LayerNormalization: its own chain is counted instead.
"""

from __future__ import annotations

import json
import re

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from conftest import FIXTURES, requires_rtx, tiny_model

from irdeploy.export import graph, to_onnx
from irdeploy.export.audit import BIASFREE, op_families
from irdeploy.export.precision import to_mixed_precision
from irdeploy.model import PRESETS, create, load_checkpoint, to_local
from irdeploy.model.attention import ChannelAttention
from irdeploy.model.init import randomize_constants
from irdeploy.model.layers import LayerNorm2d
from irdeploy.model.registry import get_spec
from irdeploy.model.spec import record_of
from irdeploy.model.restormer import BiasFreeLayerNorm2d
from irdeploy.model.tlc import LocalAvgPool2d
from irdeploy.core.padding import INFERENCE_PAD_MODE

INDEX = json.loads((FIXTURES / "index_nafnet_restormer.json").read_text())
MANIFESTS = json.loads((FIXTURES / "upstream_manifests_nafnet_restormer.json").read_text())
TOLERANCE = 1e-4  # what the index says a faithful float32 implementation reaches
# Each upstream manifest and the presets that must have exactly that state dict.
MANIFEST_PRESETS = {
    "nafnet_gopro_width32": ["nafnet-gopro-32"],
    "nafnet_gopro_width64": ["nafnet-gopro-64"],
    "nafnet_sidd_width32": ["nafnet-sidd-32"],
    "nafnet_sidd_width64": ["nafnet-sidd-64"],
    "restormer": ["restormer-derain", "restormer-deblur", "restormer-defocus"],
    "restormer_biasfree": ["restormer-denoise-real", "restormer-denoise-color"],
    "restormer_biasfree_gray": ["restormer-denoise-gray"],
    "restormer_dualpixel": [("restormer", {"inp_channels": 6, "dual_pixel_task": True})],
}
BIASFREE_TINY = {**get_spec("restormer").tiny, "LayerNorm_type": "BiasFree"}
STATIC = (1, 32, 32)


def _fixture_model(case: str) -> torch.nn.Module:
    spec = INDEX["cases"][case]
    model = create(spec["model"], **spec["kwargs"]).eval()
    return load_checkpoint(model, FIXTURES / spec.get("weights", f"{case}.pth"))


def _count(model: torch.nn.Module, cls: type) -> int:
    return sum(isinstance(m, cls) for m in model.modules())


@pytest.mark.parametrize("case", ["nafnet_tiny", "restormer_tiny", "restormer_biasfree_tiny"])
def test_official_checkpoint_layout_loads_strictly(case: str) -> None:
    """BasicSR's ``params`` layout loads strictly into the upstream parameter count (the outputs
    against the reference vectors: tests/test_zoo_fidelity.py, which reads this index too)."""
    spec = INDEX["cases"][case]
    path = FIXTURES / f"{case}.pth"
    assert list(torch.load(path, weights_only=True)) == ["params"]  # BasicSR's save_network layout
    model = _fixture_model(case)
    assert sum(p.numel() for p in model.parameters()) == spec["num_params"]


def test_nafnet_tlc_matches_nafnet_local() -> None:
    spec = INDEX["cases"]["nafnet_tiny_tlc"]
    # No base_size: NAFNetLocal's rule (1.5 x the training crop) is to_local's default.
    model = to_local(_fixture_model("nafnet_tiny_tlc"), train_size=spec["tlc"]["train_size"])
    assert record_of(model).tlc == {"train_size": spec["tlc"]["train_size"], "base_size": spec["tlc"]["base_size"]}
    kernels = {name: list(m.kernel_size) for name, m in model.named_modules() if isinstance(m, LocalAvgPool2d)}
    assert kernels == spec["tlc"]["kernel_sizes"]
    data = np.load(FIXTURES / "nafnet_tiny_tlc.npz")
    x = torch.from_numpy(data["input_0"])
    with torch.no_grad():
        out = model(x)
        plain = _fixture_model("nafnet_tiny_tlc")(x)
    assert (out - torch.from_numpy(data["output_0_0"])).abs().max().item() <= TOLERANCE
    assert (plain - out).abs().max().item() > 1e-3  # the conversion matters on these inputs


@pytest.mark.parametrize("config,preset", [(c, p) for c, presets in MANIFEST_PRESETS.items() for p in presets],
                         ids=lambda v: v if isinstance(v, str) else v[0])
def test_full_size_state_dict_and_parameters_match_manifest(config: str, preset) -> None:
    name, kwargs = (preset, {}) if isinstance(preset, str) else preset
    with torch.device("meta"):
        model = create(name, **kwargs)
    assert [[k, list(v.shape)] for k, v in model.state_dict().items()] == MANIFESTS[config]
    stated = int(re.search(r"(\d+) parameters", INDEX["about"]["manifest_configs"][config]).group(1))
    assert sum(p.numel() for p in model.parameters()) == stated


def test_every_preset_names_its_upstream_configuration() -> None:
    ours = {n: p for n, p in PRESETS.items() if p.arch in ("nafnet", "restormer")}
    assert sorted(ours) == sorted(p for presets in MANIFEST_PRESETS.values() for p in presets if isinstance(p, str))
    for name, preset in ours.items():
        assert re.search(r"[Oo]ptions/\S+\.yml", preset.source), name


def test_restormer_reflect_pads_like_upstream_test_scripts() -> None:
    model = tiny_model("restormer")
    x = torch.rand(1, 3, 37, 29)
    with torch.no_grad():
        ours = model(x)
        # upstream: F.pad(x, (0, padw, 0, padh), "reflect") outside the model, then crop
        scripted = model(F.pad(x, (0, 3, 0, 3), mode="reflect"))[..., :37, :29]
        zero_padded = model(F.pad(x, (0, 3, 0, 3)))[..., :37, :29]
    assert ours.shape == x.shape
    assert torch.equal(ours, scripted)
    assert (ours - zero_padded).abs().max().item() > 1e-4
    with pytest.raises(ValueError, match="too small"):
        model(torch.rand(1, 3, 4, 16))


def test_biasfree_layernorm_keeps_the_mean() -> None:
    norm = BiasFreeLayerNorm2d(16)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
    x = torch.randn(2, 16, 5, 7) + 0.5
    t = x.permute(0, 2, 3, 1)  # upstream normalises b (h w) c over c
    expected = (t / torch.sqrt(t.var(-1, keepdim=True, unbiased=False) + 1e-5) * norm.weight).permute(0, 3, 1, 2)
    assert (norm(x) - expected).abs().max().item() < 1e-5
    layer_norm = F.layer_norm(t, (16,), norm.weight, None, 1e-5).permute(0, 3, 1, 2)
    assert (norm(x) - layer_norm).abs().max().item() > 0.1  # not a LayerNorm with zero bias


@pytest.mark.parametrize("arch", ["nafnet", "restormer"])
def test_graph_is_folded(tiny_onnx, arch: str) -> None:
    path, model = tiny_onnx(arch)
    proto = onnx.load(path)
    ops = graph.op_histogram(proto)
    layernorms = _count(model, LayerNorm2d)
    assert layernorms and ops["LayerNormalization"] == layernorms
    for op in ("Pow", "Sqrt", "Clip", "Expand", "Identity", "Dropout", "Mod", "Range", "Pad", "SpaceToDepth"):
        assert ops[op] == 0, f"{op} in the {arch} graph"
    assert ops["DepthToSpace"] > 0
    cores = graph.attention_cores(proto)
    assert len(cores) == _count(model, ChannelAttention) and {c.kind for c in cores} <= {"matmul-softmax-matmul"}
    # two per channel LayerNorm, k^T per attention, one per PixelUnshuffle (Reshape-Transpose-Reshape)
    assert ops["Transpose"] <= 2 * layernorms + len(cores) + _count(model, torch.nn.PixelUnshuffle)
    report = tiny_onnx.reports[path]
    assert report.problems == [] and report.layernorm_nodes == report.layernorm_modules == layernorms
    assert report.biasfree_norms == 0 and report.parity.passed


def test_restormer_opset23_attention(tiny_onnx) -> None:
    path, model = tiny_onnx("restormer", attention="onnx23")
    proto = onnx.load(path)
    assert graph.op_histogram(proto)["Attention"] == _count(model, ChannelAttention) == 8
    assert graph.problems(proto, _count(model, LayerNorm2d)) == []


@pytest.fixture(scope="module")
def biasfree(tmp_path_factory):
    """The tiny BiasFree Restormer exported static in float32 and in fp16 (parity gate on)."""
    torch.manual_seed(0)
    model = randomize_constants(create("restormer", **BIASFREE_TINY)).eval()
    root = tmp_path_factory.mktemp("biasfree")
    reports = {p: to_onnx(model, root / f"{p}.onnx", static_shape=STATIC, precision=p, tensorrt=False)
               for p in ("fp32", "fp16")}
    return model, reports


def test_biasfree_export_is_counted_as_its_own_pattern(biasfree) -> None:
    model, reports = biasfree
    modules = _count(model, BiasFreeLayerNorm2d)
    assert modules == 2 * 8 and _count(model, LayerNorm2d) == 0  # two per transformer block
    for report in reports.values():
        assert report.parity.passed and report.problems == []
        assert report.layernorm_nodes == 0 and report.biasfree_norms == report.biasfree_modules == modules
        assert "16 bias-free chains for 16 BiasFree modules" in report.render()
    proto = onnx.load(reports["fp32"].path)
    ops = graph.op_histogram(proto)
    assert ops["Sqrt"] == modules and ops["Transpose"] == 8 + 3  # k^T per attention, 3 PixelUnshuffles
    assert not ops["Pow"] and not ops["Clip"] and not ops["Expand"]
    # the check tells the truth: a different module count, or a stray Sqrt, is reported
    assert graph.problems(proto, 0, modules + 1) == [f"{modules} bias-free LayerNorm chain(s) for {modules + 1} BiasFree LayerNorm modules"]
    chain = graph.biasfree_norms(proto)[0]
    proto.graph.node.remove(next(n for n in proto.graph.node if n.name == chain[-1]))
    assert any("1 Sqrt node(s)" in p for p in graph.problems(proto, 0))


def test_biasfree_statistics_stay_float32_in_mixed_precision(biasfree) -> None:
    _, reports = biasfree
    fp32 = onnx.load(reports["fp32"].path)
    for precision, proto in (("fp16", onnx.load(reports["fp16"].path)), ("bf16", to_mixed_precision(fp32, "bf16")[0])):
        chains = graph.biasfree_norms(proto)
        assert len(chains) == 16, precision
        typed = onnx.shape_inference.infer_shapes(proto)
        types = {v.name: v.type.tensor_type.elem_type for v in [*typed.graph.value_info, *typed.graph.output]}
        nodes = {n.name: n for n in proto.graph.node}
        for chain in chains:
            assert types[nodes[chain[5]].output[0]] == onnx.TensorProto.FLOAT  # the Sqrt
            assert types[nodes[chain[6]].output[0]] != onnx.TensorProto.FLOAT  # the Div goes low
    # that is the default policy only: the audit's "all low" graph lowers the chains too
    all_low = to_mixed_precision(fp32, "fp16", fp32_ops=(), fp32_nodes=())[0]
    sqrt = [n for n in all_low.graph.node if n.op_type == "Sqrt"]
    assert len(sqrt) == 16 and all(n.output[0] not in fp32_tensors(all_low) for n in sqrt)
    families = op_families(fp32)
    assert len(families[BIASFREE]) == 16 * 7 and "layernorm" not in families


def fp32_tensors(proto: onnx.ModelProto) -> set[str]:
    typed = onnx.shape_inference.infer_shapes(proto)
    return {v.name for v in typed.graph.value_info if v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT}


def test_identity_init_zeroes_the_residual_conv() -> None:
    from irdeploy.model.train import zero_residual_convs

    x = torch.rand(1, 3, 32, 24)
    for arch, conv in (("nafnet", "ending"), ("restormer", "output")):
        model = tiny_model(arch)
        assert zero_residual_convs(model) == [conv]
        with torch.no_grad():
            assert torch.equal(model(x), x)


def test_eager_fp16_audit_sees_biasfree_norms(biasfree) -> None:
    from irdeploy.export.eager_audit import eager_audit

    model, _ = biasfree
    rows = {r.family: r for r in eager_audit(model, [np.random.default_rng(0).random((1, 3, 32, 32), np.float32)])}
    assert rows["layernorm"].modules == 16 and rows["attention"].modules == 8
    assert 30 < rows["all"].psnr < 120


@requires_rtx
def test_tensorrt_rtx_builds(tiny_onnx, biasfree, tmp_path) -> None:
    from irdeploy.runtime.tensorrt import build_engine

    shapes = {"min": (1, 3, 32, 32), "opt": (1, 3, 32, 32), "max": (2, 3, 64, 64)}
    for arch in ("nafnet", "restormer"):
        path, model = tiny_onnx(arch)
        result = build_engine(path, tmp_path / f"{arch}.engine", precision="fp16", shapes=shapes, flavour="rtx")
        assert result.layers["NORMALIZATION"] == _count(model, LayerNorm2d)
        assert result.sidecar["pad_multiple"] == model.pad_multiple and result.sidecar["pad_mode"] == INFERENCE_PAD_MODE
    path = biasfree[1]["fp32"].path
    result = build_engine(path, tmp_path / "biasfree.engine", precision="bf16", flavour="rtx")
    assert result.layers.get("NORMALIZATION", 0) == 0 and result.engine_bytes > 100_000
    # MDTA as opset-23 Attention: parsed into TensorRT's attention layer; its token axis (H*W)
    # is dynamic, for which TensorRT-RTX 1.7 has no fused kernel, so the build decomposes it
    path, model = tiny_onnx("restormer", attention="onnx23")
    result = build_engine(path, tmp_path / "mdta.engine", precision="fp16", shapes=shapes, flavour="rtx")
    assert result.sidecar["network"]["attention"] == _count(model, ChannelAttention) == 8
    assert result.attention_decomposed
