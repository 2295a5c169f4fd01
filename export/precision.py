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
  data). ``stash_type`` is left as exported (1): by the ONNX spec a low-precision
  LayerNormalization still computes its mean and variance in float32, where a float16 variance
  could overflow. Nodes no schema covers (custom domains) or whose output type is an attribute
  (``dtype``) stay float32; graphs with control flow (subgraphs) are refused.
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

ONNX Runtime's CPU provider runs the FP16 graph, but not faithfully: it computes FP16 nodes it
has no kernel for in float32 and drops the Cast pairs between them, so much of the rounding
never happens. It has no BF16 kernels at all for Conv, MatMul, Add, Mul, Softmax, Resize and
most other compute ops (only data movement, LayerNormalization and Cast run). So
:func:`emulate_low_precision` turns a mixed graph into a float32 graph that rounds exactly where
the mixed graph stores low-precision tensors: BF16 and FP16 storage error, measured on any CPU.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection
from dataclasses import dataclass

import ml_dtypes
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper, shape_inference, version_converter

from irdeploy.core.precision import REDUCED, check_precision

from .graph import biasfree_norms

_FLOAT = TensorProto.FLOAT
_LOW_TYPES: dict[str, int] = {"fp16": TensorProto.FLOAT16, "bf16": TensorProto.BFLOAT16}  # keys: core REDUCED
# The float32 policy, chosen with irdeploy.export.audit on the tiny M3SNet, MPRNet and MHNet
# (real photographs; numbers in the audit's tests and the export README):
# - Reductions over the pixels: ReduceMean (channel-attention pooling) and ReduceL2 (attention's
#   q/||q||). They sum up to millions of values: a float16 sum passes 65504 (mean 0.06 over a
#   1024x1024 map), a bfloat16 one keeps 8 bits, whenever the engine accumulates in the storage
#   type. CPU emulation cannot see that (it accumulates in float32; their storage error alone is
#   70-141 dB), and they are cheap to keep: 2-8% of the nodes, each output a few values per
#   channel, the input Cast fusable into the reduction.
# - Plus, by node (see to_mixed_precision), the node writing the output (the final residual
#   Add): free (the output Cast moves before it) and the input is added back unrounded; it buys
#   0.1-2.4 dB in FP16 and 0.2-2.5 dB in BF16.
# Everything else goes low: Conv, elementwise and data movement carry most of the error but are
# the whole point of FP16; LayerNormalization keeps stash_type=1 (float32 statistics) and,
# between low neighbours, a float32 island would round the same tensors anyway.
# - Restormer's bias-free LayerNorm (graph.biasfree_norms: no LayerNormalization can express it)
#   keeps its statistics float32 for the same reason (a float16 square overflows past 256):
#   ReduceMean, Sub, Mul, ReduceMean, Add, Sqrt; its Div and scale go low. On the tiny BiasFree
#   Restormer that is 2 Casts per norm instead of 4.
DEFAULT_FP32_OPS: frozenset[str] = frozenset({"ReduceL2", "ReduceMean"})
# BF16 only: TensorRT-RTX 1.7 has no BF16 deconvolution ("Could not infer output types for
# operation: deconv"), so MPRNet's bilinear upsamplers (ConvTranspose) stay float32 islands.
BF16_FP32_OPS: frozenset[str] = frozenset({"ConvTranspose"})

_NUMPY = {TensorProto.FLOAT16: np.float16, TensorProto.BFLOAT16: ml_dtypes.bfloat16}
_TAG = {_FLOAT: "fp32", TensorProto.FLOAT16: "fp16", TensorProto.BFLOAT16: "bf16"}
# Float inputs/outputs that keep float32 in a low-precision node (see the module docstring).
_FP32_INPUTS = {"Resize": (1, 2)}
_FP32_OUTPUTS = {"LayerNormalization": (1, 2)}
# Ops that read their input in whatever type it has: no Cast is ever needed in front of them.
_ANY_TYPE_READERS = frozenset({"Shape", "Size", "Cast"})
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
    fp32_nodes: Collection[str] | None = None,
    low_ops: Collection[str] | None = None,
    low_nodes: Collection[str] | None = None,
) -> tuple[onnx.ModelProto, MixedPrecisionInfo]:
    """Return a copy of float32 ``model`` computing in ``precision`` ("fp16" or "bf16").

    By default every float node goes low except the float32 policy measured with
    :mod:`irdeploy.export.audit`: op types in ``fp32_ops`` (default :data:`DEFAULT_FP32_OPS`, plus
    :data:`BF16_FP32_OPS` for bf16)
    and nodes named in ``fp32_nodes`` (default: the nodes that write a graph output, i.e. the
    final residual Add, so the output image is never rounded). ``low_ops``/``low_nodes`` invert
    the selection: only nodes of those op types or names go low, everything else stays float32
    (``fp32_ops``/``fp32_nodes`` then default to none); the audit uses it to lower one op family
    at a time.
    """
    low = _low_type(precision)
    model = _prepared(model, low)
    graph = model.graph
    whitelist = low_ops is not None or low_nodes is not None
    default_ops = DEFAULT_FP32_OPS | (BF16_FP32_OPS if low == TensorProto.BFLOAT16 else frozenset())
    keep_ops = frozenset(fp32_ops if fp32_ops is not None else (() if whitelist else default_ops))
    keep_names = frozenset(fp32_nodes or ()) - {""}
    if fp32_ops is None and not whitelist:  # the default policy: a bias-free LayerNorm's statistics stay float32
        keep_names |= {name for chain in biasfree_norms(model) for name in chain[:6]}
    keep_output = fp32_nodes is None and not whitelist
    only_ops, only_names = frozenset(low_ops or ()), frozenset(low_nodes or ()) - {""}
    graph_outputs = {v.name for v in graph.output}

    def selected(node: onnx.NodeProto) -> bool:
        if node.op_type in keep_ops or node.name in keep_names:
            return False
        if keep_output and graph_outputs.intersection(node.output):
            return False
        return not whitelist or node.op_type in only_ops or node.name in only_names

    types, shapes = _tensor_types(model)
    opsets = {o.domain or "ai.onnx": o.version for o in model.opset_import}
    inits = {t.name: t for t in graph.initializer}
    graph_inputs = [v.name for v in graph.input if v.name not in inits]
    original = list(graph.node)

    # 1. Each node's precision, and the type each of its float inputs must be read in.
    plans = [_plan(node, types, opsets, low, selected(node)) for node in original]
    islands = _count_islands(original, plans, types)
    final = dict(types)  # tensor -> its type after the pass
    wants: dict[str, set[int]] = defaultdict(set)
    for node, plan in zip(original, plans):
        for i, dtype in plan.inputs.items():
            wants[node.input[i]].add(dtype)
        for j, dtype in plan.outputs.items():
            final[node.output[j]] = dtype
    for name in graph_outputs:
        if types.get(name) == _FLOAT:
            wants[name].add(_FLOAT)

    # 2. A name for every (tensor, type) read: the tensor itself, a converted weight or a Cast.
    names = _Names(graph)
    version: dict[tuple[str, int], str] = {}
    casts_after: dict[str, list[onnx.NodeProto]] = defaultdict(list)  # tensor -> Casts of it
    renamed: dict[str, str] = {}  # low-precision graph output -> new name of the low tensor
    for name, dtypes in wants.items():
        if name in inits:
            _convert_weight(graph, inits[name], dtypes, version, final, names)
            continue
        native = name
        if name in graph_outputs and final[name] != _FLOAT:
            # The graph output keeps its name and float32; the low tensor behind it gets a new name.
            native = renamed[name] = names.tensor(f"{name}_{_TAG[final[name]]}")
            final[native], final[name], shapes[native] = final[name], _FLOAT, shapes.get(name)
            casts_after[name].append(_cast(native, name, _FLOAT, names))
            version[(name, _FLOAT)] = name
        version[(name, final[native])] = native
        for dtype in sorted(dtypes - {final[native]}):
            if (name, dtype) not in version:
                cast = version[(name, dtype)] = names.tensor(f"{name}_{_TAG[dtype]}")
                casts_after[name].append(_cast(native, cast, dtype, names))
                final[cast], shapes[cast] = dtype, shapes.get(name)

    # 3. Rewrite: inputs point at the right version, lowered outputs, Casts after their source.
    nodes = [cast for name in graph_inputs for cast in casts_after.pop(name, [])]
    for node, plan in zip(original, plans):
        for i, name in enumerate(node.input):
            node.input[i] = version[(name, plan.inputs[i])] if i in plan.inputs else renamed.get(name, name)
        if plan.low:
            _retype_attribute(node, low)
        casts = [cast for out in node.output for cast in casts_after.pop(out, [])]
        node.output[:] = [renamed.get(out, out) for out in node.output]
        nodes += [node, *casts]
    nodes = _fold_casts(nodes, final, graph_outputs)
    graph.ClearField("node")
    graph.node.extend(nodes)
    _write_value_info(graph, final, shapes)

    info = MixedPrecisionInfo(
        precision=precision,
        low_nodes=sum(p.low for p in plans),
        fp32_nodes=sum(p.is_float and not p.low for p in plans),
        fp32_islands=islands,
        casts_inserted=_count_casts(nodes) - _count_casts(original),
    )
    return model, info


def describe(model: onnx.ModelProto) -> MixedPrecisionInfo | None:
    """Read the precision split back from a graph (``irdeploy inspect``); ``None`` if all float32.

    A node counts as low precision when it writes a low-precision float tensor, float32 when it
    writes float32 ones; Casts and shape arithmetic are not counted, as in the pass itself.
    """
    types, _ = _tensor_types(model)
    low = next((t for t in (TensorProto.FLOAT16, TensorProto.BFLOAT16) if t in types.values()), None)
    if low is None:
        return None
    nodes = [n for n in model.graph.node if n.op_type != "Cast"]
    plans = []
    for node in nodes:
        outs = {j: types[t] for j, t in enumerate(node.output) if types.get(t) in (_FLOAT, low)}
        plans.append(_Plan(low=low in outs.values(), inputs={}, outputs=outs))
    low_count = sum(p.low for p in plans)
    fp32_count = sum(p.is_float and not p.low for p in plans)
    return MixedPrecisionInfo(_TAG[low], low_count, fp32_count, _count_islands(nodes, plans, types),
                              _count_casts(list(model.graph.node)))


def emulate_low_precision(model: onnx.ModelProto) -> onnx.ModelProto:
    """A float32 twin of mixed-precision ``model`` that rounds where ``model`` stores FP16/BF16.

    Why: ONNX Runtime's CPU provider has no BF16 kernels for most compute ops, so the BF16 graph
    cannot run on a CPU; this twin can, and measures the BF16 (or FP16) error anyway.

    Every node that produces a low-precision tensor computes in float32 here and its output is
    rounded through ``Cast(low) -> Cast(float32)`` (round-to-nearest-even, overflow to inf as in
    the real type); low-precision weights become float32 holding the rounded values. So it
    emulates exactly the *storage* rounding of every tensor the real graph keeps in low
    precision. It does not emulate arithmetic inside an op: accumulation in Conv, MatMul and
    reductions, the exp/sum of Softmax and the statistics of LayerNormalization all run in
    float32 (TensorRT usually accumulates in float32 too, but the choice is its tactics'), and
    overflow of an intermediate that is never stored is not seen.
    """
    model = _copy(model)
    graph = model.graph
    if any(v.type.tensor_type.elem_type in _NUMPY for v in [*graph.input, *graph.output]):
        raise ValueError("emulation needs float32 graph inputs and outputs, as to_mixed_precision writes them")
    types, _ = _tensor_types(model)
    names = _Names(graph)
    for init in graph.initializer:
        if init.data_type in _NUMPY:
            init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float32), init.name))
    nodes: list[onnx.NodeProto] = []
    for node in graph.node:
        rounds_itself = node.op_type == "Cast"  # Cast(to=low) already rounds: only widen after it
        if node.op_type == "ConstantOfShape" and types.get(node.output[0]) in _NUMPY:
            _retype_attribute(node, _FLOAT)  # low-precision values are exact in float32
        tail = []
        for j, out in enumerate(node.output):
            dtype = types.get(out)
            if dtype not in _NUMPY:
                continue
            stored = names.tensor(f"{out}_{_TAG[dtype]}")
            if rounds_itself:
                node.output[j] = stored
            else:
                node.output[j] = names.tensor(f"{out}_exact")
                tail.append(_cast(node.output[j], stored, dtype, names))
            tail.append(_cast(stored, out, _FLOAT, names))
        nodes += [node, *tail]
    graph.ClearField("node")
    graph.node.extend(nodes)
    graph.ClearField("value_info")  # every low type became float32; runtimes infer the rest
    return model


@dataclass(frozen=True)
class _Plan:
    """One node's precision: the type each float input is read in and each output written in."""

    low: bool
    inputs: dict[int, int]
    outputs: dict[int, int]

    @property
    def is_float(self) -> bool:
        return bool(self.inputs or self.outputs)


def _low_type(precision: str) -> int:
    return _LOW_TYPES[check_precision(precision, REDUCED)]


def _copy(model: onnx.ModelProto) -> onnx.ModelProto:
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    return copy


def _prepared(model: onnx.ModelProto, low: int) -> onnx.ModelProto:
    """A copy to rewrite: opset new enough for ``low``, float constants as initializers."""
    model = _copy(model)
    for node in model.graph.node:
        if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute):
            raise ValueError(f"node {node.name or node.op_type!r} has a subgraph; control flow is not supported")
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), _BF16_MIN_OPSET)
    if low == TensorProto.BFLOAT16 and opset < _BF16_MIN_OPSET:
        try:
            model = version_converter.convert_version(model, _BF16_MIN_OPSET)
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ValueError(
                f"bf16 needs opset {_BF16_MIN_OPSET} and this opset-{opset} graph does not convert: {first}"
            ) from None
    _lift_float_constants(model.graph)
    return model


def _lift_float_constants(graph: onnx.GraphProto) -> None:
    """Turn float32 ``Constant`` nodes into initializers, so they convert like weights."""
    for node in list(graph.node):
        if node.op_type != "Constant" or node.domain not in ("", "ai.onnx") or len(node.attribute) != 1:
            continue
        attr = node.attribute[0]
        if attr.name == "value" and attr.t.data_type == _FLOAT:
            tensor = numpy_helper.from_array(numpy_helper.to_array(attr.t), node.output[0])
        elif attr.name in ("value_float", "value_floats"):
            values = attr.f if attr.name == "value_float" else list(attr.floats)
            tensor = numpy_helper.from_array(np.array(values, np.float32), node.output[0])
        else:
            continue
        graph.initializer.append(tensor)
        graph.node.remove(node)


def _tensor_types(model: onnx.ModelProto) -> tuple[dict[str, int], dict[str, onnx.TensorShapeProto | None]]:
    """Element type and shape of every tensor, from shape inference."""
    inferred = shape_inference.infer_shapes(model)
    g = inferred.graph
    types: dict[str, int] = {t.name: t.data_type for t in g.initializer}
    shapes: dict[str, onnx.TensorShapeProto | None] = {}
    for vi in [*g.input, *g.value_info, *g.output]:
        if vi.type.HasField("tensor_type"):
            types[vi.name] = vi.type.tensor_type.elem_type
            tt = vi.type.tensor_type
            shapes[vi.name] = tt.shape if tt.HasField("shape") else None
    return types, shapes


def _plan(node: onnx.NodeProto, types: dict[str, int], opsets: dict[str, int], low: int, selected: bool) -> _Plan:
    reads_any = node.op_type in _ANY_TYPE_READERS
    floats_in = [i for i, t in enumerate(node.input) if t and types.get(t) == _FLOAT and not reads_any]
    floats_out = [j for j, t in enumerate(node.output) if t and types.get(t) == _FLOAT]
    follow = _following_slots(node, opsets, low, floats_in, floats_out) if selected else None
    is_low = bool(follow and (follow[0] or follow[1]))
    ins, outs = follow if is_low else ((), ())
    return _Plan(
        low=is_low,
        inputs={i: low if i in ins else _FLOAT for i in floats_in},
        outputs={j: low if j in outs else _FLOAT for j in floats_out},
    )


def _following_slots(
    node: onnx.NodeProto, opsets: dict[str, int], low: int, floats_in: list[int], floats_out: list[int]
) -> tuple[set[int], set[int]] | None:
    """The float slots that take the data's type; ``None`` if the node cannot go low at all."""
    domain = node.domain or "ai.onnx"
    try:
        schema = onnx.defs.get_schema(node.op_type, opsets.get(domain, 1), "" if domain == "ai.onnx" else domain)
    except onnx.defs.SchemaError:
        return None
    if any(a.name == "dtype" for a in node.attribute):  # output type fixed by an attribute
        return None
    allowed = {c.type_param_str: c.allowed_type_strs for c in schema.type_constraints}
    low_str = f"tensor({helper.tensor_dtype_to_string(low).split('.')[-1].lower()})"
    kept = {"in": _FP32_INPUTS.get(node.op_type, ()), "out": _FP32_OUTPUTS.get(node.op_type, ())}
    result: tuple[set[int], set[int]] = (set(), set())
    sides = (("in", floats_in, schema.inputs, result[0]), ("out", floats_out, schema.outputs, result[1]))
    for side, slots, formals, into in sides:
        for i in slots:
            if i in kept[side] or not formals:
                continue
            type_str = formals[min(i, len(formals) - 1)].type_str
            if type_str not in allowed:
                continue  # a fixed type such as tensor(float): stays float32
            if low_str not in allowed[type_str]:
                return None
            into.add(i)
    return result


def _convert_weight(
    graph: onnx.GraphProto, init: TensorProto, dtypes: set[int], version: dict[tuple[str, int], str],
    final: dict[str, int], names: _Names,
) -> None:
    """Convert a float32 weight in place, or add a low copy when float32 readers remain."""
    low = next((d for d in dtypes if d != _FLOAT), None)
    if low is None:
        version[(init.name, _FLOAT)] = init.name
        return
    converted = _as_type(numpy_helper.to_array(init), low)
    if _FLOAT in dtypes:
        version[(init.name, _FLOAT)] = init.name
        converted.name = names.tensor(f"{init.name}_{_TAG[low]}")
        graph.initializer.append(converted)
    else:
        converted.name = init.name
        init.CopyFrom(converted)
    version[(init.name, low)] = converted.name
    final[converted.name] = low


def _as_type(values: np.ndarray, dtype: int) -> TensorProto:
    """``values`` in ``dtype``, finite values clipped to its range (70000 is inf in float16)."""
    values = np.asarray(values, np.float32)
    if dtype == _FLOAT:
        return numpy_helper.from_array(values)
    top = float(ml_dtypes.finfo(_NUMPY[dtype]).max)
    clipped = np.where(np.isfinite(values), np.clip(values, -top, top), values)
    return numpy_helper.from_array(clipped.astype(_NUMPY[dtype]))


def _retype_attribute(node: onnx.NodeProto, dtype: int) -> None:
    """Ops whose output type is an attribute: Cast's ``to``, ConstantOfShape's ``value``."""
    if node.op_type == "Cast":
        for attr in node.attribute:
            if attr.name == "to":
                attr.i = dtype
    elif node.op_type == "ConstantOfShape":
        value = next((a for a in node.attribute if a.name == "value"), None)
        values = numpy_helper.to_array(value.t) if value is not None else np.zeros(1, np.float32)
        tensor = _as_type(values, dtype)
        node.ClearField("attribute")
        node.attribute.append(helper.make_attribute("value", tensor))


def _cast(source: str, target: str, dtype: int, names: _Names) -> onnx.NodeProto:
    return helper.make_node("Cast", [source], [target], name=names.node(f"{target}_cast"), to=dtype)


def _fold_casts(nodes: list[onnx.NodeProto], types: dict[str, int], outputs: set[str]) -> list[onnx.NodeProto]:
    """Drop Casts to the type their input already has and Casts undoing an exact widening."""
    producer = {out: node for node in nodes for out in node.output}
    alias: dict[str, str] = {}
    kept: list[onnx.NodeProto] = []
    for node in nodes:
        node.input[:] = [alias.get(name, name) for name in node.input]
        if node.op_type == "Cast" and node.output[0] not in outputs:
            source = node.input[0]
            to = next(a.i for a in node.attribute if a.name == "to")
            before = producer.get(source)
            if types.get(source) == to:
                alias[node.output[0]] = source
                continue
            if (before is not None and before.op_type == "Cast" and to in _NUMPY
                    and types.get(source) == _FLOAT and types.get(before.input[0]) == to):
                alias[node.output[0]] = before.input[0]  # low -> float32 -> low is the identity
                continue
        kept.append(node)
    read = {name for node in kept for name in node.input} | outputs
    return [n for n in kept if n.op_type != "Cast" or n.output[0] in read]


def _write_value_info(
    graph: onnx.GraphProto, types: dict[str, int], shapes: dict[str, onnx.TensorShapeProto | None]
) -> None:
    """Value info with the new types, keeping the exporter's symbolic shapes."""
    edges = {v.name for v in graph.input} | {v.name for v in graph.output}
    graph.ClearField("value_info")
    for node in graph.node:
        for out in node.output:
            if out and out not in edges and out in types:
                vi = graph.value_info.add()
                vi.name = out
                vi.type.tensor_type.elem_type = types[out]
                if shapes.get(out) is not None:
                    vi.type.tensor_type.shape.CopyFrom(shapes[out])


def _count_islands(nodes: list[onnx.NodeProto], plans: list[_Plan], types: dict[str, int]) -> int:
    """Connected groups of float32 float nodes, joined by the float tensors between them."""
    fp32 = {i for i, p in enumerate(plans) if p.is_float and not p.low}
    producer = {out: i for i, node in enumerate(nodes) for out in node.output}
    parent = {i: i for i in fp32}

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in fp32:
        for name in nodes[i].input:
            j = producer.get(name)
            if j in fp32 and types.get(name) == _FLOAT:
                parent[root(i)] = root(j)
    return len({root(i) for i in fp32})


def _count_casts(nodes: list[onnx.NodeProto]) -> int:
    return sum(node.op_type == "Cast" for node in nodes)


class _Names:
    """Fresh tensor and node names that collide with nothing in the graph."""

    def __init__(self, graph: onnx.GraphProto) -> None:
        self._used = {t.name for t in graph.initializer} | {v.name for v in [*graph.input, *graph.output]}
        self._used |= {x for n in graph.node for x in [*n.input, *n.output, n.name]}

    def tensor(self, base: str) -> str:
        name, k = base, 0
        while name in self._used:
            k += 1
            name = f"{base}_{k}"
        self._used.add(name)
        return name

    node = tensor
