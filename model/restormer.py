"""Restormer: a four-level U-Net of transposed-attention transformer blocks (Zamir et al., CVPR 2022).

Upstream is swz30/Restormer, ``basicsr/models/archs/restormer_arch.py``. Every block is
LayerNorm -> MDTA (multi-Dconv-head transposed attention: attention between *channels*, the
zoo's :class:`~irdeploy.model.attention.ChannelAttention`) and LayerNorm -> GDFN (gated
depthwise feed-forward with an exact GELU gate). Levels are joined by a 3x3 conv +
PixelUnshuffle (down) and a 3x3 conv + PixelShuffle (up); decoder skips are concatenated.

Upstream's structure, kept because it is what the published checkpoints hold:

- ``patch_embed`` and the resizing convs are bias-free whatever ``bias`` says (upstream never
  passes ``bias`` to them);
- the level-1 skip is concatenated without a 1x1 reduction, so ``decoder_level1`` and
  ``refinement`` run at ``2 * dim`` with ``heads[0]``; decoder levels 3 and 2 reuse
  ``num_blocks[2]``/``[1]`` and ``heads[2]``/``[1]``;
- the dual-pixel variant (``dual_pixel_task=True``, six input channels: the two views) adds a
  1x1 ``skip_conv`` from the level-1 embedding and has no input residual.

Differences, none of which change the function on the inputs upstream accepts:

- upstream needs H and W to be multiples of 8 and its test scripts reflect-pad outside the
  model; this module reflect-pads the bottom/right itself and crops back (aligned inputs take
  exactly the upstream path, no Pad traced);
- the WithBias LayerNorm is ``F.layer_norm`` (one ONNX ``LayerNormalization``); the BiasFree one
  is :class:`BiasFreeLayerNorm2d`, written in NCHW (see there why it cannot be a
  ``LayerNormalization``);
- MDTA folds the temperature into the queries (``(t q) k^T = t (q k^T)``), which keeps the
  exported core MatMul -> Softmax -> MatMul.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .attention import ChannelAttention
from .layers import LayerNorm2d, check_input, conv1x1, conv3x3, pad_to_multiple
from .spec import ModelSpec, Preset, count_indices

__all__ = ["BiasFreeLayerNorm2d", "Restormer", "SPEC"]

MULTIPLE = 8  # three PixelUnshuffle(2) stages
MIN_SIDE = MULTIPLE // 2 + 1  # reflect padding needs pad < side
LAYERNORM_TYPES = ("WithBias", "BiasFree")
EPS = 1e-5
FFN_EXPANSION = 2.66

_REPO = "swz30/Restormer"
_DENOISE = {"LayerNorm_type": "BiasFree"}
# Every published configuration is upstream's default network (dim 48, blocks 4/6/6/8, 4
# refinement blocks, heads 1/2/4/8, expansion 2.66, no bias) with the settings shown. The
# dual-pixel one (Defocus_Deblurring/Options/DefocusDeblur_DualPixel_16bit_Restormer.yml) is
# ``create("restormer", inp_channels=6, dual_pixel_task=True)`` and not a preset: its input is
# two views stacked, which irdeploy's image pipeline (1 or 3 channels in and out) does not read.
# Presets of one network differ only in their weights, so a checkpoint is detected as the first.
PRESETS = (
    Preset("restormer-derain", "Restormer, deraining (Rain13K); same network as -deblur, -defocus", {},
           source=f"{_REPO} Deraining/Options/Deraining_Restormer.yml"),
    Preset("restormer-deblur", "Restormer, motion deblurring (GoPro)", {},
           source=f"{_REPO} Motion_Deblurring/Options/Deblurring_Restormer.yml"),
    Preset("restormer-defocus", "Restormer, defocus deblurring, single image (DPDD)", {},
           source=f"{_REPO} Defocus_Deblurring/Options/DefocusDeblur_Single_8bit_Restormer.yml"),
    Preset("restormer-denoise-real", "Restormer, real denoising (SIDD), BiasFree; same network as -denoise-color", dict(_DENOISE),
           source=f"{_REPO} Denoising/Options/RealDenoising_Restormer.yml"),
    Preset("restormer-denoise-color", "Restormer, Gaussian colour denoising, BiasFree",
           dict(_DENOISE), source=f"{_REPO} Denoising/Options/GaussianColorDenoising_Restormer*.yml"),
    Preset("restormer-denoise-gray", "Restormer, Gaussian gray denoising, BiasFree, 1 channel", {**_DENOISE, "inp_channels": 1, "out_channels": 1},
           source=f"{_REPO} Denoising/Options/GaussianGrayDenoising_Restormer*.yml"),
)


class BiasFreeLayerNorm2d(nn.Module):
    """Restormer's "BiasFree" channel LayerNorm: ``x / sqrt(var_c(x) + eps) * weight``.

    The variance is taken about the channel mean, but the mean is *not* subtracted from ``x``,
    so this is not a LayerNorm with a zero bias: ONNX ``LayerNormalization`` would subtract it.
    Its optional ``InvStdDev`` output is exactly the factor needed, but TensorRT's parser rejects
    a ``LayerNormalization`` with more than one output (checked with TensorRT-RTX 1.7). So it is
    written directly on NCHW over the channel axis, which needs no layout transposes and exports
    as one fixed chain, ReduceMean -> Sub -> Mul -> ReduceMean -> Add -> Sqrt -> Div -> Mul, that
    :func:`irdeploy.export.graph.biasfree_norms` recognises and counts.
    """

    def __init__(self, channels: int, eps: float = EPS) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        centred = x - x.mean(dim=1, keepdim=True)
        var = (centred * centred).mean(dim=1, keepdim=True)
        return x / torch.sqrt(var + self.eps) * self.weight.reshape(1, -1, 1, 1)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, eps={self.eps}"


class RestormerNorm(nn.Module):
    """Holds the norm as ``body``: upstream's key layout (``norm1.body.weight``)."""

    def __init__(self, dim: int, layernorm_type: str) -> None:
        super().__init__()
        self.body = BiasFreeLayerNorm2d(dim) if layernorm_type == "BiasFree" else LayerNorm2d(dim, eps=EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class GDFN(nn.Module):
    """Gated-Dconv feed-forward: 1x1 to 2 hidden, 3x3 depthwise, GELU(first half) * second, 1x1 back."""

    def __init__(self, dim: int, ffn_expansion_factor: float, bias: bool) -> None:
        super().__init__()
        hidden = int(dim * ffn_expansion_factor)  # upstream's truncation: 48 * 2.66 -> 127
        self.project_in = conv1x1(dim, hidden * 2, bias=bias)
        self.dwconv = conv3x3(hidden * 2, hidden * 2, bias=bias, groups=hidden * 2)
        self.project_out = conv1x1(hidden, dim, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, value = self.dwconv(self.project_in(x)).chunk(2, dim=1)
        return self.project_out(F.gelu(gate) * value)


class TransformerBlock(nn.Module):
    """Pre-norm residual block: ``x + MDTA(norm1(x))``, then ``+ GDFN(norm2(x))``."""

    def __init__(self, dim: int, num_heads: int, ffn_expansion_factor: float, bias: bool, layernorm_type: str) -> None:
        super().__init__()
        self.norm1 = RestormerNorm(dim, layernorm_type)
        self.attn = ChannelAttention(dim, num_heads=num_heads, bias=bias)
        self.norm2 = RestormerNorm(dim, layernorm_type)
        self.ffn = GDFN(dim, ffn_expansion_factor, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.ffn(self.norm2(x))


class PatchEmbed(nn.Module):
    """Upstream's ``OverlapPatchEmbed``: one bias-free 3x3 conv, kept as ``proj`` for the keys."""

    def __init__(self, in_c: int, dim: int) -> None:
        super().__init__()
        self.proj = conv3x3(in_c, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


class Resample(nn.Module):
    """3x3 bias-free conv then PixelUnshuffle(2) (``down``: C -> 2C channels, half size) or
    PixelShuffle(2) (up: C -> C/2, double size); ``body`` as upstream's Downsample/Upsample."""

    def __init__(self, channels: int, down: bool) -> None:
        super().__init__()
        if down:
            self.body = nn.Sequential(conv3x3(channels, channels // 2, bias=False), nn.PixelUnshuffle(2))
        else:
            self.body = nn.Sequential(conv3x3(channels, channels * 2, bias=False), nn.PixelShuffle(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class Restormer(nn.Module):
    """Restormer with upstream's constructor arguments and defaults (four levels, fixed)."""

    def __init__(
        self,
        inp_channels: int = 3,
        out_channels: int = 3,
        dim: int = 48,
        num_blocks: Sequence[int] = (4, 6, 6, 8),
        num_refinement_blocks: int = 4,
        heads: Sequence[int] = (1, 2, 4, 8),
        ffn_expansion_factor: float = FFN_EXPANSION,
        bias: bool = False,
        LayerNorm_type: str = "WithBias",  # noqa: N803 - upstream's argument name
        dual_pixel_task: bool = False,
    ) -> None:
        super().__init__()
        if len(num_blocks) != 4 or len(heads) != 4:
            raise ValueError(f"Restormer has four levels: num_blocks {list(num_blocks)} and heads {list(heads)} need 4 entries")
        if LayerNorm_type not in LAYERNORM_TYPES:
            raise ValueError(f"LayerNorm_type {LayerNorm_type!r}: choose from {', '.join(LAYERNORM_TYPES)}")
        if not dual_pixel_task and inp_channels != out_channels:
            raise ValueError(f"inp_channels {inp_channels} != out_channels {out_channels}: the input residual needs "
                             "equal counts (only the dual-pixel task maps 6 channels to 3)")
        self.inp_channels = inp_channels
        self.out_channels = out_channels
        self.pad_multiple = MULTIPLE
        self.pad_mode = "reflect"

        def level(width: int, blocks: int, num_heads: int) -> nn.Sequential:
            return nn.Sequential(*[
                TransformerBlock(width, num_heads, ffn_expansion_factor, bias, LayerNorm_type) for _ in range(blocks)
            ])

        # Registration order is the state-dict order of the official checkpoints.
        self.patch_embed = PatchEmbed(inp_channels, dim)
        self.encoder_level1 = level(dim, num_blocks[0], heads[0])
        self.down1_2 = Resample(dim, down=True)
        self.encoder_level2 = level(dim * 2, num_blocks[1], heads[1])
        self.down2_3 = Resample(dim * 2, down=True)
        self.encoder_level3 = level(dim * 4, num_blocks[2], heads[2])
        self.down3_4 = Resample(dim * 4, down=True)
        self.latent = level(dim * 8, num_blocks[3], heads[3])
        self.up4_3 = Resample(dim * 8, down=False)
        self.reduce_chan_level3 = conv1x1(dim * 8, dim * 4, bias=bias)
        self.decoder_level3 = level(dim * 4, num_blocks[2], heads[2])
        self.up3_2 = Resample(dim * 4, down=False)
        self.reduce_chan_level2 = conv1x1(dim * 4, dim * 2, bias=bias)
        self.decoder_level2 = level(dim * 2, num_blocks[1], heads[1])
        self.up2_1 = Resample(dim * 2, down=False)
        self.decoder_level1 = level(dim * 2, num_blocks[0], heads[0])
        self.refinement = level(dim * 2, num_refinement_blocks, heads[0])
        self.dual_pixel_task = dual_pixel_task
        if dual_pixel_task:
            self.skip_conv = conv1x1(dim, dim * 2, bias=bias)
        self.output = conv3x3(dim * 2, out_channels, bias=bias)

    def forward(self, inp: torch.Tensor) -> torch.Tensor:
        check_input(inp, self.inp_channels, "Restormer")
        h, w = inp.shape[-2:]
        if h < MIN_SIDE or w < MIN_SIDE:
            raise ValueError(f"Restormer: input {h}x{w} is too small; height and width must be at least "
                             f"{MIN_SIDE} to reflect-pad to a multiple of {MULTIPLE}")
        padded = pad_to_multiple(inp, MULTIPLE, mode="reflect")
        out = self._restore(padded)
        return out if padded is inp else out[..., :h, :w]

    def _restore(self, img: torch.Tensor) -> torch.Tensor:
        """The upstream forward pass; H and W of ``img`` are multiples of 8."""
        embedded = self.patch_embed(img)
        enc1 = self.encoder_level1(embedded)
        enc2 = self.encoder_level2(self.down1_2(enc1))
        enc3 = self.encoder_level3(self.down2_3(enc2))
        x = self.latent(self.down3_4(enc3))
        x = self.decoder_level3(self.reduce_chan_level3(torch.cat([self.up4_3(x), enc3], 1)))
        x = self.decoder_level2(self.reduce_chan_level2(torch.cat([self.up3_2(x), enc2], 1)))
        x = self.refinement(self.decoder_level1(torch.cat([self.up2_1(x), enc1], 1)))
        if self.dual_pixel_task:
            return self.output(x + self.skip_conv(embedded))
        return self.output(x) + img


_LEVELS = ("encoder_level1", "encoder_level2", "encoder_level3", "latent")


def _detect(state: Mapping[str, torch.Tensor]) -> dict[str, Any] | None:
    """Restormer: widths, depths, heads, norm type and the dual-pixel skip read off the shapes
    (:func:`irdeploy.model.detect.detect` then checks that they rebuild this state dict)."""
    embed, out = state.get("patch_embed.proj.weight"), state.get("output.weight")
    temps = [state.get(f"{level}.0.attn.temperature") for level in _LEVELS]
    hidden = state.get("encoder_level1.0.ffn.project_out.weight")
    if embed is None or out is None or hidden is None or any(t is None for t in temps):
        return None
    dim, hidden = int(embed.shape[0]), int(hidden.shape[1])
    return {
        "inp_channels": int(embed.shape[1]), "out_channels": int(out.shape[0]), "dim": dim,
        "num_blocks": [count_indices(state, f"{level}.") for level in _LEVELS],
        "num_refinement_blocks": count_indices(state, "refinement."),
        "heads": [int(t.shape[0]) for t in temps],
        "ffn_expansion_factor": FFN_EXPANSION if int(dim * FFN_EXPANSION) == hidden else (hidden + 0.5) / dim,
        "bias": "encoder_level1.0.attn.qkv.bias" in state,
        "LayerNorm_type": "WithBias" if "encoder_level1.0.norm1.body.bias" in state else "BiasFree",
        "dual_pixel_task": "skip_conv.weight" in state,
    }


SPEC = ModelSpec(
    name="restormer",
    network=Restormer,
    presets=PRESETS,
    channels_arg="inp_channels",
    pad_multiple=lambda model: model.pad_multiple,
    pad_mode="reflect",
    tiny={"dim": 8, "num_blocks": [1, 1, 1, 1], "num_refinement_blocks": 1, "heads": [1, 2, 2, 4]},
    fixtures=("restormer_tiny", "restormer_biasfree_tiny"),
    identity_convs=("output",),
    constant_init=("temperature",),
    attention=(ChannelAttention,),
    attention_cores=(ChannelAttention,),
    # The WithBias norm is LayerNorm2d; BiasFreeLayerNorm2d has no LayerNormalization form and
    # is counted as its own chain (irdeploy.export.graph.biasfree_norms).
    layernorms=(LayerNorm2d,),
    norms=(BiasFreeLayerNorm2d,),
    biasfree_norms=(BiasFreeLayerNorm2d,),
    detect=_detect,
    tlc=False,  # no global average pool; upstream Restormer has no local converter
)
