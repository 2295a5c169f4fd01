"""Activation ranges for INT8, measured in passes that fit a memory budget.

Why not ONNX Runtime's calibrator as it is: its histogram calibrators (Percentile, Entropy) add
*every* tensor to calibrate as a graph output and run them all at once, so one crop holds every
input and output of every Conv/MatMul in memory until the histograms are updated. MPRNet-deblur
at 256x256 passed 15 GB that way with two crops per call; its ``max_intermediate_outputs``
(MinMax only) bounds how many crops are held, not how many tensors one crop produces.

Here the tensors are split into groups whose size, from ONNX shape inference at the crop's
shape, fits ``budget_mib``; each group is one augmented graph (pruned to what its tensors need)
run over every crop, one crop at a time, and ONNX Runtime's own ``HistogramCollector`` folds
each tensor's values into its histogram (a running min/max for MinMax). Each tensor's histogram
sees the same crops in the same order whatever the grouping, so the ranges do not depend on the
budget (the tests check it); only the number of graph runs does. A graph that fits the budget
is calibrated in one group, i.e. one run per crop.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper

_FLOAT = (TensorProto.FLOAT, TensorProto.FLOAT16)
_ITEMSIZE = {TensorProto.FLOAT: 4, TensorProto.FLOAT16: 2}


@dataclass(frozen=True)
class RangePlan:
    """How the ranges were measured: tensors, groups (graph runs per crop), the budget."""

    tensors: int
    groups: int
    budget_mib: int
    largest_group_mib: float


def calibration_tensors(model: onnx.ModelProto, op_types: Iterable[str]) -> dict[str, int]:
    """Float activation inputs and outputs of the ``op_types`` nodes -> element type, in graph order
    (what ONNX Runtime's calibrator selects: initializers and non-float tensors are left out)."""
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {v.name: v.type.tensor_type.elem_type
             for v in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]}
    inits = {t.name for t in model.graph.initializer}
    wanted = set(op_types)
    out: dict[str, int] = {}
    for node in model.graph.node:
        if node.op_type in wanted:
            for name in (*node.input, *node.output):
                if name and name not in inits and types.get(name) in _FLOAT:
                    out.setdefault(name, types[name])
    return out


def tensor_bytes(model: onnx.ModelProto, names: dict[str, int], input_shape: Sequence[int]) -> dict[str, int]:
    """Bytes of each of ``names`` for an input of ``input_shape`` (shape inference with the input
    fixed); a tensor whose shape stays unknown counts as the largest known one."""
    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    del fixed.graph.value_info[:]
    dims = fixed.graph.input[0].type.tensor_type.shape.dim
    for dim, size in zip(dims, input_shape):
        dim.Clear()
        dim.dim_value = int(size)
    inferred = onnx.shape_inference.infer_shapes(fixed, data_prop=True)
    shapes = {}
    for v in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]:
        d = [x.dim_value if x.HasField("dim_value") else 0 for x in v.type.tensor_type.shape.dim]
        if d and all(d):
            shapes[v.name] = int(np.prod(d))
    known = [shapes[n] * _ITEMSIZE[t] for n, t in names.items() if n in shapes]
    fallback = max(known, default=int(np.prod(input_shape)) * 4)
    return {n: shapes[n] * _ITEMSIZE[t] if n in shapes else fallback for n, t in names.items()}


def plan_groups(sizes: dict[str, int], budget_mib: int) -> list[list[str]]:
    """Consecutive tensors (graph order) packed into groups of at most ``budget_mib``; a tensor
    larger than the budget gets a group of its own."""
    budget = budget_mib * 2**20
    groups: list[list[str]] = [[]]
    total = 0
    for name, size in sizes.items():
        if groups[-1] and total + size > budget:
            groups.append([])
            total = 0
        groups[-1].append(name)
        total += size
    return groups


def _pruned(model: onnx.ModelProto, outputs: Sequence[str], types: dict[str, int]) -> bytes:
    """The graph computing only ``outputs`` (its own outputs dropped), serialized."""
    needed = set(outputs)
    keep = []
    for node in reversed(model.graph.node):
        if needed.intersection(node.output):
            keep.append(node)
            needed.update(i for i in node.input if i)
    graph = helper.make_graph(
        list(reversed(keep)), model.graph.name, list(model.graph.input),
        [helper.make_tensor_value_info(n, types[n], None) for n in outputs],
        [t for t in model.graph.initializer if t.name in needed])
    pruned = helper.make_model(graph, opset_imports=model.opset_import, ir_version=model.ir_version)
    return pruned.SerializeToString()


def _session(data: bytes):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    # as ONNX Runtime's calibrator runs it: no fusion may remove a tensor that is read back
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.enable_cpu_mem_arena = False  # each group's buffers go back when its session ends
    return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])


def measure_ranges(model: onnx.ModelProto, crops: Sequence[np.ndarray], *, op_types: Iterable[str], method: str,
                   options: dict, budget_mib: int, input_name: str):
    """``(TensorsData, RangePlan)``: symmetric ranges of the inputs/outputs of ``op_types`` nodes.

    ``method`` is ONNX Runtime's calibrator name ("MinMax", "Percentile", "Entropy"); ``options``
    its histogram settings (``num_bins``, ``num_quantized_bins``, ``percentile``).
    """
    from onnxruntime.quantization.calibrate import CalibrationMethod, HistogramCollector, TensorsData

    names = calibration_tensors(model, op_types)
    sizes = tensor_bytes(model, names, crops[0].shape)
    groups = plan_groups(sizes, budget_mib)
    plan = RangePlan(tensors=len(names), groups=len(groups), budget_mib=budget_mib,
                     largest_group_mib=round(max(sum(sizes[n] for n in g) for g in groups) / 2**20, 1))
    collector = None
    if method != "MinMax":
        collector = HistogramCollector(method=method.lower(), symmetric=True, num_bins=options.get("num_bins", 2048),
                                       num_quantized_bins=options.get("num_quantized_bins", 128),
                                       percentile=options.get("percentile", 99.99), scenario="same")
    extremes: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for group in groups:
        fetched = [n for n in group if n != input_name]
        session = _session(_pruned(model, fetched, names)) if fetched else None
        for crop in crops:
            values = dict(zip(fetched, session.run(fetched, {input_name: crop}))) if session else {}
            if input_name in group:
                values[input_name] = crop
            for name in group:  # graph order, so the histograms see the crops as one pass would
                array = values.pop(name)
                if collector is None:
                    lo, hi = np.min(array), np.max(array)
                    old = extremes.get(name)
                    extremes[name] = (lo, hi) if old is None else (min(old[0], lo), max(old[1], hi))
                else:
                    collector.collect({name: array})
                del array
        del session
    if collector is None:
        data = {}
        for name, (lo, hi) in extremes.items():
            bound = np.float32(max(abs(lo), abs(hi)))
            data[name] = (np.array(-bound, np.float32), np.array(bound, np.float32))
        return TensorsData(CalibrationMethod.MinMax, data), plan
    return TensorsData(getattr(CalibrationMethod, method), collector.compute_collection_result()), plan
