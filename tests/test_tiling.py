"""Tiling: placement, blending, and agreement with the untiled result on a real photograph."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import tiny_model

from irdeploy.core.images import psnr, read_image, sample_path, to_batch
from irdeploy.model import to_local
from irdeploy.export.torch_backend import TorchBackend
from irdeploy.runtime.tiling import fits, infer_tiled, tile_size, tile_spans


@pytest.mark.parametrize("size", [1, 15, 64, 65, 200, 263])
@pytest.mark.parametrize(("tile", "overlap", "alignment"), [(64, 16, 16), (100, 32, 16), (48, 8, 8), (7, 2, 1)])
def test_spans_cover_the_axis_on_the_grid(size: int, tile: int, overlap: int, alignment: int) -> None:
    spans = tile_spans(size, tile, overlap, alignment)
    assert spans[0][0] == 0 and spans[-1][1] == size
    for (a0, a1), (b0, b1) in zip(spans, spans[1:]):
        assert a1 - b0 >= overlap and b0 > a0  # neighbours share at least the overlap, and progress
    for start, stop in spans:
        assert start % alignment == 0 and stop - start <= max(tile, alignment)
        assert (stop - start) % alignment == 0 or stop == size


def test_bad_tiles_are_one_line() -> None:
    with pytest.raises(ValueError, match="leaves no room"):
        tile_spans(100, 32, 32, 16)
    with pytest.raises(ValueError, match="smaller than the network's multiple"):
        tile_size(8, None, 16)
    assert tile_size(100, None, 16) == (96, 96) and tile_size(None, (1, 3, 1088, 1920), 16) == (1088, 1920)
    assert tile_size(None, None, 16) is None and fits(5000, 5000, None) and not fits(97, 10, (96, 96))


def test_blending_is_a_partition_of_unity() -> None:
    x = np.random.default_rng(0).random((2, 3, 83, 141), dtype=np.float32)
    calls = []

    def identity(batch: np.ndarray) -> np.ndarray:
        calls.append(batch.shape)
        return batch

    out = infer_tiled(identity, x, (32, 48), overlap=8, alignment=8, max_batch=6)
    assert np.abs(out - x).max() < 1e-6
    assert all(shape[0] <= 6 and shape[2] <= 32 and shape[3] <= 48 for shape in calls)


def test_local_operator_is_exact_away_from_tile_borders() -> None:
    """A 3x3 mean filter sees one pixel around each output: tiling it is exact wherever the
    tile holds that pixel, i.e. everywhere but the single rows/columns at interior tile cuts."""
    x = np.random.default_rng(1).random((1, 1, 90, 120), dtype=np.float32)

    def box(batch: np.ndarray) -> np.ndarray:
        padded = np.pad(batch, ((0, 0), (0, 0), (1, 1), (1, 1)))
        h, w = batch.shape[-2:]
        return sum(padded[..., i:i + h, j:j + w] for i in range(3) for j in range(3)) / 9

    tiled = infer_tiled(box, x, (48, 48), overlap=16, alignment=16)
    exact = box(x)
    cuts_y = {e for s, t in tile_spans(90, 48, 16, 16) for e in (s, t)} - {0, 90}
    cuts_x = {e for s, t in tile_spans(120, 48, 16, 16) for e in (s, t)} - {0, 120}
    near = np.zeros((90, 120), bool)
    for c in cuts_y:
        near[max(c - 1, 0):c + 1] = True
    for c in cuts_x:
        near[:, max(c - 1, 0):c + 1] = True
    diff = np.abs(tiled - exact)[0, 0]
    assert diff[~near].max() < 1e-6
    assert diff[near].max() > 1e-3  # the cut pixels do differ: the check above can fail


def _distance_to_cuts(h: int, w: int, tile: int, overlap: int) -> np.ndarray:
    def axis(n: int) -> np.ndarray:
        cuts = [e for s, t in tile_spans(n, tile, overlap, 16) for e in (s, t) if 0 < e < n]
        return np.min(np.abs(np.arange(n)[:, None] - np.array(cuts)[None]), axis=1)

    return np.minimum(axis(h)[:, None], axis(w)[None, :])


@pytest.mark.parametrize("tlc", [False, True])
def test_tiled_photo_matches_untiled_away_from_borders(tlc: bool) -> None:
    """Bounds from the measurements in irdeploy.runtime.tiling's docstring, with margin."""
    model = tiny_model("m3snet")
    if tlc:
        to_local(model, train_size=(1, 3, 64, 64))
    x = to_batch(read_image(sample_path())[:200, :264])
    with TorchBackend(model) as backend:
        whole = backend.infer(x)
        tiled = infer_tiled(backend.infer, x, (128, 128), overlap=32, alignment=backend.alignment, max_batch=4)
    err = np.abs(tiled - whole)[0].max(0)
    distance = _distance_to_cuts(200, 264, 128, 32)
    assert psnr(tiled, whole) > 55
    assert err.max() < 0.03  # at the cuts: below 8 levels of 255
    assert err[distance >= 32].max() < 6e-3
    if tlc:  # global statistics replaced by local windows: converges away from the cuts
        assert err[distance >= 48].max() < 1e-3 and err[distance >= 48].mean() < 2e-4
