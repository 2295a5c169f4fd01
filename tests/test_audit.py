"""The per-family precision audit ranks families on a real (tiny, random-weight) model."""

from __future__ import annotations

import json
import math

import onnx
import pytest
from test_precision import eager, photos

from irdeploy.export.audit import ALL, FLOAT32, L2NORM, OUTPUT, POLICY, fp16_audit, format_table, op_families


@pytest.fixture(scope="module")
def m3snet(tiny_onnx):
    path, model = tiny_onnx("m3snet")
    return onnx.load(path), model


def test_families_partition_the_float_nodes(m3snet) -> None:
    graph, _ = m3snet
    families = op_families(graph)
    assert set(families) == {
        "conv", "layernorm", "softmax", "matmul", "pooling", "elementwise", "data movement", L2NORM, OUTPUT}
    ops = {n.name: n.op_type for n in graph.graph.node}
    assert sorted(ops[n] for n in families[L2NORM]) == ["Div", "Div", "ReduceL2", "ReduceL2"]
    (out,) = families[OUTPUT]
    assert ops[out] == "Add" and "output" in next(n for n in graph.graph.node if n.name == out).output


def test_fp16_audit_ranks_families(m3snet) -> None:
    graph, model = m3snet
    x = photos()
    rows = fp16_audit(graph, [x], [eager(model, x)])
    by_family = {r.family: r for r in rows}
    families = [r for r in rows if r.family not in (ALL, POLICY, FLOAT32)]

    assert [r.psnr for r in rows] == sorted(r.psnr for r in rows)
    assert all(math.isfinite(v) for r in rows for v in (r.psnr, r.max_abs))
    assert all(math.isfinite(r.kept_psnr) for r in families)
    assert sum(r.nodes for r in families) == by_family[ALL].nodes  # every float node has a family
    assert by_family[ALL].psnr <= min(r.psnr for r in families) + 0.5  # worst, or close
    assert by_family[ALL].psnr - 0.5 <= by_family[POLICY].psnr < by_family[FLOAT32].psnr
    assert by_family[POLICY].nodes < by_family[ALL].nodes
    # The unchanged graph is the best row, up to rounding noise: a family whose float16 rounding
    # does not reach the output (the tiny model's l2norm: 137.01 vs 136.93 dB) may tie with it.
    assert by_family[FLOAT32].psnr > 100 and rows[-1].psnr - by_family[FLOAT32].psnr < 0.5
    # Lowering the reductions alone adds far less error than lowering the convolutions.
    assert by_family["pooling"].psnr > by_family["conv"].psnr + 20

    table = format_table(rows, "m3snet fp16")
    assert len(table.splitlines()) == len(rows) + 2
    json.dumps([r.to_dict() for r in rows], allow_nan=False)


def test_bf16_audit_is_emulated_and_topk_stays_float32(tiny_onnx) -> None:
    path, model = tiny_onnx("mhnet")
    x = photos(32, 48)
    rows = {r.family: r for r in fp16_audit(onnx.load(path), [x], precision="bf16", families=["topk", "softmax"])}
    assert set(rows) == {"topk", "softmax", ALL, POLICY, FLOAT32}
    assert rows["topk"].nodes == 0  # TopK takes bfloat16 only from opset 24
    assert rows["softmax"].nodes == 15 and rows[ALL].psnr < rows["softmax"].psnr
    assert rows[FLOAT32].psnr == math.inf and rows[FLOAT32].to_dict()["psnr"] is None


def test_audit_errors_are_one_line(m3snet) -> None:
    graph, _ = m3snet
    x = photos(32, 32)
    with pytest.raises(ValueError, match=r"^no such family in this graph: resize; present: "):
        fp16_audit(graph, [x], families=["resize"])
    with pytest.raises(ValueError, match=r"^ONNX Runtime's CPU provider cannot run BF16 graphs"):
        fp16_audit(graph, [x], precision="bf16", emulate=False)
