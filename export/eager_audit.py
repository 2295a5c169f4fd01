"""The fp16 audit's cross-check in eager PyTorch: one *module* family at a time in low precision.

The graph audit (:mod:`irdeploy.export.audit`) rounds the tensors an ONNX graph stores; this
runs the real low-precision arithmetic of PyTorch's kernels instead (CPU, or CUDA with
``device="cuda"``; accumulation included)
on the modules of one family, with float32 everywhere else: the family's weights are cast,
its inputs are cast on the way in and its outputs back to float32 on the way out. Where the two
audits rank the families alike, the policy does not hinge on how either one measures.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from irdeploy.core.images import psnr
from irdeploy.core.progress import step
from irdeploy.model import final_image
from irdeploy.model.spec import ModelSpec, spec_of
from irdeploy.model.tlc import LocalAvgPool2d

DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


def module_families(spec: ModelSpec) -> dict[str, Callable[[nn.Module], bool]]:
    """Outermost modules of each family; a family's modules run whole (an attention block's own
    convolutions run low with it). The normalisation and attention classes are the spec's."""
    norms = (*spec.layernorms, *spec.norms)
    return {
        "conv": lambda m: isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)),
        "layernorm": lambda m: isinstance(m, norms),
        "attention": lambda m: isinstance(m, spec.attention),
        "pooling": lambda m: isinstance(m, (nn.AdaptiveAvgPool2d, nn.AvgPool2d, LocalAvgPool2d)),
    }


@dataclass(frozen=True)
class EagerAuditRow:
    family: str
    modules: int
    psnr: float
    max_abs: float


def _outermost(model: nn.Module, member: Callable[[nn.Module], bool]) -> list[nn.Module]:
    chosen: list[nn.Module] = []
    inside: set[int] = set()
    for module in model.modules():
        if id(module) in inside:
            continue
        if member(module):
            chosen.append(module)
            inside.update(id(m) for m in module.modules())
    return chosen


def _run(model: nn.Module, inputs: Sequence[np.ndarray], device: torch.device) -> list[np.ndarray]:
    outs = []
    with torch.inference_mode():
        for x in inputs:
            outs.append(final_image(model(torch.from_numpy(x).to(device)), model).float().cpu().numpy())
    return outs


def eager_audit(model: nn.Module, inputs: Sequence[np.ndarray], precision: str = "fp16",
                device: str = "cpu") -> list[EagerAuditRow]:
    """PSNR and worst pixel vs float32 with each module family (and all of them) in ``precision``.

    The float32 reference runs on the same ``device``, so the rows measure precision alone."""
    if precision not in DTYPES:
        raise ValueError(f"unknown precision {precision!r}; choose from {', '.join(DTYPES)}")
    dtype = DTYPES[precision]
    dev = torch.device(device)
    model = model.float().eval().to(dev)
    references = _run(model, inputs, dev)
    base = module_families(spec_of(model))
    families = {**base, "all": lambda m: any(f(m) for f in base.values())}
    rows = []
    for family, member in families.items():
        low = copy.deepcopy(model)
        modules = _outermost(low, member)
        if not modules:
            continue
        for module in modules:
            module.to(dtype)
            module.register_forward_pre_hook(
                lambda m, args: tuple(a.to(dtype) if torch.is_tensor(a) and a.is_floating_point() else a for a in args)
            )
            module.register_forward_hook(lambda m, args, out: out.float())
        with step(f"eager audit: {family} modules in {precision} (PyTorch)"):
            outs = _run(low, inputs, dev)
        rows.append(EagerAuditRow(
            family, len(modules),
            min(psnr(o, r) for o, r in zip(outs, references)),
            max(float(np.abs(o - r).max()) for o, r in zip(outs, references)),
        ))
    return sorted(rows, key=lambda r: r.psnr)


def format_eager_table(rows: Sequence[EagerAuditRow], title: str = "") -> str:
    lines = [title] if title else []
    lines.append(f"{'family':<14} {'modules':>7} {'PSNR dB':>8} {'max abs':>9}")
    lines += [f"{r.family:<14} {r.modules:>7} {r.psnr:>8.2f} {r.max_abs:>9.3g}" for r in rows]
    return "\n".join(lines)
