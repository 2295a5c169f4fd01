"""INT8 as explicit QuantizeLinear/DequantizeLinear pairs, placed where TensorRT fuses them.

Why the graph carries it: TensorRT 11 and TensorRT-RTX build strongly typed networks only; there
is no INT8 flag and no calibrator. INT8 is a graph with Q/DQ pairs whose scales were measured
beforehand. :func:`quantize_int8` writes that graph from the float32 export with ONNX Runtime's
maintained quantizer (``quantize_static``, QDQ format), configured for TensorRT:

- **Q/DQ on the inputs of Conv, ConvTranspose and MatMul only** (``op_types_to_quantize``, and
  ``OpTypesToExcludeOutputQuantization`` for their outputs): TensorRT fuses
  ``DQ -> Conv`` (+ the next ``Q``) into an int8 convolution; every other op runs in float.
  MatMuls are quantized only with a constant operand: the attention products (q @ k,
  softmax @ v) are excluded by name and keep float inputs, so the softmax probabilities and the
  normalised q/k are never rounded to 8 bits (ORT's ``MatMulConstBOnly`` would say the same, but
  its QDQ MatMul ignores it: measured, both attention MatMuls of M3SNet came out quantized).
- **Symmetric int8 everywhere** (zero point 0, what TensorRT requires): weights per output
  channel, activations per tensor.
- **Biases stay float** (``QuantizeBias`` off): TensorRT-RTX's parser rejects a bias
  ``DequantizeLinear`` with an int32 input.
- **Float readers read the float tensor**: ONNX Runtime routes every consumer of a quantized
  tensor through its ``DequantizeLinear``, so a residual ``Add`` or a ``Shape`` would read the
  rounded copy; :func:`_float_readers_bypass` points them back at the float tensor. The graph's
  skip connections (the input added back at the end) stay exact.

LayerNormalization, Softmax, the channel-attention pooling and the attention normalisation
are not quantized at all: they stay in the float type of the graph (float32 here; the engine
build runs them through the FP16 policy of :mod:`irdeploy.export.precision`, which keeps the
reductions float32). Opset 19 or later is required so a ``DequantizeLinear`` may write float16
there; older graphs are upgraded first. :func:`placement_problems` checks the rules above on any
graph, and the export refuses a graph that breaks one.
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
from collections import Counter
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, version_converter

from .calibration import METHODS
from .int8_ranges import RangePlan, measure_ranges

QUANTIZED_OPS = ("Conv", "ConvTranspose", "MatMul")
BUDGET_MIB = 1024  # calibration tensors held per graph run (export.int8_ranges)
MIN_OPSET = 19  # DequantizeLinear writes float16 (the engine's float parts) from opset 19 on
_QDQ = ("QuantizeLinear", "DequantizeLinear")
_INT8 = (TensorProto.INT8, TensorProto.UINT8)


def _method(name: str):
    from onnxruntime.quantization import CalibrationMethod

    return getattr(CalibrationMethod, name)


# Percentile of |x| the activation ranges clip at. 99.99, not ONNX Runtime's default 99.999:
# measured closer to eager float32 on all six tiny zoo models (0.5-1.3 dB,
# benchmarks/int8_calibration.py) and on the trained quickstart model (task ΔPSNR against
# float32 -0.288 dB where 99.999 gives -0.361, benchmarks/int8_table.py task-inputs).
PERCENTILE = 99.99

# irdeploy's method name -> (ONNX Runtime calibrator, its settings). Percentile: 2048 bins,
# :data:`PERCENTILE`. Entropy: TensorRT's KL-divergence recipe, a 2048-bin histogram searched
# for the threshold whose 128-level quantization loses least.
CALIBRATORS = {
    "minmax": (lambda: _method("MinMax"), {}),
    "percentile": (lambda: _method("Percentile"), {"num_bins": 2048, "percentile": PERCENTILE}),
    "entropy": (lambda: _method("Entropy"), {"num_bins": 2048, "num_quantized_bins": 128}),
}


@dataclass(frozen=True)
class Int8Info:
    """What the pass did: which nodes read int8, which were kept float on request."""

    method: str
    quantized: dict[str, int]  # op type -> nodes with int8 inputs
    excluded: tuple[str, ...]  # nodes kept float (``fp32_nodes``)
    activations: int  # activation tensors with a QuantizeLinear
    ranges: RangePlan | None = None  # how the calibration ran: tensors, groups, budget
    notes: tuple[str, ...] = field(default=())

    @property
    def quantized_nodes(self) -> int:
        return sum(self.quantized.values())


def quantize_int8(
    model_fp32: onnx.ModelProto,
    crops: Sequence[np.ndarray],
    *,
    method: str = "percentile",
    fp32_nodes: Collection[str] = (),
    input_name: str | None = None,
    budget_mib: int = BUDGET_MIB,
) -> tuple[onnx.ModelProto, Int8Info]:
    """The Q/DQ graph of float32 ``model_fp32``, calibrated on ``crops`` (float32 NCHW arrays).

    ``method``: one of :data:`~irdeploy.export.calibration.METHODS` (ONNX Runtime's MinMax,
    Percentile at :data:`PERCENTILE` or Entropy calibrators). ``fp32_nodes``: names of Conv/MatMul nodes to
    leave unquantized (from :func:`irdeploy.export.int8_audit.bisect_int8`). ``budget_mib``: the
    calibration tensors one graph run may hold (:mod:`irdeploy.export.int8_ranges`; the ranges
    do not depend on it, the number of runs does). Raises
    ``ValueError`` for an unknown method, no crops, or a graph that cannot be upgraded to opset 19.
    """
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.calibrate import save_tensors_data

    if method not in METHODS:
        raise ValueError(f"unknown calibration method {method!r}; choose from {', '.join(METHODS)}")
    if not crops:
        raise ValueError("calibration needs at least one image crop")
    model_fp32 = _at_least_opset(model_fp32, MIN_OPSET)
    names = {n.name for n in model_fp32.graph.node}
    unknown = sorted(set(fp32_nodes) - names)
    if unknown:
        raise ValueError(f"no node named {', '.join(unknown[:5])} in the graph")
    input_name = input_name or model_fp32.graph.input[0].name

    calibrate, options = CALIBRATORS[method]
    # Ranges measured by irdeploy's bounded passes (export.int8_ranges), not inside
    # quantize_static: ONNX Runtime's calibrator holds every quantized tensor of a crop at once
    # (past 15 GB for MPRNet-deblur at 256x256), and quantize_static passes no histogram sizes
    # to its Entropy calibrator (with its 128 bins and 128 quantized bins the KL search has one
    # candidate, the full range: "entropy" would silently be MinMax).
    with tempfile.TemporaryDirectory(prefix="irdeploy-int8-") as tmp, _quiet():
        data, plan = measure_ranges(model_fp32, crops, op_types=QUANTIZED_OPS, method=calibrate().name,
                                    options=options, budget_mib=budget_mib, input_name=input_name)
        source, target, ranges = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx", Path(tmp) / "ranges.json"
        onnx.save(model_fp32, source)
        save_tensors_data(data, ranges)
        del data
        quantize_static(
            str(source), str(target), None, calibration_cache_path=str(ranges),
            quant_format=QuantFormat.QDQ, op_types_to_quantize=list(QUANTIZED_OPS), per_channel=True,
            activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, calibrate_method=calibrate(),
            nodes_to_exclude=[*fp32_nodes, *attention_products(model_fp32)],
            extra_options={
                "ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False,
                "DedicatedQDQPair": True,
                "OpTypesToExcludeOutputQuantization": list(QUANTIZED_OPS),
            },
        )
        quantized = onnx.load(target)
    _float_readers_bypass(quantized.graph)
    _restore_metadata(quantized, model_fp32)
    info = Int8Info(method=method, quantized=dict(quantized_nodes(quantized)), excluded=tuple(fp32_nodes),
                    activations=sum(n.op_type == "QuantizeLinear" for n in quantized.graph.node), ranges=plan)
    return quantized, info


def attention_products(model: onnx.ModelProto) -> list[str]:
    """MatMuls of two activations (no constant operand): the attention's q @ k and p @ v."""
    inits = {t.name for t in model.graph.initializer}
    return [n.name for n in model.graph.node if n.op_type == "MatMul" and not inits.intersection(n.input)]


_PIXEL_MOVES = ("Pad", "Slice", "Split", "Reshape", "Transpose", "Identity", "Squeeze", "Unsqueeze")


def input_convolutions(model: onnx.ModelProto) -> list[str]:
    """Conv/ConvTranspose nodes that read the graph's input image itself: directly or through ops
    that only move its pixels (Pad, Slice, Split, Reshape, Transpose, ...), e.g. MPRNet's patch
    slices. Their input is a [0, 1] image, which symmetric int8 stores in 128 levels."""
    readers: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    found, seen, frontier = [], set(), [model.graph.input[0].name]
    while frontier:
        tensor = frontier.pop()
        for node in readers.get(tensor, []):
            if node.name in seen:
                continue
            if node.op_type in ("Conv", "ConvTranspose") and node.input[0] == tensor:
                seen.add(node.name)
                found.append(node.name)
            elif node.op_type in _PIXEL_MOVES and node.input[0] == tensor:
                seen.add(node.name)
                frontier.extend(node.output)
    order = {n.name: i for i, n in enumerate(model.graph.node)}
    return sorted(found, key=order.__getitem__)


def is_int8(model: onnx.ModelProto) -> bool:
    """Whether the graph carries int8 Q/DQ pairs."""
    return any(n.op_type == "DequantizeLinear" for n in model.graph.node)


def quantized_nodes(model: onnx.ModelProto) -> Counter:
    """Op type -> number of nodes reading at least one ``DequantizeLinear`` output."""
    dq = {n.output[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}
    return Counter(n.op_type for n in model.graph.node if n.op_type not in _QDQ and dq.intersection(n.input))


def placement_problems(model: onnx.ModelProto) -> list[str]:
    """Where the Q/DQ placement breaks a rule TensorRT(-RTX) enforces or irdeploy promises.

    - a ``DequantizeLinear`` read by anything but Conv/ConvTranspose/MatMul (TensorRT would run
      that op on rounded float data, or reject a quantized constant there);
    - a ``DequantizeLinear`` of an int32 tensor (a quantized bias: TensorRT-RTX's parser rejects it);
    - an int8 initializer read by anything but ``DequantizeLinear`` ("quantized constant ... is
      only allowed before DQ");
    - a non-zero zero point (TensorRT supports symmetric quantization only).
    """
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    readers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    problems = []
    for node in graph.node:
        if node.op_type == "DequantizeLinear":
            bad = sorted({r.op_type for r in readers.get(node.output[0], []) if r.op_type not in QUANTIZED_OPS})
            if bad:
                problems.append(f"{node.name}: DequantizeLinear read by {', '.join(bad)}")
            source = inits.get(node.input[0])
            if source is not None and source.data_type == TensorProto.INT32:
                problems.append(f"{node.name}: DequantizeLinear of an int32 initializer (a quantized bias)")
        if node.op_type in _QDQ and len(node.input) > 2 and node.input[2] in inits:
            zero = onnx.numpy_helper.to_array(inits[node.input[2]])
            if np.any(zero != 0):
                problems.append(f"{node.name}: zero point {zero.ravel()[:4]} (TensorRT needs symmetric int8)")
    for name, init in inits.items():
        if init.data_type in _INT8:
            bad = sorted({r.op_type for r in readers.get(name, []) if not _reads_int8_legally(r, name)})
            if bad:
                problems.append(f"{name}: int8 constant read by {', '.join(bad)}")
    return problems


def _reads_int8_legally(node: onnx.NodeProto, name: str) -> bool:
    """An int8 constant may be DQ's data or a Q/DQ zero point, nothing else."""
    if node.op_type == "DequantizeLinear":
        return name in (node.input[0], *node.input[2:3])
    return node.op_type == "QuantizeLinear" and name in node.input[2:3]


def unquantized(model_int8: onnx.ModelProto, model_fp32: onnx.ModelProto, nodes: Collection[str]) -> onnx.ModelProto:
    """A copy of ``model_int8`` where ``nodes`` read their float32 inputs again (no recalibration).

    Each named node takes the inputs it has in the float32 graph (matched by node name, which the
    quantizer keeps); Q/DQ pairs nobody reads any more are dropped. The audit measures one layer
    at a time this way, and the bisection a prefix of layers.
    """
    model_fp32 = _at_least_opset(model_fp32, MIN_OPSET)
    copy = onnx.ModelProto()
    copy.CopyFrom(model_int8)
    graph = copy.graph
    float_inputs = {n.name: list(n.input) for n in model_fp32.graph.node}
    float_inits = {t.name: t for t in model_fp32.graph.initializer}
    have = {t.name for t in graph.initializer}
    dq = {n.output[0] for n in graph.node if n.op_type == "DequantizeLinear"}
    wanted = set(nodes)
    for node in graph.node:
        if node.name not in wanted:
            continue
        for i, name in enumerate(node.input):
            if name in dq:
                original = float_inputs[node.name][i]
                node.input[i] = original
                if original in float_inits and original not in have:
                    graph.initializer.append(float_inits[original])
                    have.add(original)
    _drop_unread(graph)
    return copy


def _float_readers_bypass(graph: onnx.GraphProto) -> None:
    """Readers of ``DQ(Q(x))`` that are not quantized ops read ``x`` itself."""
    producer = {out: n for n in graph.node for out in n.output}
    for node in graph.node:
        if node.op_type in QUANTIZED_OPS:
            continue
        for i, name in enumerate(node.input):
            dq = producer.get(name)
            if dq is None or dq.op_type != "DequantizeLinear":
                continue
            q = producer.get(dq.input[0])
            if q is not None and q.op_type == "QuantizeLinear":
                node.input[i] = q.input[0]
    _drop_unread(graph)


def _drop_unread(graph: onnx.GraphProto) -> None:
    """Remove Q/DQ nodes and initializers that nothing reads (repeatedly: a Q feeds only DQs)."""
    outputs = {v.name for v in graph.output}
    while True:
        read = {name for n in graph.node for name in n.input} | outputs
        dead = [n for n in graph.node if n.op_type in _QDQ and not read.intersection(n.output)]
        if not dead:
            break
        for node in dead:
            graph.node.remove(node)
    read = {name for n in graph.node for name in n.input}
    kept = [t for t in graph.initializer if t.name in read]
    if len(kept) != len(graph.initializer):
        del graph.initializer[:]
        graph.initializer.extend(kept)


def _at_least_opset(model: onnx.ModelProto, opset: int) -> onnx.ModelProto:
    current = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), opset)
    if current >= opset:
        return model
    try:
        return version_converter.convert_version(model, opset)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"int8 needs opset {opset} and this opset-{current} graph does not convert: {first}") from None


def _restore_metadata(quantized: onnx.ModelProto, source: onnx.ModelProto) -> None:
    """The quantizer rewrites the model proto; keep the source's metadata and producer."""
    del quantized.metadata_props[:]
    quantized.metadata_props.extend(source.metadata_props)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """ONNX Runtime's quantizer prints progress and a pre-processing hint on every call."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        root.setLevel(level)
