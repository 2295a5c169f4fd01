"""Which layers does INT8 hurt? Quantize one layer at a time, and find the ones to keep float.

:func:`int8_audit` starts from the calibrated Q/DQ graph and, for each quantized node (a Conv,
ConvTranspose or MatMul with int8 inputs), measures the graph where *only that node* reads
int8 (:func:`irdeploy.export.quantize.unquantized` points every other node back at its float
inputs; the scales stay the calibrated ones, nothing is recalibrated). The PSNR against the
eager float32 reference is the error that layer's quantization adds on its own, measured by
ONNX Runtime's int8 kernels on real photographs.

:func:`bisect_int8` is ``validate --bisect`` for int8: nodes ordered worst first by that audit,
then the shortest prefix that, kept float (float32 in the ONNX graph, float16 in the engine
through the fp16 policy), lifts the PSNR over the floor: a binary search, log2(n) evaluations
on top of the audit. The answer is ``--fp32-nodes`` for ``irdeploy export --precision int8``.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import onnx

from .bisect import BisectResult
from .quantize import QUANTIZED_OPS, unquantized


@dataclass(frozen=True)
class Int8Row:
    """One quantized node: the PSNR (dB) and worst pixel with only this node in int8."""

    node: str
    op: str
    kind: str  # "dense conv", "1x1 conv", "depthwise conv", "grouped conv", "deconv", "matmul"
    psnr: float
    max_abs: float

    def to_dict(self) -> dict[str, float | str | None]:
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in asdict(self).items()}


def node_kinds(model_fp32: onnx.ModelProto) -> dict[str, str]:
    """Kind of every Conv/ConvTranspose/MatMul node, from its weight shape and ``group``.

    The kinds matter beyond the audit: TensorRT has optimised INT8 kernels for all of them but
    no FP8 depthwise or grouped convolutions (NVIDIA/TensorRT#4524).
    """
    shapes = {t.name: tuple(t.dims) for t in model_fp32.graph.initializer}
    kinds = {}
    for node in model_fp32.graph.node:
        if node.op_type == "MatMul":
            kinds[node.name] = "matmul"
        elif node.op_type == "ConvTranspose":
            kinds[node.name] = "deconv"
        elif node.op_type == "Conv":
            group = next((a.i for a in node.attribute if a.name == "group"), 1)
            weight = shapes.get(node.input[1], ())
            if group > 1:
                kinds[node.name] = "depthwise conv" if len(weight) > 1 and weight[1] == 1 else "grouped conv"
            else:
                kinds[node.name] = "1x1 conv" if weight[2:] == (1, 1) else "dense conv"
    return kinds


def int8_audit(
    model_fp32: onnx.ModelProto,
    model_int8: onnx.ModelProto,
    inputs: Sequence[np.ndarray],
    references: Sequence[np.ndarray],
    *,
    nodes: Collection[str] | None = None,
) -> list[Int8Row]:
    """Rank quantized nodes (all, or ``nodes``) by the PSNR with only that node in int8, worst first.

    Two summary rows come last in the ranking's sense: ``(all)`` (the whole int8 graph) and
    ``(none)`` (every node float again: what remains is the float32 graph's own error).
    """
    from .audit import _error, _run

    quantized = _quantized_names(model_int8)
    chosen = [n for n in quantized if nodes is None or n in nodes]
    unknown = set(nodes or ()) - set(quantized)
    if unknown:
        raise ValueError(f"not a quantized node: {', '.join(sorted(unknown)[:5])}")
    kinds = node_kinds(model_fp32)
    ops = {n.name: n.op_type for n in model_int8.graph.node}
    rows = []
    for name in chosen:
        graph = unquantized(model_int8, model_fp32, [n for n in quantized if n != name])
        psnr, max_abs = _error(_run(graph, inputs), references)
        rows.append(Int8Row(name, ops[name], kinds.get(name, "?"), psnr, max_abs))
    rows.sort(key=lambda r: (r.psnr, -r.max_abs))
    for label, graph in (("(all)", model_int8), ("(none)", unquantized(model_int8, model_fp32, quantized))):
        psnr, max_abs = _error(_run(graph, inputs), references)
        rows.append(Int8Row(label, "", "", psnr, max_abs))
    return rows


def kind_summary(rows: Sequence[Int8Row]) -> dict[str, tuple[int, float]]:
    """Kind -> (nodes, lowest single-node PSNR): which kinds of layer INT8 hurts most."""
    out: dict[str, tuple[int, float]] = {}
    for r in rows:
        if r.kind:
            n, worst = out.get(r.kind, (0, math.inf))
            out[r.kind] = (n + 1, min(worst, r.psnr))
    return out


def bisect_int8(
    model_fp32: onnx.ModelProto,
    model_int8: onnx.ModelProto,
    inputs: Sequence[np.ndarray],
    references: Sequence[np.ndarray],
    *,
    min_psnr: float,
    ranking: Sequence[Int8Row] | None = None,
) -> BisectResult:
    """Fewest worst-ranked nodes to keep float so the int8 graph reaches ``min_psnr`` (dB)."""
    from .audit import _run
    from irdeploy.core.images import psnr

    def score(keep: Sequence[str]) -> float:
        graph = unquantized(model_int8, model_fp32, keep)
        return min(psnr(o, r) for o, r in zip(_run(graph, inputs), references))

    evaluations = 1
    default = score([])
    if default >= min_psnr:
        return BisectResult("int8", min_psnr, default, default, (), evaluations)
    rows = ranking if ranking is not None else int8_audit(model_fp32, model_int8, inputs, references)
    order = [r.node for r in rows if r.kind]
    evaluations += len(order) + 1
    if score(order) < min_psnr:
        return BisectResult("int8", min_psnr, default, None, (), evaluations)
    lo, hi, best = 0, len(order), None  # prefix hi passes, prefix lo fails
    while hi - lo > 1:
        mid = (lo + hi) // 2
        evaluations += 1
        value = score(order[:mid])
        if value >= min_psnr:
            hi, best = mid, value
        else:
            lo = mid
    if best is None:
        best = score(order[:hi])
        evaluations += 1
    return BisectResult("int8", min_psnr, default, best, tuple(order[:hi]), evaluations)


def prepare(model, size: tuple[int, int] | None = None, *, calibration=None, method: str | None = None):
    """``(fp32 graph, int8 graph, inputs, references)`` for the CLI: ``model`` exported in float32,
    quantized as ``irdeploy export --precision int8`` would, and three photo crops (multiples of
    the padding multiple, so the graphs run them unpadded) with the eager outputs."""
    import tempfile
    from pathlib import Path

    import torch

    from irdeploy.model import final_image
    from irdeploy.model.spec import pad_multiple

    from .int8 import quantize_for_export
    from .onnx_export import to_onnx
    from .parity import make_inputs

    m = pad_multiple(model)
    if size is not None and (size[0] % m or size[1] % m):
        ah, aw = -(-size[0] // m) * m, -(-size[1] // m) * m
        raise ValueError(f"size {size[0]}x{size[1]} is not a multiple of {m}; use e.g. {ah}x{aw}")
    sizes = [(1, *size)] * 3 if size else [(1, 4 * m, 4 * m), (1, 6 * m, 8 * m), (1, 8 * m, 6 * m)]
    inputs = [x for _, x in make_inputs(3, sizes)][1:] if size else [x for _, x in make_inputs(3, sizes)]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fp32.onnx"
        to_onnx(model, path, tensorrt=False, parity=False)
        graph = onnx.load(path)
    quantized, _ = quantize_for_export(graph, m, calibration=calibration, method=method)
    with torch.inference_mode():
        references = [final_image(model(torch.from_numpy(x))).numpy() for x in inputs]
    return graph, quantized, inputs, references


def format_int8_table(rows: Sequence[Int8Row], title: str = "", top: int = 12) -> str:
    """The audit's worst ``top`` nodes, the summary rows and the per-kind worst (80 columns)."""
    lines = [title] if title else []
    lines.append(f"{'node':<40} {'kind':<15} {'PSNR dB':>8} {'max abs':>9}")
    nodes = [r for r in rows if r.kind]
    for i, r in enumerate([*nodes[:top], *(r for r in rows if not r.kind)]):
        if i == min(top, len(nodes)) and len(nodes) > top:
            lines.append(f"... {len(nodes) - top} more nodes, each at or above {nodes[top].psnr:.2f} dB")
        name = r.node if len(r.node) <= 40 else r.node[:37] + "..."
        lines.append(f"{name:<40} {r.kind:<15} {r.psnr:>8.2f} {r.max_abs:>9.3g}")
    lines.append("")
    lines.append(f"{'kind':<20} {'nodes':>6} {'worst PSNR dB':>14}")
    for kind, (n, worst) in sorted(kind_summary(rows).items(), key=lambda kv: kv[1][1]):
        lines.append(f"{kind:<20} {n:>6} {worst:>14.2f}")
    return "\n".join(lines)


def _quantized_names(model_int8: onnx.ModelProto) -> list[str]:
    """Names of nodes with at least one ``DequantizeLinear`` input, in graph (topological) order."""
    dq = {n.output[0] for n in model_int8.graph.node if n.op_type == "DequantizeLinear"}
    return [n.name for n in model_int8.graph.node if n.op_type in QUANTIZED_OPS and dq.intersection(n.input)]
