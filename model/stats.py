"""Parameter count and multiply-accumulates: one counter for every model, so numbers compare.

MACs come from PyTorch's FLOP counter (``torch.utils.flop_counter``), which counts the matrix
work of convolutions, matmuls and attention (2 FLOPs per MAC) and ignores elementwise ops, the
convention papers use when they quote GMACs. The model runs on the ``meta`` device: no memory,
no compute.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


@dataclass(frozen=True)
class ModelStats:
    parameters: int
    gmacs: float
    size: tuple[int, int]


def parameter_count(model: nn.Module) -> int:
    """The one parameter count irdeploy prints (``models``, the export report, ``inspect`` of an
    exported graph, the quickstart): every element of the module's parameters. A graph's own
    initializers can count fewer (folding merges some constants), so reports label that figure
    apart as the graph's weights."""
    return sum(p.numel() for p in model.parameters())


def model_stats(model: nn.Module, size: tuple[int, int] = (256, 256), channels: int = 3) -> ModelStats:
    """Parameters and GMACs of one forward pass on a ``1 x channels x size`` input."""
    params = parameter_count(model)
    meta = copy.deepcopy(model).to("meta").eval()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        meta(torch.empty(1, channels, *size, device="meta"))
    return ModelStats(params, counter.get_total_flops() / 2e9, tuple(size))
