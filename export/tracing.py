"""From an ``nn.Module`` to a float32 ONNX graph with torch's dynamo exporter.

Choices made here, and why:

- **Padding happens outside the graph.** Every zoo model pads its input to a multiple of
  ``pad_multiple`` (16 for M3SNet/MHNet, 8 for MPRNet). The graph is traced on sizes that are
  symbolic multiples of it (``H = 16 * h``), so the exporter proves the padding and the crop are
  no-ops and leaves them out: no Shape/Mod/Pad/Slice arithmetic in the graph and no SHAPE layers
  in TensorRT. The runtime pads and crops (``irdeploy.runtime``), with the mode recorded in the
  model's metadata (zeros for M3SNet/MHNet, reflect for MPRNet), and TensorRT profiles are
  multiples of ``pad_multiple``.
- **Dynamic batch is traced with batch 2**: torch.export specialises size-1 dimensions.
- **One output**: MPRNet's stage-2/stage-1 images are training targets; the deployed graph
  returns the final image only.
- **Attention form**: the attention modules the model's spec lists in ``attention_cores``
  (:class:`~irdeploy.model.attention.ChannelAttention` and kin) are switched to their
  ``"matmul"`` (opset 18+) or ``"sdpa"`` (opset 23 ``Attention``) core for the export.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import onnx
import torch
from torch import nn

from irdeploy.core.progress import step
from irdeploy.model import final_image
from irdeploy.model.spec import spec_of

ATTENTION_CORES = {"matmul": "matmul", "onnx23": "sdpa"}
MIN_OPSET = {"matmul": 17, "onnx23": 23}  # LayerNormalization needs 17, Attention 23


@dataclass(frozen=True)
class InputSpec:
    """The graph input: static sizes, or ``None`` for a dynamic axis."""

    channels: int
    batch: int | None
    height: int | None
    width: int | None
    multiple: int


class _FinalImage(nn.Module):
    """Return only the final image of multi-output models (MPRNet: ``[stage3, stage2, stage1]``)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return final_image(self.model(x), self.model)


@contextlib.contextmanager
def attention_core(model: nn.Module, attention: str) -> Iterator[None]:
    """Switch the attention modules whose ``core`` the spec says can switch (``attention_cores``)
    to the export form for ``attention``; the spec's ``onnx23`` says why a model has no opset-23 form."""
    if attention not in ATTENTION_CORES:
        raise ValueError(f"unknown attention form {attention!r}; choose from {', '.join(ATTENTION_CORES)}")
    spec = spec_of(model)
    if attention == "onnx23" and spec.onnx23:
        raise ValueError(spec.onnx23)
    modules = [m for m in model.modules() if isinstance(m, spec.attention_cores)]
    saved = [m.__dict__.get("core") for m in modules]
    try:
        for m in modules:
            m.core = ATTENTION_CORES[attention]
        yield
    finally:
        for m, core in zip(modules, saved):
            if core is None:
                m.__dict__.pop("core", None)
            else:
                m.core = core


def trace_to_onnx(
    model: nn.Module,
    spec: InputSpec,
    *,
    opset: int,
    attention: str = "matmul",
    optimize: bool = True,
) -> tuple[onnx.ModelProto, Counter]:
    """Export ``model`` (eval mode, float32); return the graph and its op histogram before folding.

    ``optimize`` runs onnxscript's optimizer (constant folding, dead-node and identity removal,
    the pass ``torch.onnx`` itself ships): no extra dependency, and it knows the exporter's
    own patterns.
    """
    if attention not in ATTENTION_CORES:
        raise ValueError(f"unknown attention form {attention!r}; choose from {', '.join(ATTENTION_CORES)}")
    if opset < MIN_OPSET[attention]:
        need = "the Attention operator" if attention == "onnx23" else "LayerNormalization"
        raise ValueError(f"opset {opset} is too old: {need} needs opset {MIN_OPSET[attention]} or newer")
    m = spec.multiple
    example = torch.rand(
        spec.batch or 2, spec.channels, spec.height or 4 * m, spec.width or 3 * m,
        generator=torch.Generator().manual_seed(0),
    )
    dims: dict[int, torch.export.Dim] = {}
    if spec.batch is None:
        dims[0] = torch.export.Dim("batch", min=1, max=1024)
    if spec.height is None:
        dims[2] = m * torch.export.Dim("h_blocks", min=1, max=8192 // m)
    if spec.width is None:
        dims[3] = m * torch.export.Dim("w_blocks", min=1, max=8192 // m)

    wrapped = _FinalImage(model).eval()
    shape = "x".join(str(v) if v else letter for v, letter in zip((spec.batch, spec.channels, spec.height, spec.width),
                                                                  "NCHW"))  # NxCxHxW: dynamic axes by letter
    with attention_core(model, attention), torch.no_grad(), _quiet_exporter(), \
            step(f"tracing {type(model).__name__} at {shape} (torch.onnx dynamo exporter)"):
        program = torch.onnx.export(
            wrapped,
            (example,),
            dynamo=True,
            opset_version=opset,
            input_names=["input"],
            output_names=["output"],
            dynamic_shapes=({**dims},) if dims else None,
            optimize=False,
            verbose=False,
        )
    before = Counter(node.op_type for node in program.model_proto.graph.node)
    if optimize:
        with _quiet_exporter(), step("folding constants (onnxscript optimizer)"):
            program.optimize()
    return program.model_proto, before


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """The exporter prints progress and warns about torchvision ops we never use."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._export")]
    levels = [lg.level for lg in loggers]
    try:
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        with warnings.catch_warnings(), contextlib.redirect_stdout(None):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)
