"""NAFNet: the "nonlinear activation free" U-Net (Chen, Chu, Zhang, Sun, ECCV 2022).

The network M3SNet and MHNet grew from: the shared :class:`~irdeploy.model.unet.NAFUNet`
encoder/decoder with plain NAFBlocks in the bottleneck, an intro and an ending 3x3 conv and a
global input residual. Upstream is megvii-research/NAFNet, ``basicsr/models/archs/NAFNet_arch.py``
(``NAFNet``, and ``NAFNetLocal`` for the test-time local converter, TLC).

Faithful to upstream, on every input size:

- the same state-dict keys in the same order. Upstream registers ``middle_blks`` as an empty
  ``ModuleList`` between ``decoders`` and ``ups`` and later replaces it by an ``nn.Sequential``,
  which keeps that slot: ``NAFUNet`` registers it there too;
- the input is zero-padded at the bottom/right to a multiple of ``2 ** len(enc_blk_nums)``, the
  residual is added on the padded tensor and the result cropped back, as upstream's own forward
  does. The padded zeros change the pixels near the bottom/right border (3x3 convs, and the
  channel attention's global means are taken over the padded map): that is upstream's function.

Differences that do not change the function: the channel LayerNorm is ``F.layer_norm``
(upstream: a custom autograd function), so the model trains, compiles and exports with one
``LayerNormalization`` per LayerNorm; the global pool is a mean (one ``ReduceMean``).

``NAFNetLocal`` is :func:`irdeploy.model.to_local`: upstream's rule is ``base_size =
(int(1.5 * train_H), int(1.5 * train_W))``, the default of ``to_local`` too, and every window is
fixed from what its pool sees at ``train_size``. The published GoPro/REDS test configurations
use it with ``train_size=(1, 3, 256, 256)``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from .layers import LayerNorm2d, NAFBlock, check_input, pad_to_multiple
from .spec import ModelSpec, Preset
from .unet import NAFUNet, read_unet

__all__ = ["NAFNet", "SPEC"]

_REPO = "megvii-research/NAFNet"
_GOPRO = {"enc_blk_nums": [1, 1, 1, 28], "middle_blk_num": 1, "dec_blk_nums": [1, 1, 1, 1]}
_SIDD = {"enc_blk_nums": [2, 2, 4, 8], "middle_blk_num": 12, "dec_blk_nums": [2, 2, 2, 2]}
_TLC = "; upstream tests it with TLC: --tlc 256x256"
PRESETS = (
    Preset("nafnet-gopro-32", "NAFNet width 32, GoPro deblurring" + _TLC, {"width": 32, **_GOPRO},
           source=f"{_REPO} options/test/GoPro/NAFNet-width32.yml"),
    Preset("nafnet-gopro-64", "NAFNet width 64, GoPro/REDS deblurring" + _TLC, {"width": 64, **_GOPRO},
           source=f"{_REPO} options/test/GoPro/NAFNet-width64.yml, options/test/REDS/NAFNet-width64.yml"),
    Preset("nafnet-sidd-32", "NAFNet width 32, SIDD denoising", {"width": 32, **_SIDD},
           source=f"{_REPO} options/test/SIDD/NAFNet-width32.yml"),
    Preset("nafnet-sidd-64", "NAFNet width 64, SIDD denoising", {"width": 64, **_SIDD},
           source=f"{_REPO} options/test/SIDD/NAFNet-width64.yml"),
)


class NAFNet(NAFUNet):
    """NAFNet with upstream's constructor arguments (``width`` defaults to upstream's 16)."""

    def __init__(
        self,
        img_channel: int = 3,
        width: int = 16,
        middle_blk_num: int = 1,
        enc_blk_nums: Sequence[int] = (),
        dec_blk_nums: Sequence[int] = (),
    ) -> None:
        super().__init__(img_channel, width, middle_blk_num, enc_blk_nums, dec_blk_nums, attention=NAFBlock)

    def forward(self, inp: torch.Tensor) -> torch.Tensor:
        check_input(inp, self.img_channel, "NAFNet")
        h, w = inp.shape[-2:]
        inp = pad_to_multiple(inp, self.pad_multiple)
        x, skips = self.encode(self.intro(inp))
        x = self.middle_blks(x)
        decoded = self.decode(x, skips)
        x = decoded[-1] if decoded else x
        out = self.ending(x) + inp
        return out[..., :h, :w]


def _detect(state: Mapping[str, torch.Tensor]) -> dict[str, Any] | None:
    """NAFNet: a NAF U-Net with NAFBlocks (their channel attention ``sca``) in the bottleneck,
    where M3SNet, MHNet and RUN put attention; widths and depths are read off the shapes
    (:func:`irdeploy.model.detect.detect` then checks that they rebuild this state dict)."""
    return read_unet(state) if "middle_blks.0.sca.1.weight" in state else None


SPEC = ModelSpec(
    name="nafnet",
    network=NAFNet,
    presets=PRESETS,
    channels_arg="img_channel",
    pad_multiple=lambda model: model.pad_multiple,
    pad_mode="constant",
    tiny={"width": 8, "enc_blk_nums": [1, 1, 1, 1], "middle_blk_num": 1, "dec_blk_nums": [1, 1, 1, 1]},
    fixtures=("nafnet_tiny", "nafnet_tiny_tlc"),
    identity_convs=("ending",),
    constant_init=("beta", "gamma"),
    layernorms=(LayerNorm2d,),
    detect=_detect,
)
