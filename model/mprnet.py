"""MPRNet: multi-stage progressive image restoration.

Zamir, Arora, Khan, Hayat, Khan, Yang and Shao, "Multi-Stage Progressive Image Restoration",
CVPR 2021 (https://arxiv.org/abs/2102.02808, official code: github.com/swz30/MPRNet). One
architecture serves deblurring, deraining and denoising; only the widths differ between the
official checkpoints:

=============  ======  ===============  =================  =======
checkpoint     n_feat  scale_unetfeats  scale_orsnetfeats  num_cab
=============  ======  ===============  =================  =======
deblurring     96      48               32                 8
deraining      40      20               16                 8
denoising      80      48               32                 8
=============  ======  ===============  =================  =======

The network restores the image in three stages that share information:

1. **Stage 1** cuts the image into four quadrants. Each quadrant goes through the same shallow
   feature extractor and the same three-level U-Net encoder (channel-attention blocks,
   bilinear downsampling). Left and right feature maps are joined side by side, and each half
   (top, bottom) is decoded on its own. A supervised attention module (SAM) turns each decoded
   half into an image estimate plus attention-gated features for the next stage.
2. **Stage 2** works on the top and bottom halves. Its shallow features are fused with the
   stage-1 SAM features, and its encoder also takes in the stage-1 encoder and decoder features
   (cross-stage feature fusion, CSFF). The halves are stacked back into full-size feature maps,
   decoded, and passed through a second SAM.
3. **Stage 3** runs at full resolution with no down-sampling: a chain of original-resolution
   blocks (ORBs) that take in the upsampled stage-2 encoder and decoder features. The last
   convolution predicts a residual that is added to the input.

:meth:`MPRNet.forward` returns the list ``[stage3_img, stage2_img, stage1_img]``, final image
first, the same as upstream. Training supervises all three; at inference only ``[0]`` is used.

Input size: the quadrant split followed by two 2x downsamplings means upstream only works when
H and W are multiples of 8. The official test scripts reflect-pad the bottom and right edges up
to the next multiple of 8 before the call and crop afterwards. This module does that itself:
it pads once on entry and crops all three outputs back to the input size. An input that is
already aligned is not padded or cropped, so it takes exactly the upstream path. Reflect padding
needs the pad to be smaller than the side it mirrors, so each side must be at least 5 pixels.
Smaller inputs raise ``ValueError``.

Attribute names and registration order match upstream, so ``state_dict()`` keys (and their
order) are the official ones. After stripping the ``module.`` prefix that ``nn.DataParallel``
adds, an official checkpoint's ``state_dict`` loads directly.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .layers import GlobalAvgPool2d, check_input, pad_to_multiple
from .spec import ModelSpec, Preset, count_indices

__all__ = ["MPRNet"]

# H and W must be multiples of this: a 2x2 quadrant split, then two 2x downsamplings.
_MULTIPLE = 8
# Smallest side that can be reflect-padded up to a multiple of _MULTIPLE (pad < side).
_MIN_SIDE = _MULTIPLE // 2 + 1

Features = List[torch.Tensor]


def _conv(cin: int, cout: int, kernel_size: int, bias: bool = False) -> nn.Conv2d:
    """Stride-1 convolution with 'same' zero padding (odd kernel sizes)."""
    return nn.Conv2d(cin, cout, kernel_size, padding=kernel_size // 2, bias=bias)


def _halves(t: torch.Tensor, dim: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Cut ``t`` into two equal halves along ``dim`` (the size is even after padding)."""
    mid = t.shape[dim] // 2
    return t.narrow(dim, 0, mid), t.narrow(dim, mid, t.shape[dim] - mid)


class SqueezeExcitation(nn.Module):
    """Squeeze-and-excitation (upstream ``CALayer``; not the transposed attention of
    :class:`irdeploy.model.attention.ChannelAttention`): global average pool, 1x1 bottleneck, sigmoid gate on channels."""

    def __init__(self, channels: int, reduction: int, bias: bool) -> None:
        super().__init__()
        self.avg_pool = GlobalAvgPool2d()
        self.conv_du = nn.Sequential(
            nn.Conv2d(channels, channels // reduction, 1, bias=bias),
            nn.ReLU(),
            nn.Conv2d(channels // reduction, channels, 1, bias=bias),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.conv_du(self.avg_pool(x))


class ChannelAttentionBlock(nn.Module):
    """Residual block: conv, activation, conv, then channel attention (upstream ``CAB``).

    ``act`` is passed in, not built here: upstream shares one ``nn.PReLU`` (a single learned
    slope) across every block of the network, so its weight shows up under each block's
    ``body.1.weight`` key but it is one parameter.
    """

    def __init__(self, channels: int, kernel_size: int, reduction: int, bias: bool, act: nn.Module) -> None:
        super().__init__()
        # Upstream registers CA before body; that order is the state-dict order.
        self.CA = SqueezeExcitation(channels, reduction, bias)
        self.body = nn.Sequential(
            _conv(channels, channels, kernel_size, bias),
            act,
            _conv(channels, channels, kernel_size, bias),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.CA(self.body(x)) + x


def _cab_stack(n: int, channels: int, kernel_size: int, reduction: int, bias: bool, act: nn.Module) -> nn.Sequential:
    return nn.Sequential(*(ChannelAttentionBlock(channels, kernel_size, reduction, bias, act) for _ in range(n)))


class SupervisedAttention(nn.Module):
    """Supervised attention module (SAM) between two stages.

    Predicts a residual image (``conv2``) added to the stage's input image. That image is the
    stage output that the loss supervises. A sigmoid map computed from it (``conv3``) gates the
    ``conv1`` features, which are then added back to the input features for the next stage.
    """

    def __init__(self, channels: int, img_channels: int, kernel_size: int, bias: bool) -> None:
        super().__init__()
        self.conv1 = _conv(channels, channels, kernel_size, bias)
        self.conv2 = _conv(channels, img_channels, kernel_size, bias)
        self.conv3 = _conv(img_channels, channels, kernel_size, bias)

    def forward(self, feats: torch.Tensor, img: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        restored = self.conv2(feats) + img
        gate = torch.sigmoid(self.conv3(restored))
        return self.conv1(feats) * gate + feats, restored


class BilinearUp2x(nn.Module):
    """``nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)``, as a fixed filter.

    Along each axis that resize gives output ``2i`` = 0.25 x[i-1] + 0.75 x[i] and ``2i+1`` =
    0.75 x[i] + 0.25 x[i+1], with the edges replicated: a replicate pad of one pixel, then a
    depthwise stride-2 transposed convolution with the separable kernel [1, 3, 3, 1] / 4 (and
    padding 3 to drop the border). Same values to rounding, but it exports as Pad + ConvTranspose,
    which TensorRT builds with dynamic H/W, while its Myelin backend rejects the dynamic
    ``Resize`` (TensorRT-RTX 1.7: "Error during shape inference of upsample_bilinear2d").
    """

    def __init__(self) -> None:
        super().__init__()
        taps = torch.tensor([0.25, 0.75, 0.75, 0.25])
        self.register_buffer("kernel", torch.outer(taps, taps).view(1, 1, 4, 4), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        padded = F.pad(x, (1, 1, 1, 1), mode="replicate")
        return F.conv_transpose2d(padded, self.kernel.expand(c, 1, 4, 4), stride=2, padding=3, groups=c)


class Downsample(nn.Module):
    """Bilinear 0.5x resize, then a bias-free 1x1 conv that adds ``extra`` channels.

    A bilinear 0.5x resize with ``align_corners=False`` samples exactly between the four pixels
    of each 2x2 block, so it is a 2x2 average pool: written that way it exports as one
    ``AveragePool`` instead of a ``Resize`` with scales, which TensorRT cannot shape-infer for
    dynamic H/W.
    """

    def __init__(self, channels: int, extra: int) -> None:
        super().__init__()
        self.down = nn.Sequential(
            nn.AvgPool2d(2),
            nn.Conv2d(channels, channels + extra, 1, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(x)


class Upsample(nn.Module):
    """Bilinear 2x resize (:class:`BilinearUp2x`), then a bias-free 1x1 conv to ``channels``.

    With ``skip`` given, it is added to the result. That covers both upstream ``UpSample`` and
    ``SkipUpSample``, which have the same parameters and keys.
    """

    def __init__(self, channels: int, extra: int) -> None:
        super().__init__()
        self.up = nn.Sequential(
            BilinearUp2x(),
            nn.Conv2d(channels + extra, channels, 1, bias=False),
        )

    def forward(self, x: torch.Tensor, skip: Optional[torch.Tensor] = None) -> torch.Tensor:
        x = self.up(x)
        return x if skip is None else x + skip


class UNetEncoder(nn.Module):
    """Three-level encoder. Level ``i`` has ``n_feat + i * scale_unetfeats`` channels.

    With ``csff=True`` it owns 1x1 convs that merge the previous stage's encoder and decoder
    features into each level (cross-stage feature fusion). Without it, those convs are not
    created, so they do not appear in the state dict (as in upstream's stage 1).
    """

    def __init__(
        self, n_feat: int, kernel_size: int, reduction: int, act: nn.Module, bias: bool, scale_unetfeats: int, csff: bool
    ) -> None:
        super().__init__()
        widths = [n_feat + i * scale_unetfeats for i in range(3)]
        self.csff = csff
        self.encoder_level1 = _cab_stack(2, widths[0], kernel_size, reduction, bias, act)
        self.encoder_level2 = _cab_stack(2, widths[1], kernel_size, reduction, bias, act)
        self.encoder_level3 = _cab_stack(2, widths[2], kernel_size, reduction, bias, act)
        self.down12 = Downsample(widths[0], scale_unetfeats)
        self.down23 = Downsample(widths[1], scale_unetfeats)
        if csff:
            self.csff_enc1 = nn.Conv2d(widths[0], widths[0], 1, bias=bias)
            self.csff_enc2 = nn.Conv2d(widths[1], widths[1], 1, bias=bias)
            self.csff_enc3 = nn.Conv2d(widths[2], widths[2], 1, bias=bias)
            self.csff_dec1 = nn.Conv2d(widths[0], widths[0], 1, bias=bias)
            self.csff_dec2 = nn.Conv2d(widths[1], widths[1], 1, bias=bias)
            self.csff_dec3 = nn.Conv2d(widths[2], widths[2], 1, bias=bias)

    def forward(
        self, x: torch.Tensor, enc_prev: Optional[Sequence[torch.Tensor]] = None, dec_prev: Optional[Sequence[torch.Tensor]] = None
    ) -> Features:
        fuse = enc_prev is not None and dec_prev is not None
        if fuse and not self.csff:
            raise ValueError("this encoder was built with csff=False and cannot fuse previous-stage features")
        levels = (self.encoder_level1, self.encoder_level2, self.encoder_level3)
        downs = (self.down12, self.down23)
        outs: Features = []
        for i, level in enumerate(levels):
            if i > 0:
                x = downs[i - 1](x)
            x = level(x)
            if fuse:
                enc_conv = getattr(self, f"csff_enc{i + 1}")
                dec_conv = getattr(self, f"csff_dec{i + 1}")
                x = x + enc_conv(enc_prev[i]) + dec_conv(dec_prev[i])
            outs.append(x)
        return outs


class UNetDecoder(nn.Module):
    """Three-level decoder. Encoder skips pass through a channel-attention block before they are added."""

    def __init__(self, n_feat: int, kernel_size: int, reduction: int, act: nn.Module, bias: bool, scale_unetfeats: int) -> None:
        super().__init__()
        widths = [n_feat + i * scale_unetfeats for i in range(3)]
        self.decoder_level1 = _cab_stack(2, widths[0], kernel_size, reduction, bias, act)
        self.decoder_level2 = _cab_stack(2, widths[1], kernel_size, reduction, bias, act)
        self.decoder_level3 = _cab_stack(2, widths[2], kernel_size, reduction, bias, act)
        self.skip_attn1 = ChannelAttentionBlock(widths[0], kernel_size, reduction, bias, act)
        self.skip_attn2 = ChannelAttentionBlock(widths[1], kernel_size, reduction, bias, act)
        self.up21 = Upsample(widths[0], scale_unetfeats)
        self.up32 = Upsample(widths[1], scale_unetfeats)

    def forward(self, enc: Sequence[torch.Tensor]) -> Features:
        enc1, enc2, enc3 = enc
        dec3 = self.decoder_level3(enc3)
        dec2 = self.decoder_level2(self.up32(dec3, self.skip_attn2(enc2)))
        dec1 = self.decoder_level1(self.up21(dec2, self.skip_attn1(enc1)))
        return [dec1, dec2, dec3]


class OriginalResolutionBlock(nn.Module):
    """``num_cab`` channel-attention blocks, a 3x3 conv and a long residual (upstream ``ORB``).

    The closing conv has no bias whatever ``bias`` is set to. Upstream does the same, and the
    official state dicts have no key for it.
    """

    def __init__(self, channels: int, kernel_size: int, reduction: int, act: nn.Module, bias: bool, num_cab: int) -> None:
        super().__init__()
        blocks: List[nn.Module] = [ChannelAttentionBlock(channels, kernel_size, reduction, bias, act) for _ in range(num_cab)]
        blocks.append(_conv(channels, channels, kernel_size, bias=False))
        self.body = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + x


class ORSNet(nn.Module):
    """Stage 3: three ORBs at full resolution, each followed by a merge of one U-Net level.

    Level ``i`` of the stage-2 encoder and decoder is brought to full resolution (``i``
    upsamplings), projected to the ORB width with a 1x1 conv, and added.
    """

    def __init__(
        self,
        n_feat: int,
        scale_orsnetfeats: int,
        kernel_size: int,
        reduction: int,
        act: nn.Module,
        bias: bool,
        scale_unetfeats: int,
        num_cab: int,
    ) -> None:
        super().__init__()
        width = n_feat + scale_orsnetfeats
        self.orb1 = OriginalResolutionBlock(width, kernel_size, reduction, act, bias, num_cab)
        self.orb2 = OriginalResolutionBlock(width, kernel_size, reduction, act, bias, num_cab)
        self.orb3 = OriginalResolutionBlock(width, kernel_size, reduction, act, bias, num_cab)
        self.up_enc1 = Upsample(n_feat, scale_unetfeats)
        self.up_dec1 = Upsample(n_feat, scale_unetfeats)
        self.up_enc2 = nn.Sequential(Upsample(n_feat + scale_unetfeats, scale_unetfeats), Upsample(n_feat, scale_unetfeats))
        self.up_dec2 = nn.Sequential(Upsample(n_feat + scale_unetfeats, scale_unetfeats), Upsample(n_feat, scale_unetfeats))
        self.conv_enc1 = nn.Conv2d(n_feat, width, 1, bias=bias)
        self.conv_enc2 = nn.Conv2d(n_feat, width, 1, bias=bias)
        self.conv_enc3 = nn.Conv2d(n_feat, width, 1, bias=bias)
        self.conv_dec1 = nn.Conv2d(n_feat, width, 1, bias=bias)
        self.conv_dec2 = nn.Conv2d(n_feat, width, 1, bias=bias)
        self.conv_dec3 = nn.Conv2d(n_feat, width, 1, bias=bias)

    def forward(self, x: torch.Tensor, enc: Sequence[torch.Tensor], dec: Sequence[torch.Tensor]) -> torch.Tensor:
        x = self.orb1(x)
        x = x + self.conv_enc1(enc[0]) + self.conv_dec1(dec[0])
        x = self.orb2(x)
        x = x + self.conv_enc2(self.up_enc1(enc[1])) + self.conv_dec2(self.up_dec1(dec[1]))
        x = self.orb3(x)
        x = x + self.conv_enc3(self.up_enc2(enc[2])) + self.conv_dec3(self.up_dec2(dec[2]))
        return x


class MPRNet(nn.Module):
    """Multi-stage progressive restoration network. See the module docstring.

    Args:
        in_c: image channels. Upstream ignores this and hard-codes 3. Here it sets the channels
            of the input convs, the SAM image branches and the output, so the default gives the
            upstream layout.
        out_c: output channels. The final image is ``input + residual``, so it must equal ``in_c``.
        n_feat: width of the shallow features and of U-Net level 1.
        scale_unetfeats: channels added at each deeper U-Net level.
        scale_orsnetfeats: channels added on top of ``n_feat`` in stage 3.
        num_cab: channel-attention blocks in each ORB.
        kernel_size: spatial kernel size of the 3x3-style convolutions.
        reduction: channel-attention bottleneck ratio.
        bias: bias on most convolutions (the resampling 1x1s and the ORB tail never have one).

    ``forward(x)`` takes an ``(N, in_c, H, W)`` image with ``H, W >= 5`` and returns
    ``[stage3_img, stage2_img, stage1_img]``, each ``(N, out_c, H, W)``.
    """

    def __init__(
        self,
        in_c: int = 3,
        out_c: int = 3,
        n_feat: int = 96,
        scale_unetfeats: int = 48,
        scale_orsnetfeats: int = 32,
        num_cab: int = 8,
        kernel_size: int = 3,
        reduction: int = 4,
        bias: bool = False,
    ) -> None:
        super().__init__()
        if in_c != out_c:
            raise ValueError(f"MPRNet adds its output to the input image, so out_c must equal in_c (got in_c={in_c}, out_c={out_c})")
        self.in_c = in_c
        self.out_c = out_c
        self.pad_multiple = _MULTIPLE
        self.pad_mode = "reflect"

        # One PReLU, one learned slope, used by every channel-attention block (as upstream).
        # It is deliberately not an attribute of this module, so its first state-dict key is
        # shallow_feat1.1.body.1.weight, as in the official checkpoints.
        act = nn.PReLU()

        def shallow() -> nn.Sequential:
            return nn.Sequential(
                _conv(in_c, n_feat, kernel_size, bias), ChannelAttentionBlock(n_feat, kernel_size, reduction, bias, act)
            )

        self.shallow_feat1 = shallow()
        self.shallow_feat2 = shallow()
        self.shallow_feat3 = shallow()

        self.stage1_encoder = UNetEncoder(n_feat, kernel_size, reduction, act, bias, scale_unetfeats, csff=False)
        self.stage1_decoder = UNetDecoder(n_feat, kernel_size, reduction, act, bias, scale_unetfeats)
        self.stage2_encoder = UNetEncoder(n_feat, kernel_size, reduction, act, bias, scale_unetfeats, csff=True)
        self.stage2_decoder = UNetDecoder(n_feat, kernel_size, reduction, act, bias, scale_unetfeats)
        self.stage3_orsnet = ORSNet(n_feat, scale_orsnetfeats, kernel_size, reduction, act, bias, scale_unetfeats, num_cab)

        # The SAMs use 1x1 convs, whatever kernel_size is.
        self.sam12 = SupervisedAttention(n_feat, in_c, kernel_size=1, bias=bias)
        self.sam23 = SupervisedAttention(n_feat, in_c, kernel_size=1, bias=bias)

        self.concat12 = _conv(2 * n_feat, n_feat, kernel_size, bias)
        self.concat23 = _conv(2 * n_feat, n_feat + scale_orsnetfeats, kernel_size, bias)
        self.tail = _conv(n_feat + scale_orsnetfeats, out_c, kernel_size, bias)

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        check_input(x, self.in_c, "MPRNet")
        h, w = x.shape[-2:]
        if h < _MIN_SIDE or w < _MIN_SIDE:
            raise ValueError(
                f"MPRNet: input {h}x{w} is too small; height and width must be at least {_MIN_SIDE} "
                f"to reflect-pad to a multiple of {_MULTIPLE}"
            )
        padded = pad_to_multiple(x, _MULTIPLE, mode="reflect")
        outs = self._restore(padded)
        return outs if padded is x else [out[..., :h, :w] for out in outs]

    def _restore(self, img: torch.Tensor) -> List[torch.Tensor]:
        """The upstream forward pass. H and W of ``img`` must be multiples of 8."""
        top_img, bot_img = _halves(img, 2)
        quadrants = (*_halves(top_img, 3), *_halves(bot_img, 3))  # top-left, top-right, bottom-left, bottom-right

        # Stage 1: the four quadrants go through the shared encoder one at a time. Left and right
        # features are joined along W, and each half is decoded.
        q_feats = [self.stage1_encoder(self.shallow_feat1(q)) for q in quadrants]
        enc1_top = [torch.cat(pair, 3) for pair in zip(q_feats[0], q_feats[1])]
        enc1_bot = [torch.cat(pair, 3) for pair in zip(q_feats[2], q_feats[3])]
        dec1_top = self.stage1_decoder(enc1_top)
        dec1_bot = self.stage1_decoder(enc1_bot)
        sam_top, stage1_top = self.sam12(dec1_top[0], top_img)
        sam_bot, stage1_bot = self.sam12(dec1_bot[0], bot_img)
        stage1_img = torch.cat([stage1_top, stage1_bot], 2)

        # Stage 2: top and bottom halves, fused with stage-1 SAM features and (CSFF) with the
        # stage-1 encoder/decoder features. The halves are stacked along H before decoding.
        x_top = self.concat12(torch.cat([self.shallow_feat2(top_img), sam_top], 1))
        x_bot = self.concat12(torch.cat([self.shallow_feat2(bot_img), sam_bot], 1))
        enc2_top = self.stage2_encoder(x_top, enc1_top, dec1_top)
        enc2_bot = self.stage2_encoder(x_bot, enc1_bot, dec1_bot)
        enc2 = [torch.cat(pair, 2) for pair in zip(enc2_top, enc2_bot)]
        dec2 = self.stage2_decoder(enc2)
        sam_full, stage2_img = self.sam23(dec2[0], img)

        # Stage 3: full resolution, no down-sampling; the tail predicts a residual.
        x3 = self.concat23(torch.cat([self.shallow_feat3(img), sam_full], 1))
        x3 = self.stage3_orsnet(x3, enc2, dec2)
        stage3_img = self.tail(x3) + img

        return [stage3_img, stage2_img, stage1_img]


def _detect(state: Mapping[str, torch.Tensor]) -> dict[str, Any] | None:
    """MPRNet: three shallow feature convs, two U-Net stages and the ORSNet; widths from shapes."""
    first = state.get("shallow_feat1.0.weight")
    level2 = state.get("stage1_encoder.encoder_level2.0.body.0.weight")
    orb = state.get("stage3_orsnet.orb1.body.0.body.0.weight")
    squeeze = state.get("shallow_feat1.1.CA.conv_du.0.weight")
    if first is None or level2 is None or orb is None or squeeze is None:
        return None
    n_feat = int(first.shape[0])
    return {"in_c": int(first.shape[1]), "out_c": int(first.shape[1]), "n_feat": n_feat,
            "scale_unetfeats": int(level2.shape[0]) - n_feat, "scale_orsnetfeats": int(orb.shape[0]) - n_feat,
            "num_cab": count_indices(state, "stage3_orsnet.orb1.body.") - 1, "kernel_size": int(first.shape[-1]),
            "reduction": n_feat // int(squeeze.shape[0]), "bias": "shallow_feat1.0.bias" in state}


SPEC = ModelSpec(
    name="mprnet",
    network=MPRNet,
    presets=(
        Preset("mprnet-deblur", "MPRNet for deblurring (GoPro)", {"n_feat": 96, "scale_unetfeats": 48, "scale_orsnetfeats": 32},
               source="swz30/MPRNet Deblurring/MPRNet.py"),
        Preset("mprnet-derain", "MPRNet for deraining (Rain13K)", {"n_feat": 40, "scale_unetfeats": 20, "scale_orsnetfeats": 16},
               source="swz30/MPRNet Deraining/MPRNet.py"),
        Preset("mprnet-denoise", "MPRNet for denoising (SIDD)", {"n_feat": 80, "scale_unetfeats": 48, "scale_orsnetfeats": 32},
               source="swz30/MPRNet Denoising/MPRNet.py"),
    ),
    channels_arg="in_c",
    pad_multiple=lambda model: _MULTIPLE,
    pad_mode="reflect",
    tiny={"n_feat": 8, "scale_unetfeats": 4, "scale_orsnetfeats": 4, "num_cab": 1},
    fixtures=("mprnet_tiny",),
    identity_convs=("tail", "sam12.conv2", "sam23.conv2"),
    detect=_detect,
    edge_loss_weight=0.05,  # MPRNet's deblurring and deraining recipes: Charbonnier + 0.05 x edge loss
)
