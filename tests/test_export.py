"""ONNX export: graph structure, parity in ONNX Runtime, metadata, CLI and bad input."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from collections import Counter

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from conftest import FIXTURES, tiny_model

from irdeploy.export import ExportError, inspect_onnx, to_onnx
from irdeploy.export import graph
from irdeploy.core.metadata import ExportMetadata
from irdeploy.core.padding import crop_batch, pad_batch
from irdeploy.model import final_image, record_of, specs, to_local
from irdeploy.model.spec import pad_multiple
from irdeploy.core.padding import INFERENCE_PAD_MODE

# Every registered architecture (a new one is tested by being registered).
ARCHS = tuple(spec.name for spec in specs())
# Known details of some tiny graphs, checked on top of what every architecture must meet:
# attention cores (count, kind), Pads (MPRNet's bilinear upsamplers' edges) and Transposes (at
# most the two a channel LayerNorm needs, fewer where neighbours share them).
DETAILS = {"m3snet": {"cores": (1, "matmul-softmax-matmul"), "pads": 0, "transposes_per_layernorm": 2},
           "mprnet": {"cores": (0, None), "pads": 10, "transposes_per_layernorm": 2},
           "mhnet": {"cores": (3, "masked-matmul-softmax-matmul"), "pads": 0, "transposes_per_layernorm": 2}}


def _ops(path) -> Counter:
    return graph.op_histogram(onnx.load(path))


def _run(path, x: np.ndarray, multiple: int, mode: str) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = session.run(None, {"input": pad_batch(x, multiple, mode)})[0]
    return crop_batch(out, *x.shape[-2:])


@pytest.mark.parametrize("arch", ARCHS)
def test_graph_is_folded(tiny_onnx, arch: str) -> None:
    path, model = tiny_onnx(arch)
    spec = record_of(model).spec
    ops = _ops(path)
    layernorms = sum(isinstance(m, spec.layernorms) for m in model.modules())
    others = sum(isinstance(m, spec.norms) for m in model.modules()) if spec.norms else None
    assert ops["LayerNormalization"] == layernorms  # one per LayerNorm module the spec names
    for op in ("Pow", "Clip", "Expand", "Identity", "Dropout", "Mod", "Range", "PixelShuffle", "Resize"):
        assert ops[op] == 0, f"{op} in the {arch} graph"
    # padding to the multiple is the runtime's job: nothing pads the graph's input
    proto = onnx.load(path)
    assert not [n for n in proto.graph.node if "input" in n.input and n.op_type == "Pad"]
    assert graph.problems(proto, layernorms, others) == []
    if arch in DETAILS:
        known = DETAILS[arch]
        assert ops["Pad"] == known["pads"] and ops["Sqrt"] == 0
        assert ops["Transpose"] <= known["transposes_per_layernorm"] * layernorms + 1
        count, kind = known["cores"]
        cores = graph.attention_cores(proto)
        assert len(cores) == count and all(c.kind == kind for c in cores)


def test_attention_core_has_nothing_between(tiny_onnx) -> None:
    path, _ = tiny_onnx("m3snet")
    proto = onnx.load(path)
    producer = {o: n for n in proto.graph.node for o in n.output}
    (core,) = graph.attention_cores(proto)
    first, softmax, second = (next(n for n in proto.graph.node if n.name == name) for name in core.nodes)
    assert producer[softmax.input[0]] is first and softmax.output[0] in second.input
    # q is normalised by one ReduceL2 + Div and scaled by the temperature: no Clip/Expand chain
    q_path = producer[first.input[0]]
    assert q_path.op_type == "Mul" and producer[q_path.input[0]].op_type == "Div"
    assert producer[producer[q_path.input[0]].input[1]].op_type == "ReduceL2"


def test_onnx23_attention(tiny_onnx) -> None:
    path, model = tiny_onnx("m3snet", attention="onnx23")
    proto = onnx.load(path)
    assert graph.op_histogram(proto)["Attention"] == 1 and graph.op_histogram(proto)["Softmax"] == 0
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) == 23
    x = np.random.default_rng(1).random((1, 3, 48, 64), dtype=np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    assert np.abs(_run(path, x, 16, "constant") - ref).max() < 1e-4


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("shape", [(1, 37, 53), (3, 32, 48), (2, 70, 20)])
def test_dynamic_graph_parity_any_size_and_batch(tiny_onnx, arch: str, shape) -> None:
    path, model = tiny_onnx(arch)
    n, h, w = shape
    x = np.random.default_rng(0).random((n, 3, h, w), dtype=np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(x))
    ref = final_image(ref, model).numpy()
    out = _run(path, x, pad_multiple(model), record_of(model).spec.pad_mode)
    assert out.shape == ref.shape
    assert np.abs(out - ref).max() < 1e-4


@pytest.mark.parametrize("arch", ARCHS)
def test_static_graph_has_no_shape_arithmetic(tiny_onnx, arch: str) -> None:
    path, model = tiny_onnx(arch, static=(1, 64, 64))
    proto = onnx.load(path)
    assert graph.is_static(proto)
    assert graph.shape_arithmetic(proto) == Counter()
    dims = [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 3, 64, 64]


def test_export_report_and_metadata(tiny_onnx) -> None:
    path, model = tiny_onnx("m3snet")
    report = tiny_onnx.reports[path]
    assert report.parity.passed and len(report.parity.cases) == 3
    assert any(c.shape[-2] % 16 for c in report.parity.cases), "one parity size must be off the multiple"
    assert report.layernorm_nodes == report.layernorm_modules == 26  # 13 NAFBlocks x 2
    assert report.ops_before["LayerNormalization"] == 26 and report.node_count < sum(report.ops_before.values())
    assert report.gmacs_256 > 0 and report.parameters == sum(p.numel() for p in model.parameters())
    meta = ExportMetadata.read(onnx.load(path))
    assert meta.pad_multiple == 16 and meta.pad_mode == INFERENCE_PAD_MODE and meta.precision == "fp32"
    assert meta.config == {"width": 8, "enc_blk_nums": [1, 1, 1, 1]} and meta.arch == "m3snet"
    sidecar = path.with_name(path.name + ".json").read_text()
    assert "\"layernorm_nodes\": 26" in sidecar
    inspected = inspect_onnx(path, tensorrt=False)
    assert inspected.metadata == meta and inspected.ops_after == report.ops_after


def test_tlc_exports_static_with_fixed_kernels(tmp_path) -> None:
    model = to_local(tiny_model("m3snet"), train_size=(1, 3, 32, 32))
    with pytest.raises(ValueError, match="TLC model .* static_shape"):
        to_onnx(model, tmp_path / "tlc.onnx", tensorrt=False)
    report = to_onnx(model, tmp_path / "tlc.onnx", static_shape=(1, 64, 64), tensorrt=False)
    assert report.parity.passed
    assert report.ops_after["AveragePool"] > 0  # the local pools, as constant-size windows
    assert report.metadata.tlc == {"train_size": [1, 3, 32, 32], "base_size": [48, 48]}


def test_static_size_is_rounded_to_the_multiple(tmp_path) -> None:
    with pytest.warns(UserWarning, match="rounded up to 64x48"):
        report = to_onnx(tiny_model("m3snet"), tmp_path / "s.onnx", static_shape=(60, 40), tensorrt=False)
    assert report.input_shape == [1, 3, 64, 48]


def test_bad_arguments_are_one_line(tmp_path) -> None:
    model = tiny_model("m3snet")
    cases = [
        (dict(path=tmp_path / "missing" / "m.onnx"), "directory .* does not exist"),
        (dict(path=tmp_path / "m.onnx", precision="int4"), "unknown precision 'int4'"),
        (dict(path=tmp_path / "m.onnx", attention="flash"), "unknown attention form 'flash'"),
        (dict(path=tmp_path / "m.onnx", opset=16), "opset 16 is too old: LayerNormalization needs opset 17"),
        (dict(path=tmp_path / "m.onnx", attention="onnx23", opset=18), "Attention operator needs opset 23"),
        (dict(path=tmp_path, static_shape=(64, 64)), "is a directory"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ValueError, match=message):
            to_onnx(model, tensorrt=False, parity=False, **kwargs)
    with pytest.raises(ValueError, match="top-k attention has no opset-23"):
        to_onnx(tiny_model("mhnet"), tmp_path / "m.onnx", attention="onnx23", tensorrt=False)
    assert not list(tmp_path.iterdir())


def test_failed_parity_leaves_no_file(tmp_path, monkeypatch) -> None:
    """Break the graph after tracing: the gate must refuse it and write nothing."""
    from irdeploy.export import onnx_export

    real = onnx_export.trace_to_onnx

    def sabotaged(*args, **kwargs):
        proto, before = real(*args, **kwargs)
        for init in proto.graph.initializer:
            if init.name.endswith("ending.bias") or "ending" in init.name:
                arr = onnx.numpy_helper.to_array(init) + 0.5
                init.CopyFrom(onnx.numpy_helper.from_array(arr, init.name))
        return proto, before

    monkeypatch.setattr(onnx_export, "trace_to_onnx", sabotaged)
    with pytest.raises(ExportError, match="parity FAILED"):
        to_onnx(tiny_model("m3snet"), tmp_path / "bad.onnx", static_shape=(1, 32, 32), tensorrt=False)
    assert not list(tmp_path.iterdir())


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "irdeploy", *args], capture_output=True, text=True, timeout=600)


def test_cli_export_and_inspect(tmp_path) -> None:
    out = tmp_path / "m3snet.onnx"
    result = _cli("export", "--model", "m3snet", "--arg", "width=16", "--arg", "enc_blk_nums=[1,1,1,2]",
                  "--checkpoint", str(FIXTURES / "m3snet_tiny.pth"), "-o", str(out), "--static", "48x64")
    assert result.returncode == 0, result.stderr
    printed = " ".join(result.stdout.split())  # the report wraps its values within 80 columns
    assert "parity passed" in printed and "28 LayerNormalization for 28 LayerNorm modules" in printed
    if importlib.util.find_spec("tensorrt_rtx") or importlib.util.find_spec("tensorrt"):
        assert "NORMALIZATION 28, ATTENTION layers 0, SHAPE 0, GATHER 0" in printed
    else:
        assert "skipped:" in result.stdout
    result = _cli("inspect", str(out), "--no-tensorrt")
    assert result.returncode == 0, result.stderr
    printed = " ".join(result.stdout.split())
    assert "checkpoint_sha256 49b4f7efd40b1425" in printed and "pad_multiple 16" in printed


def test_cli_bad_inputs(tmp_path) -> None:
    bad_ck = tmp_path / "bad.pth"
    bad_ck.write_text("nope")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x08\x01garbage")
    for args, message in [
        (("export", "--model", "nosuchnet", "-o", str(tmp_path / "x.onnx")), "unknown model 'nosuchnet'"),
        (("export", "--model", "m3snet-32", "--checkpoint", str(bad_ck), "-o", str(tmp_path / "x.onnx")),
         "not a readable PyTorch checkpoint"),
        (("export", "--model", "m3snet", "--arg", "width=16", "--checkpoint", str(FIXTURES / "m3snet_tiny.pth"),
          "-o", str(tmp_path / "x.onnx")), "does not fit m3snet"),
        (("inspect", str(junk)), "not"),
        (("inspect", str(tmp_path / "absent.onnx")), "absent.onnx"),
    ]:
        result = _cli(*args)
        assert result.returncode == 2, (args, result.stdout)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.pth", "junk.onnx"]


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_mixed_precision_export(tmp_path, precision: str) -> None:
    report = to_onnx(tiny_model("m3snet"), tmp_path / f"m.{precision}.onnx", static_shape=(1, 64, 64),
                     precision=precision, tensorrt=False)
    assert report.precision == precision and report.metadata.precision == precision
    assert report.parity.passed and report.parity.worst_psnr >= {"fp16": 40, "bf16": 30}[precision]
    assert "emulation" in " ".join(report.notes)
    assert 0 < report.fp32_nodes < report.node_count and report.fp32_islands >= 1
    proto = onnx.load(tmp_path / f"m.{precision}.onnx")
    io = [v.type.tensor_type.elem_type for v in (*proto.graph.input, *proto.graph.output)]
    assert io == [onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT]
    assert inspect_onnx(tmp_path / f"m.{precision}.onnx", tensorrt=False).fp32_islands == report.fp32_islands


def test_parity_floor_can_be_raised_and_then_fails(tmp_path) -> None:
    with pytest.raises(ExportError, match=r"worst PSNR .* \(>= 200\).*nothing written"):
        to_onnx(tiny_model("m3snet"), tmp_path / "m.onnx", static_shape=(1, 32, 32), precision="fp16",
                min_psnr=200, tensorrt=False)
    assert not list(tmp_path.iterdir())


def test_cli_fp16_audit(tmp_path) -> None:
    out = tmp_path / "audit.json"
    result = _cli("fp16-audit", "--model", "m3snet", "--arg", "width=8", "--arg", "enc_blk_nums=[1,1,1,1]",
                  "--size", "64x64", "--json", str(out))
    assert result.returncode == 0, result.stderr
    for family in ("conv", "layernorm", "policy", "all", "float32"):
        assert f"\n{family} " in result.stdout
    assert "cross-check with eager PyTorch" in result.stdout
    audit = __import__("json").loads(out.read_text())
    psnrs = [r["psnr"] for r in audit["graph"]]
    assert psnrs == sorted(psnrs) and audit["graph"][-1]["family"] == "float32"
    eager = {r["family"]: r for r in audit["eager"]}
    assert set(eager) == {"conv", "layernorm", "attention", "pooling", "all"}
    # both audits agree that convolutions cost more than the attention block
    assert eager["conv"]["psnr"] < eager["attention"]["psnr"]
    bad = _cli("fp16-audit", "--model", "m3snet", "--arg", "width=8", "--size", "60x64")
    assert bad.returncode == 2 and "not a multiple of 16; use e.g. 64x64" in bad.stderr


def test_bisect_finds_nodes_that_restore_the_floor(tiny_onnx) -> None:
    from irdeploy.export.bisect import bisect_precision
    from irdeploy.export.parity import make_inputs

    path, model = tiny_onnx("m3snet")
    inputs = [x for _, x in make_inputs(3, [(1, 64, 64), (1, 64, 96)])]
    with torch.no_grad():
        refs = [model(torch.from_numpy(x)).numpy() for x in inputs]
    proto = onnx.load(path)
    relaxed = bisect_precision(proto, inputs, refs, precision="bf16", min_psnr=20)
    assert relaxed.fp32_nodes == () and "already passes" in relaxed.summary()
    target = relaxed.psnr_default + 6
    fixed = bisect_precision(proto, inputs, refs, precision="bf16", min_psnr=target)
    assert fixed.psnr_fixed is not None and fixed.psnr_fixed >= target and fixed.fp32_nodes
    assert fixed.evaluations <= 3 + 10  # binary search: log2 of a few hundred candidate nodes
    assert "--fp32-nodes" in fixed.summary()
    impossible = bisect_precision(proto, inputs, refs, precision="bf16", min_psnr=500)
    assert impossible.psnr_fixed is None and "out of reach" in impossible.summary()


def test_fp32_nodes_from_bisect_apply_in_export(tmp_path, tiny_onnx) -> None:
    from irdeploy.export.bisect import bisect_precision
    from irdeploy.export.parity import make_inputs

    path, model = tiny_onnx("m3snet", static=(1, 64, 64))
    inputs = [x for _, x in make_inputs(3, [(1, 64, 64), (1, 64, 64)])]
    with torch.no_grad():
        refs = [model(torch.from_numpy(x)).numpy() for x in inputs]
    base = bisect_precision(onnx.load(path), inputs, refs, precision="bf16", min_psnr=0).psnr_default
    fixed = bisect_precision(onnx.load(path), inputs, refs, precision="bf16", min_psnr=base + 6)
    report = to_onnx(model, tmp_path / "fixed.onnx", static_shape=(1, 64, 64), precision="bf16",
                     fp32_nodes=fixed.fp32_nodes, min_psnr=base + 3, tensorrt=False)
    assert report.parity.passed and report.fp32_nodes >= len(fixed.fp32_nodes)


@pytest.mark.skipif(not (importlib.util.find_spec("tensorrt_rtx") or importlib.util.find_spec("tensorrt")),
                    reason="no TensorRT or TensorRT-RTX installed to parse the graph")
def test_graph_the_tensorrt_parser_rejects_is_not_written(tmp_path, monkeypatch) -> None:
    """An op TensorRT has no importer for (ONNX Unique) makes the export fail in one line."""
    from irdeploy.export import onnx_export

    real = onnx_export.trace_to_onnx

    def with_unique(*args, **kwargs):
        proto, before = real(*args, **kwargs)
        out = proto.graph.output[0].name
        proto.graph.node.append(onnx.helper.make_node("Unique", [out], ["uniq_values"], name="uniq"))
        proto.graph.output.append(onnx.helper.make_tensor_value_info("uniq_values", onnx.TensorProto.FLOAT, None))
        return proto, before

    monkeypatch.setattr(onnx_export, "trace_to_onnx", with_unique)
    with pytest.raises(ExportError) as err:
        to_onnx(tiny_model("m3snet"), tmp_path / "m.onnx", static_shape=(1, 32, 32), parity=False)
    assert "\n" not in str(err.value) and "'uniq' (Unique)" in str(err.value)
    assert not list(tmp_path.iterdir())


def test_cli_validate_bisect(tmp_path) -> None:
    out = tmp_path / "m.fp16.onnx"
    args = ("--model", "m3snet", "--arg", "width=16", "--arg", "enc_blk_nums=[1,1,1,2]",
            "--checkpoint", str(FIXTURES / "m3snet_tiny.pth"))
    result = _cli("export", *args, "-o", str(out), "--precision", "fp16", "--min-psnr", "30", "--no-tensorrt")
    assert result.returncode == 0, result.stderr
    result = _cli("validate", *args, "--onnx", str(out), "--min-psnr", "50", "--bisect")
    assert result.returncode == 1 and "parity FAILED (fp16" in result.stdout
    assert "more node(s) float32" in result.stdout and "--fp32-nodes node_" in result.stdout
