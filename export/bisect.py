"""When a mixed-precision graph fails its parity floor: which nodes must go back to float32?

Binary search over the graph's low-precision nodes in topological order: find the shortest
prefix that, kept float32 (on top of the default policy), lifts the PSNR against the eager
reference over the floor. Error introduced early is amplified by everything after it, so a
prefix is the natural unit, and the search needs only log2(n) graph evaluations. The answer is a
policy change (``fp32_nodes``) that ``to_onnx``/``irdeploy export --fp32-nodes`` accept.

Runs with ONNX Runtime on CPU through the storage-rounding emulation
(:func:`~irdeploy.export.precision.emulate_low_precision`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import onnx

from irdeploy.core.images import psnr

from .precision import emulate_low_precision, to_mixed_precision


@dataclass(frozen=True)
class BisectResult:
    precision: str
    min_psnr: float
    psnr_default: float
    psnr_fixed: float | None  # None: even an all-float32 prefix does not reach the floor
    fp32_nodes: tuple[str, ...]
    evaluations: int

    def summary(self) -> str:
        if self.psnr_fixed is None:
            return (f"{self.precision} graph at {self.psnr_default:.1f} dB; keeping every node float32 still stays under "
                    f"{self.min_psnr:g} dB: the floor is out of reach for this model")
        if not self.fp32_nodes:
            return f"{self.precision} graph already passes: {self.psnr_default:.1f} dB >= {self.min_psnr:g} dB"
        shown = ",".join(self.fp32_nodes[:8]) + (f",... (+{len(self.fp32_nodes) - 8})" if len(self.fp32_nodes) > 8 else "")
        return (f"{self.precision}: {self.psnr_default:.1f} dB -> {self.psnr_fixed:.1f} dB (floor {self.min_psnr:g}) by keeping "
                f"{len(self.fp32_nodes)} more node(s) float32 ({self.evaluations} evaluations): --fp32-nodes {shown}")


def _score(model_fp32: onnx.ModelProto, precision: str, keep: Sequence[str], inputs, references) -> float:
    import onnxruntime as ort

    mixed, _ = to_mixed_precision(model_fp32, precision, fp32_nodes=list(keep) or None)
    session = ort.InferenceSession(emulate_low_precision(mixed).SerializeToString(), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return min(psnr(session.run(None, {name: x})[0], ref) for x, ref in zip(inputs, references))


def bisect_model(model, *, precision: str, min_psnr: float) -> BisectResult:
    """``irdeploy validate --bisect``: export ``model`` in float32 and search on photo crops.

    The crops are multiples of the padding multiple so the graph runs them without padding.
    """
    import tempfile
    from pathlib import Path

    import torch

    from irdeploy.model import final_image
    from irdeploy.model.spec import pad_multiple

    from .onnx_export import to_onnx
    from .parity import make_inputs

    m = pad_multiple(model)
    inputs = [x for _, x in make_inputs(3, [(1, 4 * m, 4 * m), (1, 6 * m, 8 * m), (1, 8 * m, 6 * m)])]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fp32.onnx"
        to_onnx(model, path, tensorrt=False, parity=False)
        graph = onnx.load(path)
    with torch.inference_mode():
        outs = [model(torch.from_numpy(x)) for x in inputs]
    references = [final_image(o, model).numpy() for o in outs]
    return bisect_precision(graph, inputs, references, precision=precision, min_psnr=min_psnr)


def bisect_precision(
    model_fp32: onnx.ModelProto,
    inputs: Sequence[np.ndarray],
    references: Sequence[np.ndarray],
    *,
    precision: str,
    min_psnr: float,
) -> BisectResult:
    """Shortest topological prefix of low-precision nodes to keep float32 so PSNR >= ``min_psnr``."""
    mixed, _ = to_mixed_precision(model_fp32, precision)
    low_types = {onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16}
    low_outputs = {vi.name for vi in mixed.graph.value_info if vi.type.tensor_type.elem_type in low_types}
    candidates = [n.name for n in mixed.graph.node if n.op_type != "Cast" and any(o in low_outputs for o in n.output)]
    # The default policy also keeps the graph's output node float32; to_mixed_precision does
    # that when fp32_nodes is None, so the search always carries it along explicitly.
    output_node = next(n.name for n in model_fp32.graph.node if model_fp32.graph.output[0].name in n.output)

    evaluations = 1
    default = _score(model_fp32, precision, [], inputs, references)
    if default >= min_psnr:
        return BisectResult(precision, min_psnr, default, default, (), evaluations)
    evaluations += 1
    if _score(model_fp32, precision, [*candidates, output_node], inputs, references) < min_psnr:
        return BisectResult(precision, min_psnr, default, None, (), evaluations)
    lo, hi = 0, len(candidates)  # invariant: prefix hi passes, prefix lo fails
    best = None
    while hi - lo > 1:
        mid = (lo + hi) // 2
        evaluations += 1
        score = _score(model_fp32, precision, [*candidates[:mid], output_node], inputs, references)
        if score >= min_psnr:
            hi, best = mid, score
        else:
            lo = mid
    if best is None:
        best = _score(model_fp32, precision, [*candidates[:hi], output_node], inputs, references)
        evaluations += 1
    return BisectResult(precision, min_psnr, default, best, tuple(candidates[:hi]), evaluations)
