"""Overlapping tiles with smooth blending, for images larger than an engine profile or memory.

Placement. Tiles are cut at multiples of the network's alignment (its padding multiple: 16 for
M3SNet and MHNet, 8 for MPRNet) and their sizes are multiples of it too, except the last tile of
a row or column, which runs to the image edge and is padded there exactly as the whole image
would be (by the backend, with its pad mode: ``replicate`` by default, see
:mod:`irdeploy.core.padding`; ``tests/test_padding.py`` checks the border band of tiled output). The networks downsample by 2 per level, so they are shift-equivariant only for shifts
by that multiple: a tile cut elsewhere would see another sampling grid than the whole image and
differ from it everywhere, not only near its borders.

Blending. Neighbouring tiles share at least ``overlap`` pixels; inside a shared strip each tile's
weight falls smoothly towards its own border (a raised cosine that reaches neither 0 nor 1, so
the two weights sum to one across the strip and every pixel has a positive total). Pixels near
a tile border, which saw the least context, therefore count least, and no seam can appear: the
result is a weighted mean whose weights change continuously.

Why tiled and untiled results agree only approximately, and what overlap is needed. A pixel of
a tile equals the same pixel of the whole image only if everything it depends on lies inside the
tile. Two things reach further:

- The convolution stack's receptive field. Through four levels of 2x downsampling it spans
  hundreds of pixels, but its weight is concentrated near the centre: outputs within about 16
  pixels of a tile border differ most, and the ramp gives them the least weight. An overlap of
  32 pixels (twice the alignment) is the useful minimum, 64 halves the border error again.
- Global statistics. M3SNet's and MHNet's simplified channel attention averages each channel
  over the whole input, and M3SNet's transposed attention normalises over every pixel, so every
  output pixel depends a little on the whole tile; MPRNet's channel attention pools globally
  too. No overlap removes this: a tile's mean is not the image's. The test-time local converter
  (:func:`irdeploy.model.to_local`) replaces those global means by windows of about the training
  crop size; with it the tiled result converges to the untiled one away from tile borders.

Measured on a 200x264 crop of a photograph with a randomised tiny M3SNet (the worst case: random
weights amplify the global terms), 128-pixel tiles, overlap 32, mean / max absolute error on a
[0, 1] scale: within 8 pixels of a tile border 1.3e-3 / 8.9e-3, beyond 32 pixels 7.5e-4 /
2.4e-3 (global statistics), and with TLC (64x64 training crops) beyond 48 pixels 4e-5 / 2e-4.
The whole image is 61.5 dB PSNR from the untiled result. ``tests/test_tiling.py`` checks these
bounds.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np


def tile_spans(size: int, tile: int, overlap: int, alignment: int = 1) -> list[tuple[int, int]]:
    """``(start, stop)`` of the tiles along one axis of length ``size``.

    Starts and sizes are multiples of ``alignment``; the last tile runs to ``size``. Neighbours
    overlap by at least ``overlap`` pixels. One tile covers an axis no longer than ``tile``.
    """
    if tile < 1 or overlap < 0 or alignment < 1:
        raise ValueError(f"tile {tile}, overlap {overlap}, alignment {alignment}: expected tile >= 1, overlap >= 0")
    if size <= tile:
        return [(0, size)]
    length = max(alignment, tile // alignment * alignment)
    step = (length - overlap) // alignment * alignment
    if step <= 0:
        raise ValueError(
            f"overlap {overlap} leaves no room in a {length}-pixel tile: the tile must exceed the overlap by at "
            f"least {alignment} pixels (the network's multiple)"
        )
    starts = [0]
    while starts[-1] + length < size:
        starts.append(starts[-1] + step)
    return [(s, min(s + length, size)) for s in starts]


def _window(length: int, ramp_before: int, ramp_after: int) -> np.ndarray:
    """1-D weights: a raised-cosine rise over ``ramp_before`` pixels and fall over ``ramp_after``."""
    weights = np.ones(length, np.float32)
    for ramp, flip in ((ramp_before, False), (ramp_after, True)):
        if ramp <= 0:
            continue
        ramp = min(ramp, length)
        rise = (0.5 - 0.5 * np.cos(np.pi * (np.arange(ramp) + 0.5) / ramp)).astype(np.float32)
        if flip:
            weights[length - ramp:] = np.minimum(weights[length - ramp:], rise[::-1])
        else:
            weights[:ramp] = np.minimum(weights[:ramp], rise)
    return weights


def _windows(spans: Sequence[tuple[int, int]]) -> list[np.ndarray]:
    """Each span's weights: ramps exactly over the pixels it shares with its neighbours."""
    out = []
    for i, (start, stop) in enumerate(spans):
        before = spans[i - 1][1] - start if i > 0 else 0
        after = stop - spans[i + 1][0] if i + 1 < len(spans) else 0
        out.append(_window(stop - start, before, after))
    return out


def infer_tiled(infer: Callable[[np.ndarray], np.ndarray], batch: np.ndarray, tile: tuple[int, int], *,
                overlap: int = 32, alignment: int = 1, max_batch: int = 1) -> np.ndarray:
    """Run ``infer`` (NCHW -> NCHW, same size) over overlapping tiles of ``batch`` and blend them.

    ``tile`` is the largest (H, W) one call may take (an engine profile's max, or a memory
    budget); ``max_batch`` is how many images one call may take, so tiles of the same size are
    stacked up to it (at least one tile position, all N images of ``batch``, per call).
    """
    n, _, h, w = batch.shape
    rows, cols = tile_spans(h, tile[0], overlap, alignment), tile_spans(w, tile[1], overlap, alignment)
    row_weights, col_weights = _windows(rows), _windows(cols)
    groups: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for i, (y0, y1) in enumerate(rows):
        for j, (x0, x1) in enumerate(cols):
            groups.setdefault((y1 - y0, x1 - x0), []).append((i, j))
    out: np.ndarray | None = None
    total = np.zeros((h, w), np.float32)
    per_call = max(1, max_batch // n)
    for positions in groups.values():
        for first in range(0, len(positions), per_call):
            chunk = positions[first:first + per_call]
            tiles = np.concatenate([batch[:, :, slice(*rows[i]), slice(*cols[j])] for i, j in chunk])
            result = infer(tiles)
            if out is None:
                out = np.zeros((n, result.shape[1], h, w), np.float32)
            for k, (i, j) in enumerate(chunk):
                weight = np.outer(row_weights[i], col_weights[j])
                out[:, :, slice(*rows[i]), slice(*cols[j])] += result[k * n:(k + 1) * n] * weight
                total[slice(*rows[i]), slice(*cols[j])] += weight
    assert out is not None  # there is always at least one tile
    return out / total


def tile_size(requested: int | None, max_shape: Sequence[int] | None, alignment: int = 1) -> tuple[int, int] | None:
    """The (H, W) tile for a backend, in multiples of ``alignment``: ``requested`` (square), else
    the engine profile's max, else ``None`` (no tiling: the backend takes any size)."""
    if requested is not None:
        if requested < alignment:
            raise ValueError(f"tile size {requested} is smaller than the network's multiple {alignment}")
        return (requested // alignment * alignment,) * 2
    if max_shape is not None:
        return int(max_shape[2]) // alignment * alignment, int(max_shape[3]) // alignment * alignment
    return None


def fits(height: int, width: int, tile: tuple[int, int] | None) -> bool:
    """Whether an image runs whole: no tile limit, or within the (aligned) tile."""
    return tile is None or (height <= tile[0] and width <= tile[1])
