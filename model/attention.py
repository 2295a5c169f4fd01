"""Self-attention blocks shared by the zoo: transposed (channel) attention, as used in the
bottlenecks of M3SNet, MHNet and RUN, and windowed spatial attention (RUN's top level).

**Channel attention** (Restormer's MDTA): queries, keys and values come from a 1x1 conv followed by a 3x3 depthwise conv;
attention is computed between *channels* (a C x C map per head) after L2-normalising every
channel's spatial vector, scaled by a learned per-head temperature. Cost is linear in the number
of pixels, which is why these networks can afford it at the lowest resolution.

The temperature is folded into the queries before the first MatMul (mathematically identical to
scaling the logits) so the exported graph keeps MatMul -> Softmax -> MatMul with nothing between.

``core`` selects how the attention is written, which only matters to the ONNX exporter
(:mod:`irdeploy.export` switches it for the duration of an export):

- ``"reference"`` (default): ``F.normalize`` as upstream (an eps clamp; exports as
  ReduceL2 + Clip + Expand + Div);
- ``"matmul"``: ``q / ||q||`` without the clamp (one ReduceL2 + Div), then MatMul -> Softmax ->
  MatMul. It differs from the reference only on an all-zero channel, which the clamp maps to
  zero and this maps to NaN;
- ``"sdpa"``: the same normalisation, then ``F.scaled_dot_product_attention`` (scale 1, the
  temperature already in q), which opset 23 exports as one ``Attention`` node.

**Window attention** (:class:`WindowAttention`): attention between the *pixels* of each
non-overlapping ``window x window`` tile, the cost linear in the number of pixels for a fixed
window. It is always written with ``F.scaled_dot_product_attention``, because torch's exporter
already gives both export forms from it: below opset 23 it decomposes the call into q and k
each scaled by ``d ** -0.25``, then MatMul -> Softmax -> MatMul with nothing between, and at opset
23 it emits one ``Attention`` node. ``irdeploy.export`` selects opset 23 for
``attention="onnx23"``, so the same switch that sets the channel attention's ``core`` picks this
block's form too, and eager training gets PyTorch's fused attention kernels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .layers import pad_to_multiple


CORES = ("reference", "matmul", "sdpa")


class ChannelAttention(nn.Module):
    """M3SNet's bottleneck attention (upstream class ``Attention``)."""

    core = "reference"

    def __init__(self, dim: int, num_heads: int = 8, bias: bool = False) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"attention width {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.temperature = nn.Parameter(torch.ones(num_heads, 1, 1))
        self.qkv = nn.Conv2d(dim, dim * 3, kernel_size=1, bias=bias)
        self.qkv_dwconv = nn.Conv2d(dim * 3, dim * 3, kernel_size=3, padding=1, groups=dim * 3, bias=bias)
        self.project_out = nn.Conv2d(dim, dim, kernel_size=1, bias=bias)

    def _heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Return scaled-normalised q, normalised k and v, each (B, heads, C/heads, H*W)."""
        b, c, h, w = x.shape
        q, k, v = (t.reshape(b, self.num_heads, c // self.num_heads, h * w)
                   for t in self.qkv_dwconv(self.qkv(x)).chunk(3, dim=1))
        return self._normalize(q) * self.temperature, self._normalize(k), v

    def _normalize(self, t: torch.Tensor) -> torch.Tensor:
        if self.core == "reference":
            return F.normalize(t, dim=-1)
        return t / torch.linalg.vector_norm(t, dim=-1, keepdim=True)

    def _merge(self, out: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return self.project_out(out.reshape(like.shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self._heads(x)
        if self.core == "sdpa":
            return self._merge(F.scaled_dot_product_attention(q, k, v, scale=1.0), x)
        attn = torch.softmax(q @ k.transpose(-2, -1), dim=-1)
        return self._merge(attn @ v, x)


class TopKChannelAttention(ChannelAttention):
    """MHNet's selective variant: four sparse attention maps mixed by learned weights.

    Each map keeps, per query channel, only the top ``C/2``, ``2C/3``, ``3C/4`` and ``4C/5`` logits
    (the rest are masked to -inf before the softmax); the four results are summed with the
    learned scalars ``attn1..attn4``. One descending top-k gives every row's k-th largest logit,
    and each mask is ``logit >= that threshold``: the same sets as upstream's four top-k +
    scatter passes except on exact ties at the threshold (upstream then keeps an arbitrary
    subset of the tied logits, this keeps all of them), and it exports as one TopK plus
    comparisons instead of scatters over broadcast index tensors. The masks have no ``"sdpa"``
    form.
    """

    # (numerator, denominator): integer arithmetic, as upstream's int(C * n / d).
    ratios = ((1, 2), (2, 3), (3, 4), (4, 5))

    def __init__(self, dim: int, num_heads: int = 8, bias: bool = False) -> None:
        super().__init__(dim, num_heads, bias)
        self.attn_drop = nn.Dropout(0.0)
        self.attn1 = nn.Parameter(torch.tensor([0.2]))
        self.attn2 = nn.Parameter(torch.tensor([0.2]))
        self.attn3 = nn.Parameter(torch.tensor([0.2]))
        self.attn4 = nn.Parameter(torch.tensor([0.2]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self._heads(x)
        logits = q @ k.transpose(-2, -1)
        c = logits.shape[-1]
        counts = [c * num // den for num, den in self.ratios]
        ranked = torch.topk(logits, max(counts), dim=-1).values
        weights = (self.attn1, self.attn2, self.attn3, self.attn4)
        out = None
        for count, weight in zip(counts, weights):
            keep = logits >= ranked[..., count - 1 : count]
            attn = torch.softmax(logits.masked_fill(~keep, float("-inf")), dim=-1)
            term = (attn @ v) * weight
            out = term if out is None else out + term
        return self._merge(out, x)


class WindowAttention(nn.Module):
    """Multi-head self-attention between the pixels of non-overlapping square windows.

    q, k and v come from a 1x1 conv and a 3x3 depthwise conv, as in :class:`ChannelAttention`:
    the depthwise conv lets every pixel see its neighbours across a window border, the only
    cross-window path inside the block (no shifted windows, which need masks or rolls in the
    graph). Inputs whose size is not a multiple of ``window_size`` are zero-padded at the
    bottom/right and cropped back; inside a network that pads its input to a multiple of the
    window no Pad is traced.
    """

    def __init__(self, dim: int, num_heads: int = 1, window_size: int = 8, bias: bool = False) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"attention width {dim} is not divisible by {num_heads} heads")
        if window_size < 1:
            raise ValueError(f"window_size must be positive, got {window_size}")
        self.num_heads = num_heads
        self.window_size = window_size
        self.qkv = nn.Conv2d(dim, dim * 3, kernel_size=1, bias=bias)
        self.qkv_dwconv = nn.Conv2d(dim * 3, dim * 3, kernel_size=3, padding=1, groups=dim * 3, bias=bias)
        self.project_out = nn.Conv2d(dim, dim, kernel_size=1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        ws, heads = self.window_size, self.num_heads
        qkv = self.qkv_dwconv(self.qkv(pad_to_multiple(x, ws)))
        b, c3, hp, wp = qkv.shape
        c, nh, nw = c3 // 3, hp // ws, wp // ws
        # (B, 3*heads*d, H, W) -> (B*windows, 3*heads, ws*ws, d): one Transpose, then split q/k/v.
        tokens = qkv.reshape(b, 3 * heads, c // heads, nh, ws, nw, ws).permute(0, 3, 5, 1, 4, 6, 2)
        q, k, v = tokens.reshape(b * nh * nw, 3 * heads, ws * ws, c // heads).chunk(3, dim=1)
        out = F.scaled_dot_product_attention(q, k, v)
        out = out.reshape(b, nh, nw, heads, ws, ws, c // heads).permute(0, 3, 6, 1, 4, 2, 5)
        return self.project_out(out.reshape(b, c, hp, wp))[..., :h, :w]

    def extra_repr(self) -> str:
        return f"heads={self.num_heads}, window={self.window_size}"
