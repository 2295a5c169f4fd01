"""INT8 Q/DQ graphs: placement TensorRT fuses, calibration on real photographs, the PSNR gate
against eager float32 (ONNX Runtime's int8 kernels), TensorRT-RTX builds on CPU with the
calibration in the sidecar, the per-layer audit and the bisection.

Measured on the tiny zoo models (random weights, crops of the shipped photographs), int8 vs
eager float32: 35-50 dB (M3SNet 43.2, MPRNet 50.5, MHNet 35.4, RUN 45.2 with percentile
calibration at 99.99, benchmarks/results/int8_calibration-2026-12-01.md); the gate's floor is 30 dB (:data:`irdeploy.export.parity.TOLERANCES`).
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys

import numpy as np
import onnx
import pytest
import torch
from conftest import TINY, requires_rtx
from onnx import TensorProto, helper, numpy_helper

from irdeploy.core.images import SAMPLES, sample_path
from irdeploy.core.metadata import ExportMetadata
from irdeploy.export.calibration import calibration_crops, calibration_images
from irdeploy.export.int8 import quantize_for_export
from irdeploy.export.int8_audit import bisect_int8, int8_audit, node_kinds
from irdeploy.export.parity import check_parity, make_inputs, parity_sizes
from irdeploy.export.int8_ranges import measure_ranges
from irdeploy.export.quantize import CALIBRATORS, QUANTIZED_OPS, input_convolutions, placement_problems, quantize_int8, quantized_nodes
from irdeploy.model.spec import pad_multiple

ARCHS = list(TINY)
FLOOR = 30.0


@pytest.fixture(scope="module")
def int8_graph(tiny_onnx, tmp_path_factory):
    """``int8_graph(arch) -> (int8 path, fp32 graph, int8 graph, eager model)``, cached.

    Quantized as the export does (shipped photographs, default method) but with fewer, smaller
    crops to keep the suite quick; written with the metadata the export writes.
    """
    root = tmp_path_factory.mktemp("int8")
    cache: dict = {}

    def get(arch: str):
        if arch not in cache:
            path, model = tiny_onnx(arch)
            fp32 = onnx.load(path)
            q, extra = quantize_for_export(fp32, pad_multiple(model), crop_size=64, crops_per_image=2)
            meta = ExportMetadata.read(q)
            meta.precision, meta.extra = "int8", extra
            meta.write(q)
            out = root / f"{arch}.int8.onnx"
            onnx.save(q, out)
            cache[arch] = (out, fp32, q, model)
        return cache[arch]

    return get


def _inits(graph: onnx.GraphProto) -> dict[str, TensorProto]:
    return {t.name: t for t in graph.initializer}


@pytest.mark.parametrize("arch", ARCHS)
def test_qdq_placement_is_what_tensorrt_fuses(int8_graph, arch):
    _, fp32, q, _ = int8_graph(arch)
    onnx.checker.check_model(q, full_check=True)
    assert placement_problems(q) == []
    graph, inits = q.graph, _inits(q.graph)
    producer = {o: n for n in graph.node for o in n.output}
    counts = quantized_nodes(q)
    convs = sum(n.op_type in ("Conv", "ConvTranspose") for n in fp32.graph.node)
    # the convolutions reading the image itself stay float (the default), every other one reads int8
    first = input_convolutions(fp32)
    assert len(first) == {"mprnet": 7, "mhnet": 2}.get(arch, 1)  # MPRNet: 4 + 2 patches and the image
    fp32_producer = {o: n for n in fp32.graph.node for o in n.output}
    for name in first:
        source = next(n for n in fp32.graph.node if n.name == name).input[0]
        while source != fp32.graph.input[0].name:  # back to the image through pixel moves only
            assert fp32_producer[source].op_type in ("Slice", "Pad", "Split", "Reshape", "Transpose"), name
            source = fp32_producer[source].input[0]
    assert counts["Conv"] + counts["ConvTranspose"] == convs - len(first)
    assert ExportMetadata.read(q).extra["int8"]["float_input_convs"] == first
    for node in graph.node:
        if node.op_type not in ("Conv", "ConvTranspose"):
            continue
        if node.name in first:
            assert node.input[0] not in producer or producer[node.input[0]].op_type != "DequantizeLinear"
            assert inits[node.input[1]].data_type == TensorProto.FLOAT, node.name
            continue
        data, weight = producer[node.input[0]], producer[node.input[1]]
        assert data.op_type == weight.op_type == "DequantizeLinear", node.name
        w_scale = numpy_helper.to_array(inits[weight.input[1]])
        out_channels = inits[weight.input[0]].dims[1 if node.op_type == "ConvTranspose" else 0]
        assert w_scale.shape == (out_channels,), node.name  # per output channel
        assert numpy_helper.to_array(inits[data.input[1]]).size == 1  # per tensor
        if len(node.input) > 2:  # the bias stays a float initializer, never an int32 DQ
            assert inits[node.input[2]].data_type == TensorProto.FLOAT, node.name
    # float ops read float tensors: the final residual Add reads the graph input, not its int8 copy
    out_node = producer[graph.output[0].name]
    assert graph.input[0].name in out_node.input or arch == "mprnet"  # MPRNet ends in a plain Conv
    for node in graph.node:
        if node.op_type in ("LayerNormalization", "Softmax", "ReduceMean", "ReduceL2", "Add", "Mul"):
            assert not any(producer.get(i) is not None and producer[i].op_type == "DequantizeLinear" for i in node.input)
    # attention products (two activations) stay float: only MatMuls with a constant operand are int8
    for node in graph.node:
        if node.op_type == "MatMul" and counts.get("MatMul"):
            operands = [producer.get(i) for i in node.input]
            if any(p is not None and p.op_type == "DequantizeLinear" for p in operands):
                assert any(p.input[0] in inits for p in operands if p is not None and p.op_type == "DequantizeLinear")


def test_input_convs_quantized_on_request(int8_graph):
    _, fp32, _, model = int8_graph("m3snet")
    q, extra = quantize_for_export(fp32, pad_multiple(model), crop_size=32, crops_per_image=1, input_convs="int8")
    assert quantized_nodes(q)["Conv"] == sum(n.op_type == "Conv" for n in fp32.graph.node)
    assert extra["int8"]["input_convs"] == "int8" and extra["int8"]["float_input_convs"] == []
    with pytest.raises(ValueError, match="input_convs must be one of float, int8"):
        quantize_for_export(fp32, pad_multiple(model), input_convs="fp16")


def test_placement_check_catches_what_tensorrt_rejects():
    """The two graphs TensorRT-RTX refused in the platform probe, and an asymmetric one."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 4, 4])
    inits = [
        numpy_helper.from_array(np.ones((2, 2, 1, 1), np.int8), "w_q"),
        numpy_helper.from_array(np.float32(0.1), "s"),
        numpy_helper.from_array(np.array([0, 0], np.int32), "b_q"),
        numpy_helper.from_array(np.float32(0.01), "bs"),
        numpy_helper.from_array(np.int8(3), "k_q"),
        numpy_helper.from_array(np.int8(5), "zp"),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["xq"], name="q_x"),
        helper.make_node("DequantizeLinear", ["xq", "s", "zp"], ["xd"], name="dq_x"),
        helper.make_node("DequantizeLinear", ["w_q", "s"], ["w"], name="dq_w"),
        helper.make_node("DequantizeLinear", ["b_q", "bs"], ["b"], name="dq_b"),
        helper.make_node("Conv", ["xd", "w", "b"], ["c"], name="conv"),
        helper.make_node("DequantizeLinear", ["k_q", "s"], ["k"], name="dq_k"),
        helper.make_node("Mul", ["c", "k"], ["m"], name="mul"),
        helper.make_node("Add", ["m", "xd"], ["y"], name="add"),
    ]
    model = helper.make_model(helper.make_graph(nodes, "bad", [x], [y], inits), opset_imports=[helper.make_opsetid("", 19)])
    problems = "\n".join(placement_problems(model))
    assert "dq_b: DequantizeLinear of an int32 initializer" in problems
    assert "dq_k: DequantizeLinear read by Mul" in problems
    assert "dq_x: DequantizeLinear read by Add" in problems
    assert "zero point" in problems


@pytest.mark.parametrize("arch", ARCHS)
def test_int8_passes_the_gate_on_onnxruntime_int8_kernels(int8_graph, arch):
    path, _, _, model = int8_graph(arch)
    m = pad_multiple(model)
    result = check_parity(str(path), model, make_inputs(3, parity_sizes(m)), precision="int8",
                          pad_multiple=m, pad_mode=model.pad_mode if hasattr(model, "pad_mode") else "replicate")
    assert result.passed, result.summary()
    assert FLOOR <= result.worst_psnr < 70  # really quantized: far from float32's 130+ dB


def test_calibration_methods_measure_different_ranges():
    """Percentile clips the tail MinMax keeps; Entropy (2048 bins) is a real KL search, not MinMax."""
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w")
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, None, None])
    y = helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 4, None, None])
    graph = helper.make_graph([helper.make_node("Conv", ["input", "w"], ["output"], name="conv", pads=[1] * 4)],
                              "one", [x], [y], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])
    _, paths = calibration_images()
    crops = calibration_crops(paths, size=96, per_image=4)  # 442k values: 99.99% leaves out 44
    crops[0][0, 0, 0, 0] = 40.0  # one outlier pixel
    scales = {}
    for method in ("minmax", "percentile", "entropy"):
        q, info = quantize_int8(model, crops, method=method)
        dq = next(n for n in q.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == "input")
        scales[method] = float(numpy_helper.to_array(_inits(q.graph)[dq.input[1]]))
        assert info.method == method and info.quantized == {"Conv": 1}
    assert scales["minmax"] == pytest.approx(40.0 / 127, rel=1e-3)
    assert scales["percentile"] < scales["minmax"] / 10
    assert scales["entropy"] < scales["minmax"] / 5


def test_calibration_passes_hold_a_bounded_set_and_give_the_same_ranges(tiny_onnx):
    """Tensors split into groups by a memory budget: the same ranges as one pass, and as ONNX
    Runtime's own calibrator fed one crop per call (the histograms see the crops in one order)."""
    from onnxruntime.quantization.calibrate import create_calibrator

    from irdeploy.export.calibration import crop_reader

    path, _ = tiny_onnx("m3snet")
    fp32 = onnx.load(path)
    crops = calibration_crops(calibration_images()[1][:2], size=32, per_image=1)
    calibrate, options = CALIBRATORS["percentile"]
    kwargs = dict(op_types=QUANTIZED_OPS, method="Percentile", options=options, input_name="input")
    whole, one = measure_ranges(fp32, crops, budget_mib=4096, **kwargs)
    split, many = measure_ranges(fp32, crops, budget_mib=1, **kwargs)
    assert one.groups == 1 and many.groups >= 4 and many.largest_group_mib <= 1.0 and one.tensors == many.tensors
    ort = create_calibrator(path, list(QUANTIZED_OPS), augmented_model_path=str(path) + ".aug.onnx",
                            calibrate_method=calibrate(), extra_options={"symmetric": True, **options})
    for crop in crops:
        ort.collect_data(crop_reader([crop]))
    reference = ort.compute_data()
    assert set(whole.keys()) == set(split.keys()) == set(reference.keys())
    for name in reference.keys():
        assert whole[name].range_value == split[name].range_value == reference[name].range_value, name


def test_calibration_folder_errors_are_one_line(tmp_path):
    with pytest.raises(ValueError, match="no such folder"):
        calibration_images(tmp_path / "missing")
    (tmp_path / "notes.txt").write_text("no images here")
    with pytest.raises(ValueError, match="no images"):
        calibration_images(tmp_path)


def test_to_onnx_int8_records_the_calibration(tmp_path):
    from irdeploy.export import ExportError, to_onnx
    from conftest import tiny_model

    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copyfile(sample_path("coffee.png"), photos / "coffee.png")
    shutil.copyfile(sample_path("rocket.jpg"), photos / "rocket.jpg")
    model = tiny_model("m3snet")
    out = tmp_path / "m.int8.onnx"
    report = to_onnx(model, out, precision="int8", calibration=photos, static_shape=(64, 64), tensorrt=False)
    assert report.parity.passed and report.parity.precision == "int8"
    meta = ExportMetadata.read(onnx.load(out))
    assert meta.precision == "int8" and meta.opset >= 19
    calib = meta.extra["calibration"]
    assert calib["method"] == "percentile" and calib["percentile"] == 99.99 and calib["source"] == str(photos)
    assert calib["crops_per_pass"] == 1 and calib["tensor_groups"] >= 1 and calib["budget_mib"] == 1024
    assert meta.extra["int8"]["input_convs"] == "float" and meta.extra["int8"]["float_input_convs"] == ["node_conv2d"]
    assert [(i["name"], i["sha256"]) for i in calib["images"]] == [
        (p.name, hashlib.sha256(p.read_bytes()).hexdigest()) for p in sorted(photos.iterdir())]
    # a floor it cannot reach: nothing is written, the earlier file stays as it was
    before = out.read_bytes()
    with pytest.raises(ExportError, match="nothing written"):
        to_onnx(model, out, precision="int8", static_shape=(64, 64), tensorrt=False, min_psnr=90)
    assert out.read_bytes() == before
    with pytest.raises(ValueError, match="precision='int8' only"):
        to_onnx(model, tmp_path / "x.onnx", calibration=photos)
    with pytest.raises(ValueError, match="int8 input convolutions apply to precision='int8' only"):
        to_onnx(model, tmp_path / "x.onnx", int8_input_convs="int8")


@requires_rtx
@pytest.mark.parametrize("arch", ARCHS)
def test_tensorrt_rtx_builds_int8(int8_graph, tmp_path, arch):
    from irdeploy.runtime.tensorrt import build_engine, read_sidecar

    path, _, q, _ = int8_graph(arch)
    m = 16 if arch != "mprnet" else 8
    shapes = {"min": (1, 3, 2 * m, 2 * m), "opt": (1, 3, 4 * m, 4 * m), "max": (1, 3, 4 * m, 4 * m)}
    result = build_engine(path, tmp_path / f"{arch}.engine", precision="int8", shapes=shapes, flavour="rtx",
                          compute_capabilities=["8.9"])
    side = read_sidecar(result.engine_path)
    assert side["precision"] == side["compute_precision"] == side["onnx"]["graph_precision"] == "int8"
    layers = result.layers
    assert layers["QUANTIZE"] == sum(n.op_type == "QuantizeLinear" for n in q.graph.node)
    assert layers["DEQUANTIZE"] == sum(n.op_type == "DequantizeLinear" for n in q.graph.node)
    # the float parts went through the fp16 policy: mostly low, reductions float32
    assert side["mixed_precision"]["precision"] == "fp16" and side["mixed_precision"]["fp32_share"] < 0.1
    calib = side["calibration"]
    assert calib["method"] == "percentile" and calib["percentile"] == 99.99
    assert [i["name"] for i in calib["images"]] == list(SAMPLES)
    assert calib["crops_per_pass"] == 1 and calib["tensor_groups"] >= 1 and calib["tensors"] > 0
    assert calib["images"][0]["sha256"] == hashlib.sha256(sample_path(SAMPLES[0]).read_bytes()).hexdigest()


@requires_rtx
def test_build_refuses_mismatched_int8(int8_graph, tiny_onnx, tmp_path):
    from irdeploy.runtime.tensorrt import EngineBuildError, build_engine

    with pytest.raises(EngineBuildError, match="int8 needs calibrated Q/DQ pairs") as exc:
        build_engine(tiny_onnx("m3snet")[0], tmp_path / "a.engine", precision="int8", flavour="rtx")
    assert "\n" not in str(exc.value)
    with pytest.raises(EngineBuildError, match="already computes in int8"):
        build_engine(int8_graph("m3snet")[0], tmp_path / "b.engine", precision="fp16", flavour="rtx")
    assert list(tmp_path.iterdir()) == []


def test_audit_ranks_layers_and_bisect_reaches_the_floor(int8_graph):
    _, fp32, q, model = int8_graph("run")
    inputs = [x for _, x in make_inputs(3, [(1, 64, 64)] * 3)][1:]
    with torch.inference_mode():
        references = [model(torch.from_numpy(x)).numpy() for x in inputs]
    rows = int8_audit(fp32, q, inputs, references)
    nodes = [r for r in rows if r.kind]
    summary = {r.node: r for r in rows if not r.kind}
    assert len(nodes) == sum(quantized_nodes(q).values())
    assert [r.psnr for r in nodes] == sorted(r.psnr for r in nodes)  # worst first
    assert summary["(none)"].psnr > 100 and summary["(all)"].psnr < nodes[0].psnr  # errors add up
    assert set(node_kinds(fp32).values()) >= {r.kind for r in nodes}
    floor = summary["(all)"].psnr + 1.0
    result = bisect_int8(fp32, q, inputs, references, min_psnr=floor, ranking=rows)
    assert result.psnr_fixed is not None and result.psnr_fixed >= floor
    assert 0 < len(result.fp32_nodes) < len(nodes)
    assert list(result.fp32_nodes) == [r.node for r in nodes[:len(result.fp32_nodes)]]
    # the answer is an export option: those nodes are left unquantized
    kept, info = quantize_int8(fp32, calibration_crops(calibration_images()[1], size=64, per_image=1),
                               fp32_nodes=[*result.fp32_nodes, *input_convolutions(fp32)])
    assert sum(info.quantized.values()) == len(nodes) - len(result.fp32_nodes)
    dq = {n.output[0] for n in kept.graph.node if n.op_type == "DequantizeLinear"}
    assert not any(dq.intersection(n.input) for n in kept.graph.node if n.name in result.fp32_nodes)


def test_cli_export_int8_bad_calibration_folder(tmp_path):
    out = tmp_path / "m.onnx"
    args = ["export", "--model", "m3snet", "--arg", "width=8", "--arg", "enc_blk_nums=[1,1,1,1]", "-o", str(out),
            "--precision", "int8", "--calibration", str(tmp_path / "nowhere")]
    result = subprocess.run([sys.executable, "-m", "irdeploy", *args], capture_output=True, text=True, timeout=600)
    assert result.returncode == 2, result.stderr
    lines = [l for l in result.stderr.splitlines() if not l.startswith("irdeploy export: warning")]
    assert len(lines) == 1 and "no such folder" in lines[0] and "Traceback" not in result.stderr
    assert not out.exists()
