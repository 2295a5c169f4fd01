"""MHNet: a two-stage "hybrid" restoration network (Gao, Dang et al.).

Stage 1 is the NAFNet U-Net of :mod:`irdeploy.model.unet` with MHNet's selective (top-k)
channel attention in the bottleneck. Stage 2 (upstream ``FRSNet``) keeps full resolution: four
groups of NAFBlocks, each followed by an adaptive feature-fusion module (``AFFM``) that mixes the
running features with the matching stage-1 encoder and decoder levels, upsampled to full size.

Upstream behaviour kept on purpose (checkpoints depend on it):

- ``intro``, ``stage1.ending`` and ``stage2.conv_dnc2..4`` are in the state dict but unused:
  stage 2 projects all four decoder levels with ``conv_dnc1``.
- The unused ``intro`` is not evaluated (it cannot change the output).

Difference: upstream fails on sizes that are not a multiple of 16 (stage 1 pads, the rest of
the network does not). Here the input is padded once at the top and the output cropped back,
which leaves aligned inputs untouched.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from .attention import TopKChannelAttention
from .layers import GlobalAvgPool2d, LayerNorm2d, NAFBlock, SimpleGate, check_input, pad_to_multiple, pixel_shuffle_up
from .spec import ModelSpec, Preset, count_indices
from .unet import NAFUNet, read_unet


class UpDSample(nn.Module):
    """A named wrapper around :func:`pixel_shuffle_up`; upstream keys it ``<name>.up.*``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.up = pixel_shuffle_up(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(x)


def up_chain(channels: int, steps: int) -> nn.Module:
    """Upsample ``steps`` times from ``channels``; a single step is not wrapped (upstream keys)."""
    blocks = [UpDSample(channels >> i) for i in range(steps)]
    return blocks[0] if steps == 1 else nn.Sequential(*blocks)


class AFFM(nn.Module):
    """Adaptive feature fusion: per-channel softmax weights (over channels) for three inputs."""

    def __init__(self, in_channels: int, height: int = 3, reduction: int = 8, bias: bool = False) -> None:
        super().__init__()
        d = max(in_channels // reduction, 4)
        self.avg_pool = GlobalAvgPool2d()
        self.conv_du = nn.Sequential(nn.Conv2d(in_channels, d, 1, bias=bias), SimpleGate())
        self.fcs = nn.ModuleList(nn.Conv2d(d // 2, in_channels, 1, bias=bias) for _ in range(height))
        self.softmax = nn.Softmax(dim=1)

    def forward(self, *feats: torch.Tensor) -> torch.Tensor:
        z = self.conv_du(self.avg_pool(sum(feats)))
        return sum(self.softmax(fc(z)) * f for fc, f in zip(self.fcs, feats))


class FRSNet(nn.Module):
    """MHNet's full-resolution second stage."""

    def __init__(self, width: int, bias: bool, num: int) -> None:
        super().__init__()
        for i in range(1, 5):
            setattr(self, f"CABG{i}", nn.Sequential(*[NAFBlock(width) for _ in range(num)]))
        for i in range(1, 4):
            setattr(self, f"up_enc{i}", up_chain(width << i, i))
            setattr(self, f"up_dec{i}", up_chain(width << i, i))
        for i in range(1, 5):
            setattr(self, f"norm{i}", LayerNorm2d(width))
        for prefix in ("conv_enc", "conv_dnc"):
            for i in range(1, 5):
                setattr(self, f"{prefix}{i}", nn.Conv2d(width, width, kernel_size=1, bias=bias))
        for i in range(1, 5):
            setattr(self, f"skff{i}", AFFM(width))

    def forward(self, x: torch.Tensor, encs: Sequence[torch.Tensor], decs: Sequence[torch.Tensor]) -> torch.Tensor:
        for i in range(4):
            x = self.get_submodule(f"norm{i + 1}")(x)
            x = self.get_submodule(f"CABG{i + 1}")(x) + x
            enc, dec = encs[i], decs[3 - i]
            if i:
                enc = self.get_submodule(f"up_enc{i}")(enc)
                dec = self.get_submodule(f"up_dec{i}")(dec)
            enc = self.get_submodule(f"conv_enc{i + 1}")(enc)
            dec = self.conv_dnc1(dec)
            x = self.get_submodule(f"skff{i + 1}")(x, enc, dec)
        return x


class MHNet(nn.Module):
    def __init__(
        self,
        in_c: int = 3,
        out_c: int = 3,
        width: int = 64,
        num_cab: int = 8,
        bias: bool = False,
        enc_blk_nums: Sequence[int] = (1, 1, 1, 28),
    ) -> None:
        super().__init__()
        if len(enc_blk_nums) != 4:
            raise ValueError(f"MHNet's second stage fuses exactly 4 levels; enc_blk_nums has {len(enc_blk_nums)}")
        self.in_c = in_c
        self.intro = nn.Conv2d(in_c, width, kernel_size=3, padding=1, bias=bias)
        self.intro2 = nn.Conv2d(in_c, width, kernel_size=3, padding=1, bias=bias)
        self.stage1 = NAFUNet(
            in_c, width, 1, enc_blk_nums, (1, 1, 1, 1),
            attention=lambda dim: TopKChannelAttention(dim, num_heads=8, bias=False),
        )
        self.stage2 = FRSNet(width, bias=bias, num=num_cab)
        self.concat12 = nn.Conv2d(width * 2, width, kernel_size=1, bias=bias)
        self.ending = nn.Conv2d(width, out_c, kernel_size=3, padding=1, bias=bias)
        self.pad_multiple = self.stage1.pad_multiple
        self.pad_mode = self.stage1.pad_mode

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        check_input(img, self.in_c, "MHNet")
        h, w = img.shape[-2:]
        img = pad_to_multiple(img, self.pad_multiple)
        x, encs = self.stage1.encode(self.stage1.intro(img))
        decs = self.stage1.decode(self.stage1.middle_blks(x), encs)
        x = self.concat12(torch.cat([self.intro2(img), decs[3]], dim=1))
        x = self.stage2(x, encs, decs)
        return (self.ending(x) + img)[..., :h, :w]


def _detect(state: Mapping[str, torch.Tensor]) -> dict[str, Any] | None:
    """MHNet: a NAF U-Net first stage (``stage1.*``) and the full-resolution FRSNet (``stage2.*``)."""
    intro = state.get("intro.weight")
    stage1 = read_unet(state, "stage1.")
    if intro is None or stage1 is None or "intro2.weight" not in state or "stage2.CABG1.0.beta" not in state:
        return None
    return {"in_c": int(intro.shape[1]), "out_c": int(state["ending.weight"].shape[0]), "width": int(intro.shape[0]),
            "num_cab": count_indices(state, "stage2.CABG1."), "bias": "intro.bias" in state,
            "enc_blk_nums": stage1["enc_blk_nums"]}


SPEC = ModelSpec(
    name="mhnet",
    network=MHNet,
    presets=(Preset("mhnet", "MHNet, width 64, 8 blocks per stage-2 group", {"width": 64, "num_cab": 8, "bias": False},
                    source="Tombs98/MHNet MHNet.py"),),
    channels_arg="in_c",
    pad_multiple=lambda model: model.pad_multiple,
    pad_mode="constant",
    tiny={"width": 8, "num_cab": 1, "enc_blk_nums": [1, 1, 1, 1]},
    fixtures=("mhnet_tiny",),
    identity_convs=("ending",),
    constant_init=("beta", "gamma", "temperature", "attn1", "attn2", "attn3", "attn4"),
    attention=(TopKChannelAttention,),
    attention_cores=(TopKChannelAttention,),
    onnx23="MHNet's top-k attention has no opset-23 Attention form; use --attention matmul",
    layernorms=(LayerNorm2d,),
    detect=_detect,
)
