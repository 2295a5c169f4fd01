"""Which op families can run in FP16/BF16? Lower one family at a time and measure what it costs.

Why: a mixed-precision policy (:data:`irdeploy.export.precision.DEFAULT_FP32_OPS`) should keep
float32 exactly the families whose low-precision error is large and whose float32 islands are
cheap. :func:`fp16_audit` measures both: for each family it lowers only that family (everything
else float32), runs ONNX Runtime on CPU and reports the PSNR and worst pixel against the float32
reference, next to the family's node count and what keeping only it float32 buys (PSNR with
everything else low) and costs (Casts). Rows for the whole graph low ("all") and for the default
policy ("policy") show where the families add up to.

Reading the two PSNRs: the rounding twin rounds the tensors a graph *stores*, so a float32 node
between low neighbours reads and writes tensors they round anyway. Keeping it float32 buys
nothing measurable here unless it has weights or touches the graph's edges (the output Add
reads the float32 input); its *arithmetic* precision (accumulation over millions of pixels) is
what a CPU cannot measure, and the policy's reason for keeping reductions float32.

Errors are measured on :func:`~irdeploy.export.precision.emulate_low_precision`'s float32 twin,
which rounds every tensor the real graph stores in low precision (and accumulates in float32),
because ONNX Runtime's CPU provider cannot measure it: it has no BF16 kernels for most compute
ops, and it computes FP16 nodes it has no kernel for in float32 and then drops the Cast pairs
between them, so a lone FP16 node shows no error at all (measured: lowering only the output
Add, or only the 13 ReduceMean of M3SNet, changes nothing in its output).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import onnx
import onnxruntime as ort

from irdeploy.core.progress import step

from .graph import biasfree_norms
from .precision import emulate_low_precision, to_mixed_precision

# Op-type families, in the order they are matched. Node-level families come first (below).
OP_FAMILIES: dict[str, frozenset[str]] = {
    "conv": frozenset({"Conv", "ConvTranspose"}),
    "layernorm": frozenset({"LayerNormalization"}),
    "softmax": frozenset({"Softmax"}),
    "matmul": frozenset({"MatMul", "Gemm"}),
    "attention": frozenset({"Attention"}),
    "pooling": frozenset({"ReduceMean", "AveragePool", "GlobalAveragePool"}),
    "activation": frozenset({"Relu", "PRelu", "Sigmoid", "Tanh", "Gelu", "LeakyRelu", "Clip"}),
    "elementwise": frozenset({"Add", "Sub", "Mul", "Div", "Pow", "Sqrt", "Reciprocal", "Neg", "Abs"}),
    "resize": frozenset({"Resize"}),
    "topk": frozenset({"TopK"}),
    "data movement": frozenset({
        "Transpose", "Reshape", "Split", "Concat", "Slice", "DepthToSpace", "SpaceToDepth", "Expand",
        "Gather", "Where", "Squeeze", "Unsqueeze", "Flatten", "Identity", "ScatterElements", "Pad",
    }),
}
OUTPUT = "output add"  # the node writing the graph output: the residual that adds the input back
L2NORM = "l2norm"      # ReduceL2 and the Div that divides by it: attention's q/||q||
BIASFREE = "biasfree norm"  # Restormer's bias-free LayerNorm chains (graph.biasfree_norms)
ALL, POLICY, FLOAT32 = "all", "policy", "float32"


@dataclass(frozen=True)
class AuditRow:
    """One family: the error it adds in low precision, and what keeping it float32 buys and costs.

    ``psnr`` (dB, images in [0, 1]) and ``max_abs`` compare the outputs with the reference over
    all inputs when only this family is low; ``nodes`` counts the family's nodes that handle
    float data. ``kept_psnr`` is the PSNR when everything *but* this family is low: what keeping
    it float32 buys inside an otherwise low graph, where its neighbours round its inputs and
    outputs anyway. ``casts`` is what that costs: the Casts of that graph. The "all", "policy"
    and "float32" rows have no kept variant (``kept_psnr`` is NaN) and count their own Casts.
    """

    family: str
    nodes: int
    psnr: float
    max_abs: float
    kept_psnr: float
    casts: int

    def to_dict(self) -> dict[str, float | int | str | None]:
        """JSON-safe: infinite or missing PSNR becomes ``None``."""
        row = asdict(self)
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()}


def op_families(model: onnx.ModelProto) -> dict[str, list[str]]:
    """Node names per family for the families present in ``model`` (nodes need names).

    Integer nodes (shape arithmetic) are listed too but never go low; float nodes of op types
    outside :data:`OP_FAMILIES` belong to no family and go low only in the "all" and "policy" rows.
    """
    outputs = {v.name for v in model.graph.output}
    l2 = {out for n in model.graph.node if n.op_type == "ReduceL2" for out in n.output}
    biasfree = {name for chain in biasfree_norms(model) for name in chain}
    families: dict[str, list[str]] = {}
    for node in model.graph.node:
        if outputs.intersection(node.output):
            family = OUTPUT
        elif node.name in biasfree:
            family = BIASFREE
        elif node.op_type == "ReduceL2" or (node.op_type == "Div" and l2.intersection(node.input)):
            family = L2NORM
        else:
            family = next((f for f, ops in OP_FAMILIES.items() if node.op_type in ops), None)
        if family is not None:
            families.setdefault(family, []).append(node.name)
    return families


def fp16_audit(
    model_fp32: onnx.ModelProto,
    inputs: Sequence[np.ndarray],
    references: Sequence[np.ndarray] | None = None,
    *,
    precision: str = "fp16",
    families: Collection[str] | None = None,
    emulate: bool = True,
) -> list[AuditRow]:
    """Lower each op family alone to ``precision`` and rank the families by the error they add.

    ``inputs`` are float32 NCHW batches for the graph input; ``references`` are the matching
    float32 outputs (eager PyTorch, say), by default the float32 graph's own outputs.
    ``families`` restricts the audit to some of :func:`op_families`' names. ``emulate=False``
    runs the FP16 graph itself in ONNX Runtime (which understates the error, see above). Rows
    come worst first (lowest PSNR), with "all" (whole
    graph low), "policy" (the default float32 islands) and "float32" (the graph unchanged).
    """
    found = op_families(model_fp32)
    unknown = set(families or ()) - set(found)
    if unknown:
        raise ValueError(f"no such family in this graph: {', '.join(sorted(unknown))}; present: {', '.join(found)}")
    chosen = {f: names for f, names in found.items() if families is None or f in families}
    if precision == "bf16" and not emulate:
        raise ValueError("ONNX Runtime's CPU provider cannot run BF16 graphs; audit BF16 with emulate=True")
    if references is None:
        references = _run(model_fp32, inputs)

    def measure(**selection) -> tuple[int, float, float, int]:
        graph, info = to_mixed_precision(model_fp32, precision, **selection)
        psnr, max_abs = _error(_run(emulate_low_precision(graph) if emulate else graph, inputs), references)
        return info.low_nodes, psnr, max_abs, info.casts_inserted

    rows = []
    for i, (family, names) in enumerate(chosen.items(), 1):
        with step(f"fp16-audit: {family} alone in {precision}, then all but {family} ({i}/{len(chosen)})"):
            nodes, psnr, max_abs, _ = measure(low_nodes=names)
            _, kept_psnr, _, casts = measure(fp32_ops=(), fp32_nodes=names)
        rows.append(AuditRow(family, nodes, psnr, max_abs, kept_psnr, casts))
    for family, selection in ((ALL, {"fp32_ops": (), "fp32_nodes": ()}), (POLICY, {})):
        with step(f"fp16-audit: {family} in {precision}"):
            nodes, psnr, max_abs, casts = measure(**selection)
        rows.append(AuditRow(family, nodes, psnr, max_abs, math.nan, casts))
    psnr, max_abs = _error(_run(model_fp32, inputs), references)
    rows.append(AuditRow(FLOAT32, 0, psnr, max_abs, math.nan, 0))
    return sorted(rows, key=lambda r: (r.psnr, -r.max_abs))


def audit_model(model, size: tuple[int, int] = (128, 128), precision: str = "fp16", *, eager: bool = True):
    """``irdeploy fp16-audit``: export ``model`` in float32 at ``size``, audit the graph on the two
    shipped photographs against the eager model, and (``eager``) cross-check per module family.

    Returns ``(graph_rows, eager_rows)``; ``size`` must be a multiple of the model's pad multiple
    (the graph is static and runs the crops as they are).
    """
    import tempfile
    from pathlib import Path

    import torch

    from irdeploy.model import final_image
    from irdeploy.model.spec import pad_multiple

    from .eager_audit import eager_audit
    from .onnx_export import to_onnx
    from .parity import make_inputs

    h, w = size
    multiple = pad_multiple(model)
    if h % multiple or w % multiple:
        ah, aw = -(-h // multiple) * multiple, -(-w // multiple) * multiple
        raise ValueError(f"size {h}x{w} is not a multiple of {multiple}; use e.g. {ah}x{aw}")
    inputs = [x for _, x in make_inputs(3, [(1, h, w)] * 3)[1:]]  # the two photographs
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "audit.onnx"
        to_onnx(model, path, static_shape=(h, w), tensorrt=False)
        graph = onnx.load(path)
    with torch.inference_mode():
        outs = [model(torch.from_numpy(x)) for x in inputs]
    references = [final_image(o, model).numpy() for o in outs]
    rows = fp16_audit(graph, inputs, references, precision=precision)
    return rows, (eager_audit(model, inputs, precision) if eager else [])


def format_table(rows: Sequence[AuditRow], title: str = "") -> str:
    """The audit as a plain-text table, one family per line, worst first."""
    lines = [title] if title else []
    lines.append(f"{'family':<14} {'nodes':>5} {'PSNR dB':>8} {'max abs':>9} {'kept dB':>8} {'casts':>5}")
    for r in rows:
        kept = f"{r.kept_psnr:>8.2f}" if math.isfinite(r.kept_psnr) else f"{'-':>8}"
        lines.append(f"{r.family:<14} {r.nodes:>5} {r.psnr:>8.2f} {r.max_abs:>9.3g} {kept} {r.casts:>5}")
    return "\n".join(lines)


def _run(model: onnx.ModelProto, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    options = ort.SessionOptions()
    options.log_severity_level = 3  # ORT warns about every FP16 node it computes in float32
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return [session.run(None, {name: np.ascontiguousarray(x, np.float32)})[0] for x in inputs]


def _error(outputs: Sequence[np.ndarray], references: Sequence[np.ndarray]) -> tuple[float, float]:
    """PSNR (peak 1) over all outputs pooled, and the worst absolute error; NaN/inf is -inf dB."""
    diffs = [np.asarray(o, np.float64) - np.asarray(r, np.float64) for o, r in zip(outputs, references, strict=True)]
    if not all(np.isfinite(d).all() for d in diffs):
        return -math.inf, math.inf
    mse = sum(float(np.sum(d * d)) for d in diffs) / sum(d.size for d in diffs)
    max_abs = max(float(np.abs(d).max()) for d in diffs)
    return (math.inf if mse == 0 else -10.0 * math.log10(mse)), max_abs
