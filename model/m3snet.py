"""M3SNet: a multi-scale, multi-stage U-Net for image restoration (Gao, Dang et al., 2023).

A NAFNet U-Net with a transposed channel-attention bottleneck and an extra "middle" path that
fuses neighbouring encoder levels twice before they are used as decoder skips: each level is
refined by a NAFBlock applied to ``itself + upsampled(next deeper level)``.

Differences from the upstream code, none of which change the computed function on inputs whose
size is a multiple of :attr:`pad_multiple`:

- the channel LayerNorm uses ``F.layer_norm`` (upstream: a custom autograd function), so the
  model trains under autograd, compiles and exports;
- the output is cropped back to the input size (upstream returns the padded size);
- the middle fusion is written for any number of levels (upstream hard-codes four).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from .attention import ChannelAttention
from .layers import LayerNorm2d, NAFBlock, check_input, pad_to_multiple, pixel_shuffle_up
from .spec import ModelSpec, Preset
from .unet import NAFUNet, read_unet


class M3SNet(NAFUNet):
    def __init__(
        self,
        img_channel: int = 3,
        width: int = 32,
        middle_blk_num: int = 1,
        enc_blk_nums: Sequence[int] = (1, 1, 1, 28),
        dec_blk_nums: Sequence[int] = (1, 1, 1, 1),
    ) -> None:
        super().__init__(
            img_channel, width, middle_blk_num, enc_blk_nums, dec_blk_nums,
            attention=lambda dim: ChannelAttention(dim, num_heads=8, bias=False),
        )
        levels = len(enc_blk_nums)
        # First fusion pass over levels 0..L-2, second over 0..L-3 (upstream: 3 + 2 for L = 4).
        fused_levels = [*range(levels - 1), *range(levels - 2)]
        self.middle = nn.ModuleList(nn.Sequential(NAFBlock(width << lvl)) for lvl in fused_levels)
        self.middle_ups = nn.ModuleList(pixel_shuffle_up(width << (lvl + 1)) for lvl in fused_levels)
        self.first_pass = levels - 1

    def forward(self, inp: torch.Tensor) -> torch.Tensor:
        check_input(inp, self.img_channel, "M3SNet")
        h, w = inp.shape[-2:]
        inp = pad_to_multiple(inp, self.pad_multiple)
        x, skips = self.encode(self.intro(inp))
        x = self.middle_blks(x)

        fused = [self.middle[i](skips[i] + self.middle_ups[i](skips[i + 1])) for i in range(self.first_pass)]
        fused.append(skips[-1])
        for i in range(len(self.middle) - self.first_pass):
            j = self.first_pass + i
            fused[i] = self.middle[j](fused[i] + self.middle_ups[j](fused[i + 1]))

        x = self.decode(x, fused)[-1]
        out = self.ending(x) + inp
        return out[..., :h, :w]


def _detect(state: Mapping[str, torch.Tensor]) -> dict[str, Any] | None:
    """M3SNet: a NAF U-Net with the two-pass middle fusion (``middle.*``, ``middle_ups.*``)."""
    if "middle_ups.0.0.weight" not in state or "middle_blks.0.temperature" not in state:
        return None
    return read_unet(state)


SPEC = ModelSpec(
    name="m3snet",
    network=M3SNet,
    presets=(
        Preset("m3snet-32", "M3SNet, width 32 (deraining / deblurring release)", {"width": 32},
               source="Tombs98/M3SNet Derain/M3SNet.py (width 32)"),
        Preset("m3snet-64", "M3SNet, width 64", {"width": 64}, source="Tombs98/M3SNet, the paper's width-64 model"),
    ),
    channels_arg="img_channel",
    pad_multiple=lambda model: model.pad_multiple,
    pad_mode="constant",
    tiny={"width": 8, "enc_blk_nums": [1, 1, 1, 1]},
    fixtures=("m3snet_tiny",),
    identity_convs=("ending",),
    constant_init=("beta", "gamma", "temperature"),
    attention=(ChannelAttention,),
    attention_cores=(ChannelAttention,),
    layernorms=(LayerNorm2d,),
    detect=_detect,
)
