"""RUN: a U-Net with a different operator per level (Wu, Li, Xu, Huang, Hoi, "RUN: Rethinking the
UNet Architecture for Efficient Image Restoration", IEEE Transactions on Multimedia 26, 2024).

**What is public.** The abstract: spatial self-attention blocks (SSA) on the high-resolution
top-level features, channel self-attention blocks (CSA) on the channel-rich bottom-level
features, and a simple, efficient convolution block in the middle levels. No official code or
weights, and none of the paper's tables (depths, widths, heads, window size, FFN expansion,
parameter counts, GMACs), could be found in the public sources searched (code, issue trackers,
documentation and web pages, November 2026). Everything below the abstract is therefore
irdeploy's own choice, each one a constructor argument:

- **Skeleton**: the NAFNet U-Net of M3SNet (:class:`~irdeploy.model.unet.NAFUNet`): 3x3 intro
  and ending convs, a global residual, stride-2 2x2 conv downsampling, 1x1 conv + PixelShuffle
  upsampling and skips *added* to the upsampled features. Three downsamplings by default
  (``len(enc_blk_nums)``), the depth of Restormer-style attention U-Nets.
- **Operator per level** (``level_ops``, one per encoder level plus the bottleneck; each
  decoder level uses its encoder level's operator): ``"ssa"`` at level 0, ``"conv"`` at the
  middle levels, ``"csa"`` at the bottleneck, as the abstract describes.
- **SSA** = :class:`~irdeploy.model.attention.WindowAttention`: non-overlapping windows
  (``window_size``, default 8), so the cost is linear in the pixels at full resolution; no
  shifted windows and no relative position bias (the depthwise conv in q/k/v supplies position
  and cross-window context), which keeps MatMul -> Softmax -> MatMul free of anything between.
- **CSA** = :class:`~irdeploy.model.attention.ChannelAttention`, the transposed attention the
  zoo already shares with M3SNet and MHNet.
- **Conv block** = :class:`~irdeploy.model.layers.NAFBlock` (NAFNet's expansions, 2 and 2).
- **Attention blocks** (:class:`AttentionBlock`): LayerNorm -> attention and LayerNorm -> gated
  depthwise FFN (``ffn_expand``), each residual branch scaled by a per-channel factor that starts
  at zero, as NAFBlock's ``beta``/``gamma`` do, so every block starts as the identity.
- **Heads** per level (``num_heads``), ``bias`` of the attention and FFN convs (default off, as
  the zoo's channel attention).

The presets in :mod:`irdeploy.model.registry` (``run-s``, ``run-b``) are sized by irdeploy for a
small compute budget; they are not the paper's (unknown) configurations.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from .attention import ChannelAttention, WindowAttention
from .layers import LayerNorm2d, NAFBlock, SimpleGate, check_input, conv1x1, conv3x3, pad_to_multiple
from .spec import ModelSpec, Preset
from .unet import NAFUNet, read_unet

OPERATORS = ("ssa", "conv", "csa")


class GatedFFN(nn.Module):
    """1x1 expand to two halves -> 3x3 depthwise -> SimpleGate -> 1x1 project.

    Restormer's gated FFN with NAFNet's activation-free gate: the depthwise conv gives the
    feed-forward path local spatial context, which window attention alone lacks at window borders.
    """

    def __init__(self, dim: int, expand: float = 2.0, bias: bool = False) -> None:
        super().__init__()
        hidden = int(dim * expand)
        self.project_in = conv1x1(dim, hidden * 2, bias=bias)
        self.dwconv = conv3x3(hidden * 2, hidden * 2, bias=bias, groups=hidden * 2)
        self.gate = SimpleGate()
        self.project_out = conv1x1(hidden, dim, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project_out(self.gate(self.dwconv(self.project_in(x))))


class AttentionBlock(nn.Module):
    """Pre-norm attention block: ``x + beta * attn(norm1(x))``, then ``+ gamma * ffn(norm2(.))``.

    ``beta``/``gamma`` start at zero (the block starts as the identity, which is how NAFBlock
    trains without warm-up tricks) and are randomised by
    :func:`irdeploy.model.init.randomize_constants` like every other constant initialisation.
    """

    def __init__(self, dim: int, attn: nn.Module, ffn_expand: float = 2.0, bias: bool = False) -> None:
        super().__init__()
        self.beta = nn.Parameter(torch.zeros(1, dim, 1, 1))
        self.gamma = nn.Parameter(torch.zeros(1, dim, 1, 1))
        self.norm1 = LayerNorm2d(dim)
        self.attn = attn
        self.norm2 = LayerNorm2d(dim)
        self.ffn = GatedFFN(dim, ffn_expand, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x)) * self.beta
        return x + self.ffn(self.norm2(x)) * self.gamma


class RUN(NAFUNet):
    """The heterogeneous-operator U-Net; see the module docstring for which choices are ours.

    Pads its input once to :attr:`pad_multiple` (the U-Net's ``2 ** levels`` and every SSA level's
    window at that level's scale) with zeros and crops the output back; returns one tensor.
    """

    def __init__(
        self,
        img_channel: int = 3,
        width: int = 32,
        enc_blk_nums: Sequence[int] = (2, 2, 2),
        middle_blk_num: int = 4,
        dec_blk_nums: Sequence[int] = (2, 2, 2),
        level_ops: Sequence[str] = ("ssa", "conv", "conv", "csa"),
        num_heads: Sequence[int] = (2, 2, 4, 8),
        window_size: int = 8,
        ffn_expand: float = 2.0,
        bias: bool = False,
    ) -> None:
        levels = len(enc_blk_nums)
        for name, values in (("level_ops", level_ops), ("num_heads", num_heads)):
            if len(values) != levels + 1:
                raise ValueError(f"{name} needs {levels + 1} entries (one per level and the bottleneck), got {list(values)}")
        unknown = sorted(set(level_ops) - set(OPERATORS))
        if unknown:
            raise ValueError(f"unknown level operator(s) {', '.join(unknown)}; choose from {', '.join(OPERATORS)}")

        def block(level: int) -> nn.Module:
            dim = width << level
            op = level_ops[level]
            if op == "conv":
                return NAFBlock(dim)
            if op == "ssa":
                attn = WindowAttention(dim, num_heads[level], window_size, bias)
            else:
                attn = ChannelAttention(dim, num_heads[level], bias)
            return AttentionBlock(dim, attn, ffn_expand, bias)

        super().__init__(img_channel, width, middle_blk_num, enc_blk_nums, dec_blk_nums,
                         attention=lambda dim: block(levels))
        # NAFUNet fills every level with NAFBlocks; attention levels get their own blocks, in the
        # same places (decoders run deepest first, so decoder j is level levels-1-j).
        for level, op in enumerate(level_ops[:levels]):
            if op != "conv":
                self.encoders[level] = nn.Sequential(*[block(level) for _ in range(enc_blk_nums[level])])
                j = levels - 1 - level
                self.decoders[j] = nn.Sequential(*[block(level) for _ in range(dec_blk_nums[j])])
        windows = [window_size << level for level, op in enumerate(level_ops) if op == "ssa"]
        self.pad_multiple = math.lcm(2 ** levels, *windows)
        self.pad_mode = "constant"

    def forward(self, inp: torch.Tensor) -> torch.Tensor:
        check_input(inp, self.img_channel, "RUN")
        h, w = inp.shape[-2:]
        inp = pad_to_multiple(inp, self.pad_multiple)
        x, skips = self.encode(self.intro(inp))
        x = self.decode(self.middle_blks(x), skips)[-1]
        return (self.ending(x) + inp)[..., :h, :w]


def _level_op(state: Mapping[str, torch.Tensor], block: str) -> str:
    if f"{block}.attn.temperature" in state:
        return "csa"
    return "ssa" if f"{block}.attn.qkv.weight" in state else "conv"


def _detect(state: Mapping[str, torch.Tensor]) -> dict[str, Any] | None:
    """RUN: a NAF U-Net whose levels hold attention blocks (``*.attn.*`` with ``*.ffn.*``).

    The operator per level and channel-attention heads are in the weights; window attention has
    no per-head or per-window parameter, so ``window_size`` and its heads keep their defaults.
    """
    kwargs = read_unet(state)
    if kwargs is None or "middle_blks.0.ffn.project_in.weight" not in state:
        return None
    levels = len(kwargs["enc_blk_nums"])
    blocks = [f"encoders.{i}.0" for i in range(levels)] + ["middle_blks.0"]
    ops = [_level_op(state, b) for b in blocks]
    defaults = list(SPEC.defaults()["num_heads"])
    heads = [int(state[f"{b}.attn.temperature"].shape[0]) if op == "csa" else (defaults[i] if i < len(defaults) else 1)
             for i, (b, op) in enumerate(zip(blocks, ops))]
    width = kwargs["width"]
    hidden = state["middle_blks.0.ffn.project_in.weight"].shape[0] // 2
    return {**kwargs, "level_ops": ops, "num_heads": heads, "bias": "middle_blks.0.attn.qkv.bias" in state,
            "ffn_expand": hidden / (width << levels)}


def _unread(settings: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    """Window attention's window and head count shape no parameter: detection assumes them
    wherever a level is SSA (the conv levels use neither; the CSA heads size ``temperature``)."""
    ssa = tuple(i for i, op in enumerate(settings["level_ops"]) if op == "ssa")
    return {"num_heads": ssa, "window_size": ()} if ssa else {}


SPEC = ModelSpec(
    name="run",
    network=RUN,
    # RUN's published configurations are not public: these two are irdeploy's.
    presets=(
        Preset("run-s", "RUN, width 32 (irdeploy's small configuration; paper's unknown)", {"width": 32},
               source="irdeploy (model/run.py; the paper's configurations are not public)"),
        Preset("run-b", "RUN, width 48, deeper (irdeploy's base configuration; paper's unknown)",
               {"width": 48, "enc_blk_nums": [2, 3, 4], "middle_blk_num": 6},
               source="irdeploy (model/run.py; the paper's configurations are not public)"),
    ),
    channels_arg="img_channel",
    pad_multiple=lambda model: model.pad_multiple,
    pad_mode="constant",
    tiny={"width": 8, "enc_blk_nums": [1, 1, 1], "middle_blk_num": 1, "dec_blk_nums": [1, 1, 1], "num_heads": [2, 1, 1, 2]},
    no_fixtures="RUN has no public code or weights to take reference vectors from (see the module docstring)",
    identity_convs=("ending",),
    constant_init=("beta", "gamma", "temperature"),
    attention=(ChannelAttention, WindowAttention),
    attention_cores=(ChannelAttention,),
    layernorms=(LayerNorm2d,),
    detect=_detect,
    unread=_unread,
)
