"""Reading an ONNX graph for the things the export promises: what was folded, what was not.

Everything here is a pure function of the ``onnx.ModelProto``, so the export report, ``irdeploy
inspect`` and the tests all measure a graph the same way.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import onnx

# Ops that betray an unfolded LayerNorm (the ReduceMean/Sub/Pow/Sqrt/Div chain).
DECOMPOSED_NORM_OPS = ("Pow", "Sqrt", "ReduceSumSquare")
# Never wanted in a deployment graph.
NOISE_OPS = ("Identity", "Dropout")
# What F.normalize leaves behind when it is not rewritten.
NORMALIZE_SPAGHETTI = ("Clip", "Expand")
LOW_TYPES = {onnx.TensorProto.FLOAT16: "fp16", onnx.TensorProto.BFLOAT16: "bf16"}


def op_histogram(model: onnx.ModelProto) -> Counter:
    return Counter(node.op_type for node in model.graph.node)


@dataclass(frozen=True)
class AttentionCore:
    """One attention block as it appears in the graph."""

    kind: str  # "matmul-softmax-matmul" or "Attention"
    nodes: tuple[str, ...]


def _consumers(graph: onnx.GraphProto) -> dict[str, list[onnx.NodeProto]]:
    users: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            users.setdefault(name, []).append(node)
    return users


def attention_cores(model: onnx.ModelProto) -> list[AttentionCore]:
    """Find MatMul -> Softmax -> MatMul chains with nothing between, and opset-23 ``Attention`` nodes.

    A top-k attention (MHNet) masks the logits between the first MatMul and its Softmaxes;
    each Softmax -> MatMul whose logits come from a MatMul through ``Where`` masking only is
    counted as a "masked" core.
    """
    graph = model.graph
    producer = {out: node for node in graph.node for out in node.output}
    users = _consumers(graph)
    cores = [AttentionCore("Attention", (n.name,)) for n in graph.node if n.op_type == "Attention"]
    for node in graph.node:
        if node.op_type != "Softmax":
            continue
        first = producer.get(node.input[0])
        kind = "matmul-softmax-matmul"
        if first is not None and first.op_type == "Where":
            kind = "masked-matmul-softmax-matmul"
            first = next((producer.get(i) for i in first.input[1:] if producer.get(i) is not None
                          and producer[i].op_type == "MatMul"), None)
        seconds = [u for u in users.get(node.output[0], []) if u.op_type == "MatMul"]
        if first is not None and first.op_type == "MatMul" and len(seconds) == 1:
            cores.append(AttentionCore(kind, (first.name, node.name, seconds[0].name)))
    return cores


def count_layernorms(model: onnx.ModelProto) -> int:
    return sum(1 for n in model.graph.node if n.op_type == "LayerNormalization")


def _root(name: str, producer: dict[str, onnx.NodeProto]) -> str:
    """The tensor a chain of Casts starts from (mixed-precision graphs put Casts anywhere)."""
    node = producer.get(name)
    while node is not None and node.op_type == "Cast":
        name = node.input[0]
        node = producer.get(name)
    return name


def biasfree_norms(model: onnx.ModelProto) -> list[tuple[str, ...]]:
    """Restormer's bias-free LayerNorms: ``x / Sqrt(ReduceMean((x - ReduceMean(x))^2) + eps)``.

    It normalises by the standard deviation about the mean without subtracting the mean, which
    ``LayerNormalization`` cannot express with its one output that TensorRT parses, so
    :class:`irdeploy.model.restormer.BiasFreeLayerNorm2d` exports as this fixed chain. Each match
    is (first ReduceMean, Sub, Mul, second ReduceMean, Add, Sqrt, Div); Casts between them are
    looked through. Its ``Sqrt`` is this pattern's, not a decomposed LayerNorm.
    """
    graph = model.graph
    producer = {out: node for node in graph.node for out in node.output}

    def made_by(name: str, op: str) -> onnx.NodeProto | None:
        node = producer.get(_root(name, producer))
        return node if node is not None and node.op_type == op else None

    divides: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        if node.op_type == "Div" and len(node.input) == 2:
            divides.setdefault(_root(node.input[1], producer), []).append(node)
    found = []
    for sqrt in graph.node:
        if sqrt.op_type != "Sqrt":
            continue
        add = made_by(sqrt.input[0], "Add")
        var = next((n for n in (made_by(i, "ReduceMean") for i in add.input) if n), None) if add else None
        square = made_by(var.input[0], "Mul") if var else None
        if square is None or _root(square.input[0], producer) != _root(square.input[1], producer):
            continue
        sub = made_by(square.input[0], "Sub")
        mean = made_by(sub.input[1], "ReduceMean") if sub else None
        x = _root(sub.input[0], producer) if sub else None
        if mean is None or _root(mean.input[0], producer) != x:
            continue
        div = next((d for d in divides.get(sqrt.output[0], []) if _root(d.input[0], producer) == x), None)
        if div is not None:
            found.append(tuple(n.name for n in (mean, sub, square, var, add, sqrt, div)))
    return found


def compute_precision(model: onnx.ModelProto) -> str:
    """"int8" with Q/DQ pairs, "fp16"/"bf16" when low-precision initializers or casts are present, else "fp32"."""
    if any(node.op_type == "DequantizeLinear" for node in model.graph.node):
        return "int8"
    for init in model.graph.initializer:
        if init.data_type in LOW_TYPES:
            return LOW_TYPES[init.data_type]
    for node in model.graph.node:
        if node.op_type == "Cast":
            to = next((a.i for a in node.attribute if a.name == "to"), None)
            if to in LOW_TYPES:
                return LOW_TYPES[to]
    return "fp32"


FLOAT_TYPES = (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16)


def parameter_count(model: onnx.ModelProto) -> int:
    """Elements of the floating-point initializers (shape constants and scalars are not weights)."""
    total = 0
    for init in model.graph.initializer:
        if init.data_type not in FLOAT_TYPES or not init.dims:
            continue
        size = 1
        for d in init.dims:
            size *= d
        total += size
    return total


def shape_arithmetic(model: onnx.ModelProto) -> Counter:
    """Op histogram of the nodes that compute shapes: ``Shape`` and everything fed only by it.

    A node belongs if every input is a constant or the output of a shape node, and at least
    one is the latter. Data ops (a ``Concat`` of feature maps, a ``Reshape`` of activations)
    do not, even though they share op types with shape code.
    """
    constants = {i.name for i in model.graph.initializer}
    derived: set[str] = set()
    hist: Counter = Counter()
    for node in model.graph.node:
        inputs = [i for i in node.input if i]
        if node.op_type == "Constant":
            constants.update(node.output)
            continue
        from_shape = node.op_type == "Shape" or (
            any(i in derived for i in inputs) and all(i in derived or i in constants for i in inputs)
        )
        if from_shape:
            derived.update(node.output)
            hist[node.op_type] += 1
    return hist


def is_static(model: onnx.ModelProto) -> bool:
    dims = [d for v in model.graph.input for d in v.type.tensor_type.shape.dim]
    return all(d.HasField("dim_value") for d in dims)


def problems(model: onnx.ModelProto, expected_layernorms: int | None = None,
             expected_biasfree: int | None = None) -> list[str]:
    """Everything that breaks the "folded cleanly" promise, one readable line each.

    ``expected_biasfree`` is the number of bias-free LayerNorm modules (Restormer's denoisers);
    their chains' ``Sqrt`` nodes are theirs (:func:`biasfree_norms`), any other is a decomposition.
    """
    hist = op_histogram(model)
    biasfree = len(biasfree_norms(model)) if hist["Sqrt"] or expected_biasfree else 0
    hist["Sqrt"] -= biasfree
    found = []
    for op in DECOMPOSED_NORM_OPS:
        if hist[op]:
            found.append(f"{hist[op]} {op} node(s): a LayerNorm or L2 norm was decomposed")
    if expected_biasfree is not None and biasfree != expected_biasfree:
        found.append(f"{biasfree} bias-free LayerNorm chain(s) for {expected_biasfree} BiasFree LayerNorm modules")
    for op in NOISE_OPS:
        if hist[op]:
            found.append(f"{hist[op]} {op} node(s) left in the graph")
    for op in NORMALIZE_SPAGHETTI:
        if hist[op]:
            found.append(f"{hist[op]} {op} node(s): an unrewritten F.normalize or clamp")
    if expected_layernorms is not None and hist["LayerNormalization"] != expected_layernorms:
        found.append(f"{hist['LayerNormalization']} LayerNormalization node(s) for {expected_layernorms} LayerNorm modules")
    if is_static(model):
        shape_ops = shape_arithmetic(model)
        if shape_ops:
            found.append(f"static graph still computes shapes: {dict(shape_ops)}")
    if hist["PixelShuffle"] or hist["SpaceToDepth"]:
        found.append("PixelShuffle was not lowered to DepthToSpace")
    return found
