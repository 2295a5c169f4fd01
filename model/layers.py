"""Building blocks shared by every network in the zoo.

M3SNet and MHNet (and their upstream repositories, under three class names) use the same
NAFNet block, the same channel LayerNorm and the same "1x1 conv + PixelShuffle" upsampler.
They are written once here. Attribute names follow upstream so that official state dicts
load key for key.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class LayerNorm2d(nn.Module):
    """LayerNorm over the channel axis of an NCHW tensor.

    Upstream implements this with a custom ``autograd.Function``; that blocks ``torch.compile``
    and ONNX export. Permuting to channels-last and calling ``F.layer_norm`` computes the same
    statistics (biased variance, eps inside the square root), has a native backward, and exports
    as a single ONNX ``LayerNormalization`` node.
    """

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.layer_norm(x.permute(0, 2, 3, 1), (x.shape[1],), self.weight, self.bias, self.eps)
        return y.permute(0, 3, 1, 2)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, eps={self.eps}"


class SimpleGate(nn.Module):
    """Split channels in two halves and multiply them: NAFNet's replacement for an activation."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = x.chunk(2, dim=1)
        return a * b


class GlobalAvgPool2d(nn.AdaptiveAvgPool2d):
    """``AdaptiveAvgPool2d(1)`` computed as a mean over H and W.

    Same function and same type (the test-time local converter finds pools by type), but the
    ONNX exporter lowers ``adaptive_avg_pool2d`` through ``as_strided`` into a Range/Gather chain
    per block, while a mean is one ``ReduceMean``.
    """

    def __init__(self) -> None:
        super().__init__(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(-2, -1), keepdim=True)


def conv1x1(cin: int, cout: int, bias: bool = True) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=1, bias=bias)


def conv3x3(cin: int, cout: int, bias: bool = True, groups: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=3, padding=1, bias=bias, groups=groups)


class NAFBlock(nn.Module):
    """The NAFNet block (Chen et al., ECCV 2022), used by M3SNet and MHNet.

    Two residual halves, each scaled by a learned per-channel factor (``beta``, ``gamma``) that
    starts at zero so a freshly initialised block is the identity:

    1. LayerNorm -> 1x1 expand -> 3x3 depthwise -> SimpleGate -> simplified channel attention
       (global average pool + 1x1, multiplied back) -> 1x1 project.
    2. LayerNorm -> 1x1 expand -> SimpleGate -> 1x1 project.

    ``sca`` stays an ``nn.Sequential(pool, conv)`` because upstream keys its conv ``sca.1`` and
    because the test-time local converter (:mod:`irdeploy.model.tlc`) swaps the pool in place.
    """

    def __init__(self, c: int, dw_expand: int = 2, ffn_expand: int = 2, drop_out_rate: float = 0.0) -> None:
        super().__init__()
        dw = c * dw_expand
        ffn = c * ffn_expand
        # Registration order matters: it is the state-dict order of the official checkpoints.
        self.beta = nn.Parameter(torch.zeros(1, c, 1, 1))
        self.gamma = nn.Parameter(torch.zeros(1, c, 1, 1))
        self.conv1 = conv1x1(c, dw)
        self.conv2 = conv3x3(dw, dw, groups=dw)
        self.conv3 = conv1x1(dw // 2, c)
        self.sca = nn.Sequential(GlobalAvgPool2d(), conv1x1(dw // 2, dw // 2))
        self.sg = SimpleGate()
        self.conv4 = conv1x1(c, ffn)
        self.conv5 = conv1x1(ffn // 2, c)
        self.norm1 = LayerNorm2d(c)
        self.norm2 = LayerNorm2d(c)
        self.dropout1 = nn.Dropout(drop_out_rate) if drop_out_rate > 0 else nn.Identity()
        self.dropout2 = nn.Dropout(drop_out_rate) if drop_out_rate > 0 else nn.Identity()

    def forward(self, inp: torch.Tensor) -> torch.Tensor:
        x = self.sg(self.conv2(self.conv1(self.norm1(inp))))
        x = self.conv3(x * self.sca(x))
        y = inp + self.dropout1(x) * self.beta
        x = self.conv5(self.sg(self.conv4(self.norm2(y))))
        return y + self.dropout2(x) * self.gamma


def pixel_shuffle_up(channels: int) -> nn.Sequential:
    """Double the resolution and halve the channels: 1x1 conv to 2C, then PixelShuffle(2)."""
    return nn.Sequential(conv1x1(channels, channels * 2, bias=False), nn.PixelShuffle(2))


def pad_to_multiple(x: torch.Tensor, multiple: int, mode: str = "constant") -> torch.Tensor:
    """Pad H and W at the bottom/right up to the next multiple.

    Aligned inputs are returned as they are, with no Pad node: an export traced on sizes that
    are symbolic multiples of ``multiple`` proves the padding zero and leaves it out.
    """
    h, w = x.shape[-2:]
    pad_h = (multiple - h % multiple) % multiple
    pad_w = (multiple - w % multiple) % multiple
    if pad_h == 0 and pad_w == 0:
        return x
    if mode == "reflect" and (pad_h >= h or pad_w >= w):
        raise ValueError(f"input {h}x{w} is too small to reflect-pad to a multiple of {multiple}")
    return F.pad(x, (0, pad_w, 0, pad_h), mode=mode)


def check_input(x: torch.Tensor, channels: int, name: str) -> None:
    """Reject inputs a network cannot take with one readable line instead of a conv traceback."""
    if x.dim() != 4:
        raise ValueError(f"{name} expects an NCHW tensor, got shape {tuple(x.shape)}")
    if x.shape[1] != channels:
        raise ValueError(f"{name} expects {channels} input channels, got {x.shape[1]} (shape {tuple(x.shape)})")
