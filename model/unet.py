"""The NAFNet-style U-Net that M3SNet is built on and MHNet uses as its first stage.

intro 3x3 conv -> per level: NAFBlocks, then a stride-2 2x2 conv doubling the channels ->
attention bottleneck -> per level: 1x1 conv + PixelShuffle, add the skip, NAFBlocks -> ending
3x3 conv. Inputs are padded once to a multiple of ``2 ** levels`` (:attr:`pad_multiple`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from .layers import NAFBlock, pixel_shuffle_up
from .spec import count_blocks, count_indices

AttentionFactory = Callable[[int], nn.Module]


class NAFUNet(nn.Module):
    """Encoder, bottleneck and decoder shared by M3SNet and MHNet's stage 1.

    Attribute names and registration order follow upstream (``intro, ending, encoders, decoders,
    middle_blks, ups, downs``) because they are the state-dict keys and order of official
    checkpoints.
    """

    def __init__(
        self,
        img_channel: int,
        width: int,
        middle_blk_num: int,
        enc_blk_nums: Sequence[int],
        dec_blk_nums: Sequence[int],
        attention: AttentionFactory,
    ) -> None:
        super().__init__()
        if len(enc_blk_nums) != len(dec_blk_nums):
            raise ValueError(f"enc_blk_nums {list(enc_blk_nums)} and dec_blk_nums {list(dec_blk_nums)} differ in length")
        self.img_channel = img_channel
        self.intro = nn.Conv2d(img_channel, width, kernel_size=3, padding=1)
        self.ending = nn.Conv2d(width, img_channel, kernel_size=3, padding=1)
        self.encoders = nn.ModuleList()
        self.decoders = nn.ModuleList()
        self.middle_blks = nn.Sequential(*[attention(width << len(enc_blk_nums)) for _ in range(middle_blk_num)])
        self.ups = nn.ModuleList()
        self.downs = nn.ModuleList()

        chan = width
        for num in enc_blk_nums:
            self.encoders.append(nn.Sequential(*[NAFBlock(chan) for _ in range(num)]))
            self.downs.append(nn.Conv2d(chan, chan * 2, kernel_size=2, stride=2))
            chan *= 2
        for num in dec_blk_nums:
            self.ups.append(pixel_shuffle_up(chan))
            chan //= 2
            self.decoders.append(nn.Sequential(*[NAFBlock(chan) for _ in range(num)]))
        self.pad_multiple = 2 ** len(enc_blk_nums)
        self.pad_mode = "constant"

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Run the encoder levels; return the bottleneck input and each level's output."""
        skips = []
        for encoder, down in zip(self.encoders, self.downs):
            x = encoder(x)
            skips.append(x)
            x = down(x)
        return x, skips

    def decode(self, x: torch.Tensor, skips: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Run the decoder levels from the deepest skip up; return every level's output."""
        outs = []
        for decoder, up, skip in zip(self.decoders, self.ups, reversed(skips)):
            x = decoder(up(x) + skip)
            outs.append(x)
        return outs


def read_unet(state: Mapping[str, torch.Tensor], prefix: str = "") -> dict[str, Any] | None:
    """The :class:`NAFUNet` constructor arguments a state dict's shapes give, or ``None``.

    Channels and width come from the intro conv, depths from how many blocks each encoder,
    decoder and the bottleneck hold; architecture detection builds on this.
    """
    intro = state.get(f"{prefix}intro.weight")
    if intro is None or intro.ndim != 4:
        return None
    enc, dec = count_blocks(state, f"{prefix}encoders."), count_blocks(state, f"{prefix}decoders.")
    if not enc or len(enc) != len(dec):
        return None
    return {"img_channel": int(intro.shape[1]), "width": int(intro.shape[0]), "enc_blk_nums": enc,
            "middle_blk_num": count_indices(state, f"{prefix}middle_blks."), "dec_blk_nums": dec}
