"""Test-time local converter (TLC, Chu et al., "Improving Image Restoration by Revisiting Global
Information Aggregation", ECCV 2022).

Networks trained on crops learn their channel statistics from crop-sized global average pools;
at test time on full images a global pool averages over a far larger area. TLC replaces every
global average pool by a local box average whose window is what the pool saw in training
(scaled by ``base_size / train_size``, 1.5x the training crop by default).

Unlike upstream, which sizes each window lazily on the first forward pass, :func:`to_local`
fixes every window when it converts the model, so the converted model has no hidden first-call
state and exports with constant kernel sizes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .spec import has_record, update_record


class LocalAvgPool2d(nn.Module):
    """Stride-1 box average with a fixed window, replicate-padded back to the input size.

    Where the window covers the whole feature map it is exactly a global average pool.
    """

    def __init__(self, kernel_size: Sequence[int]) -> None:
        super().__init__()
        self.kernel_size = (int(kernel_size[0]), int(kernel_size[1]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        kh, kw = self.kernel_size
        if kh >= h and kw >= w:
            return x.mean(dim=(-2, -1), keepdim=True)
        kh, kw = min(h, kh), min(w, kw)
        out = F.avg_pool2d(x, (kh, kw), stride=1)
        dh, dw = h - out.shape[-2], w - out.shape[-1]
        return F.pad(out, (dw // 2, dw - dw // 2, dh // 2, dh - dh // 2), mode="replicate")

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}"


def _global_pools(model: nn.Module) -> list[tuple[nn.Module, str, nn.AdaptiveAvgPool2d]]:
    pools = []
    for parent in model.modules():
        for name, child in parent.named_children():
            if isinstance(child, nn.AdaptiveAvgPool2d) and child.output_size in (1, (1, 1)):
                pools.append((parent, name, child))
    return pools


def to_local(
    model: nn.Module,
    train_size: Sequence[int] = (1, 3, 256, 256),
    base_size: Sequence[int] | int | None = None,
) -> nn.Module:
    """Replace every global average pool of ``model`` (in place) by a :class:`LocalAvgPool2d`.

    Each pool's window is ``feature_size_at_train_size * base_size // train_size`` per axis,
    where the feature size is what that pool sees when the model runs on ``train_size``; one
    forward pass at ``train_size`` (under ``no_grad``) measures it. The sizes go into the
    model's record (:func:`irdeploy.model.spec.record_of`), whence the ONNX metadata. Returns ``model``.
    """
    if len(train_size) != 4:
        raise ValueError(f"train_size must be (N, C, H, W), got {tuple(train_size)}")
    _, _, train_h, train_w = (int(v) for v in train_size)
    if base_size is None:
        base_size = (int(train_h * 1.5), int(train_w * 1.5))
    elif isinstance(base_size, int):
        base_size = (base_size, base_size)
    base_h, base_w = (int(v) for v in base_size)

    pools = _global_pools(model)
    if not pools:
        raise ValueError(f"{type(model).__name__} has no global average pool to convert")
    seen: dict[int, tuple[int, int]] = {}

    def record(pool: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        seen.setdefault(id(pool), tuple(args[0].shape[-2:]))

    hooks = [pool.register_forward_pre_hook(record) for _, _, pool in pools]
    was_training = model.training
    try:
        param = next(model.parameters())
        model.eval()
        with torch.no_grad():
            model(torch.zeros(tuple(int(v) for v in train_size), dtype=param.dtype, device=param.device))
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)

    for parent, name, pool in pools:
        if id(pool) not in seen:
            raise ValueError(f"global pool {name!r} of {type(parent).__name__} was not reached by a forward pass")
        h, w = seen[id(pool)]
        setattr(parent, name, LocalAvgPool2d((h * base_h // train_h, w * base_w // train_w)))
    if has_record(model):
        update_record(model, tlc={"train_size": [int(v) for v in train_size], "base_size": [base_h, base_w]})
    return model
