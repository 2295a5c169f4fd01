"""FP16/BF16 as ONNX tensor types, with float32 islands: the precision policy of our engines.

Why the policy lives in the graph: TensorRT 11 and TensorRT-RTX build *strongly typed* networks
only. There is no FP16 builder flag and no per-layer precision; every layer runs in the type of
its tensors. An FP16 engine is therefore built from an ONNX graph whose tensors are FP16, and the
layers that must stay float32 are float32 *islands*: a Cast in, float32 nodes, a Cast out.
:func:`to_mixed_precision` writes that graph from the float32 export.

What the pass does, and why:

- **Float32 edges.** Graph inputs and outputs keep their float32 type (Casts at the edges), so
  every caller feeds and reads float32 whatever the engine's precision.
- **Types follow the operator schemas.** A node goes low only if its schema allows the low type
  for every float input and output that shares the data's type variable; inputs with a type of
  their own keep it (Resize ``roi``/``scales`` are coordinates: rounding them would move the
  sampling grid; LayerNormalization's optional Mean/InvStdDev follow ``stash_type``, not the
  data). ``stash_type`` is left as exported (1: statistics in float32), which is what keeps a
  low-precision LayerNormalization from overflowing its variance. Nodes no schema covers
  (custom domains, a ``dtype`` attribute, subgraphs) stay float32.
- **One Cast per crossing tensor**, placed after its producer and shared by every consumer that
  needs the other precision. Weights are converted instead of cast (clipped to the low type's
  finite range so a large float32 constant does not become inf), and duplicated only when
  consumers of both precisions read them. Integer tensors (shapes, indices) are untouched.
- **BF16 needs opset 22**: Conv accepts bfloat16 only from opset 22 on, so older graphs are
  upgraded with :func:`onnx.version_converter.convert_version` first. TopK accepts bfloat16
  only from opset 24, so below that it stays a float32 island (MHNet's top-k attention).
- **Cast clean-up**: Casts to the type a tensor already has, and a Cast that undoes an exact
  widening Cast (low -> float32 -> low), are removed; both appear when the input graph already
  carries Casts.

ONNX Runtime's CPU provider runs the FP16 graph (it computes unsupported FP16 kernels in float32
and casts) but has no BF16 kernels for Conv, MatMul, Add, Mul, Softmax and most other compute
ops. :func:`emulate_low_precision` turns a mixed graph into a float32 graph that rounds exactly
where the mixed graph stores low-precision tensors, which measures BF16 (and FP16) storage
error on any CPU.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection
from dataclasses import dataclass

import ml_dtypes
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper, shape_inference, version_converter

FLOAT = TensorProto.FLOAT
PRECISIONS: dict[str, int] = {"fp16": TensorProto.FLOAT16, "bf16": TensorProto.BFLOAT16}
# Measured by irdeploy.export.audit on the three tiny models (see DEFAULT_FP32_OPS below).
DEFAULT_FP32_OPS: frozenset[str] = frozenset({"ReduceL2", "ReduceMean"})

_NUMPY = {TensorProto.FLOAT16: np.float16, TensorProto.BFLOAT16: ml_dtypes.bfloat16}
_TAG = {FLOAT: "fp32", TensorProto.FLOAT16: "fp16", TensorProto.BFLOAT16: "bf16"}
# Float inputs/outputs that keep float32 in a low-precision node (see the module docstring).
_FP32_INPUTS = {"Resize": (1, 2), "Upsample": (1,)}
_FP32_OUTPUTS = {"LayerNormalization": (1, 2)}
# Ops that read their input in whatever type it has: no Cast is ever needed in front of them.
_ANY_TYPE_READERS = frozenset({"Shape", "Size", "Cast", "CastLike"})
_BF16_MIN_OPSET = 22


@dataclass(frozen=True)
class MixedPrecisionInfo:
    """What the pass did: how much of the graph runs low, and what the float32 islands cost.

    ``low_nodes``/``fp32_nodes`` count nodes that handle float data (compute and data movement;
    shape arithmetic and the inserted Casts are not counted). An island is a connected group of
    float32 nodes; each costs at least one Cast in and one out, which is why few large islands
    beat many small ones.
    """

    precision: str
    low_nodes: int
    fp32_nodes: int
    fp32_islands: int
    casts_inserted: int

    @property
    def fp32_share(self) -> float:
        """Fraction of the float nodes that stay float32."""
        total = self.low_nodes + self.fp32_nodes
        return self.fp32_nodes / total if total else 0.0


def to_mixed_precision(
    model: onnx.ModelProto,
    precision: str = "fp16",
    *,
    fp32_ops: Collection[str] | None = None,
    fp32_nodes: Collection[str] = (),
    low_ops: Collection[str] | None = None,
    low_nodes: Collection[str] | None = None,
) -> tuple[onnx.ModelProto, MixedPrecisionInfo]:
    """Return a copy of float32 ``model`` computing in ``precision`` ("fp16" or "bf16").

    By default every float node goes low except op types in ``fp32_ops`` (default:
    :data:`DEFAULT_FP32_OPS`, the policy measured by :mod:`irdeploy.export.audit`) and nodes
    named in ``fp32_nodes``. ``low_ops``/``low_nodes`` invert the selection: only nodes of those
    op types or names go low, everything else stays float32 (``fp32_ops`` then defaults to
    none); the audit uses this to lower one op family at a time.
    """
    low = _low_type(precision)
    model = _prepared(model, low)
    graph = model.graph
    whitelist = low_ops is not None or low_nodes is not None
    keep_ops = frozenset(fp32_ops if fp32_ops is not None else (() if whitelist else DEFAULT_FP32_OPS))
    keep_names, low_op_set, low_name_set = frozenset(fp32_nodes), frozenset(low_ops or ()), frozenset(low_nodes or ())

    def selected(node: onnx.NodeProto) -> bool:
        if node.op_type in keep_ops or node.name in keep_names:
            return False
        return not whitelist or node.op_type in low_op_set or node.name in low_name_set

    types, shapes = _tensor_types(model)
    opsets = {o.domain or "ai.onnx": o.version for o in model.opset_import}
    inits = {t.name: t for t in graph.initializer}
    graph_inputs = {v.name for v in graph.input if v.name not in inits}
    graph_outputs = [v.name for v in graph.output]

    # 1. Decide each node's precision and the type every float input needs.
    plans = [_plan(node, types, opsets, low, selected(node)) for node in graph.node]
    final = dict(types)  # tensor -> type after the pass
    wants: dict[str, set[int]] = defaultdict(set)
    for node, plan in zip(graph.node, plans):
        for i, dtype in plan.inputs.items():
            wants[node.input[i]].add(dtype)
        for j, dtype in plan.outputs.items():
            final[node.output[j]] = dtype
    for name in graph_outputs:
        if types.get(name) == FLOAT:
            wants[name].add(FLOAT)

    # 2. Give every (tensor, type) pair a name: the tensor itself, a converted weight, or a Cast.
    names = _NameSource(graph)
    version: dict[tuple[str, int], str] = {}
    casts_after: dict[str, list[onnx.NodeProto]] = defaultdict(list)  # producer output -> Casts
    renamed: dict[str, str] = {}  # graph output produced in low precision -> its new name
    new_inits: list[TensorProto] = []
    for name, dtypes in wants.items():
        if name in inits:
            _convert_weight(inits[name], dtypes, low, version, new_inits, names, final)
            continue
        native = final[name]
        source = name
        if name in graph_outputs and native != FLOAT:
            source = renamed[name] = names.tensor(f"{name}_{_TAG[native]}")
            version[(name, FLOAT)] = name
            casts_after[name].append(_cast(source, name, FLOAT, names))
        version[(name, native)] = source
        for dtype in dtypes - {native}:
            if (name, dtype) not in version:
                target = version[(name, dtype)] = names.tensor(f"{name}_{_TAG[dtype]}")
                casts_after[name].append(_cast(source, target, dtype, names))
                final[target] = dtype
    graph.initializer.extend(new_inits)

    # 3. Rewrite the nodes: lowered outputs, inputs pointing at the right version, Casts placed.
    head = [c for name in graph_inputs for c in casts_after.pop(name, [])]
    nodes: list[onnx.NodeProto] = []
    for node, plan in zip(graph.node, plans):
        for i, dtype in plan.inputs.items():
            node.input[i] = version[(node.input[i], dtype)]
        for i, name in enumerate(node.input):
            if i not in plan.inputs and name in renamed:
                node.input[i] = renamed[name]
        if plan.low:
            _retype_attribute(node, low)
        pending = [c for out in node.output for c in casts_after.pop(out, [])]
        for j, out in enumerate(node.output):
            if out in renamed:
                node.output[j] = renamed[out]
                final[renamed[out]] = final[out]
        nodes.extend([node, *pending])
    casts_inserted = len(head) + sum(n.op_type == "Cast" for n in nodes) - sum(n.op_type == "Cast" for n in graph.node)
    nodes, removed = _fold_casts(head + nodes, final, set(graph_outputs))
    graph.ClearField("node")
    graph.node.extend(nodes)
    _write_value_info(graph, final, shapes, renamed)
    _drop_unused_initializers(graph)

    fp32 = [n for n, p in zip(nodes_before := list(graph.node), []) if False]  # placeholder removed below
    del fp32, nodes_before
    info = MixedPrecisionInfo(
        precision=precision,
        low_nodes=sum(p.is_float and p.low for p in plans),
        fp32_nodes=sum(p.is_float and not p.low for p in plans),
        fp32_islands=_count_islands(model.graph, plans_by_name(graph, plans)),
        casts_inserted=casts_inserted - removed,
    )
    return model, info
