"""The border band of an unaligned photograph: no line left by the padding (issue #17, section 1).

The quickstart checkpoint on chelsea.png (451x300: 13 columns and 4 rows of padding to a
multiple of 16), through the runtime's torch backend with its default pad mode, whole and in
tiles whose last column and row run to the image edge: no column or row of the last 16 is worse
than BAND_LIMIT times the interior's error. Upstream's zeros fail the same check (measured 11x,
``benchmarks/results/pad_modes-*``), so the test can tell the two apart.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from irdeploy.core.images import read_image, sample_path
from irdeploy.core.padding import INFERENCE_PAD_MODE, pad_batch
from irdeploy.model import load_model
from irdeploy.model.degrade import motion_blur
from irdeploy.export.torch_backend import TorchBackend
from irdeploy.runtime.metrics import border_band
from irdeploy.runtime.quickstart import _bundled_checkpoint, bundled_recipe
from irdeploy.runtime.tiling import infer_tiled

BAND_LIMIT = 2.0  # measured with replicate: 0.59 on chelsea, 1.49 on coffee; zeros: 11.0 and 6.5


@pytest.fixture(scope="module")
def photo():
    torch.set_num_threads(2)
    recipe = bundled_recipe()
    model = load_model(recipe["model"], _bundled_checkpoint(recipe), **recipe["args"]).eval()
    target = read_image(sample_path("chelsea.png"))
    assert target.shape[0] % model.pad_multiple and target.shape[1] % model.pad_multiple, "must be unaligned"
    return model, motion_blur(target, 9), target


def _restore(backend, image, tile=None):
    batch = np.ascontiguousarray(image.transpose(2, 0, 1)[None])
    out = backend.infer(batch) if tile is None else infer_tiled(backend.infer, batch, (tile, tile), overlap=32,
                                                                 alignment=backend.alignment)
    return out[0].transpose(1, 2, 0)


def test_default_padding_leaves_no_border_line(photo) -> None:
    model, blurred, target = photo
    with TorchBackend(model) as backend:
        assert backend.pad_mode == INFERENCE_PAD_MODE == "replicate"
        whole = border_band(_restore(backend, blurred), target)
        tiled = border_band(_restore(backend, blurred, tile=208), target)  # 3 x 2 tiles, edge tiles padded
    assert whole["ratio"] < BAND_LIMIT, whole
    assert tiled["ratio"] < BAND_LIMIT, tiled


def test_upstream_zero_padding_is_selectable_and_leaves_the_line(photo) -> None:
    model, blurred, target = photo
    with TorchBackend(model, pad_mode="constant") as backend:
        zeros = border_band(_restore(backend, blurred), target)
    assert zeros["ratio"] > 3 * BAND_LIMIT and zeros["worst_col_at"] == 446, zeros
    # the network's own pad is upstream's zeros: the runtime's constant pad is the same computation
    x = torch.from_numpy(np.ascontiguousarray(blurred.transpose(2, 0, 1)[None]))
    with torch.inference_mode():
        upstream = model(x)[0].numpy().transpose(1, 2, 0)
    assert np.abs(upstream - _restore(TorchBackend(model, pad_mode="constant"), blurred)).max() < 1e-5


def test_pad_modes() -> None:
    x = np.arange(2 * 3 * 5 * 6, dtype=np.float32).reshape(2, 3, 5, 6)
    for mode, expected in (("replicate", x[..., -1:]), ("constant", 0 * x[..., -1:]), ("reflect", x[..., -2:-1])):
        padded = pad_batch(x, 8, mode)
        assert padded.shape == (2, 3, 8, 8) and np.array_equal(padded[..., :5, :6], x)
        assert np.array_equal(padded[..., :5, 6:7], expected), mode
    assert pad_batch(x[..., :1, :1], 16, "replicate").shape[-2:] == (16, 16)  # no minimum side, unlike reflect
    with pytest.raises(ValueError, match="too small"):
        pad_batch(x[..., :1, :1], 16, "reflect")


def test_graphs_record_the_default_and_runtimes_can_override_it(tiny_onnx) -> None:
    from irdeploy.runtime.artifacts import open_backend

    path, model = tiny_onnx("m3snet")
    with open_backend("ort", onnx=str(path)) as recorded, open_backend("ort", onnx=str(path), pad_mode="constant") as zeros:
        assert recorded.pad_mode == INFERENCE_PAD_MODE and zeros.pad_mode == "constant"
        x = np.random.default_rng(0).random((1, 3, 37, 29), dtype=np.float32)
        with TorchBackend(model, pad_mode="constant") as upstream:  # the network's own zeros, padded first
            assert np.abs(zeros.infer(x) - upstream.infer(x)).max() < 1e-4
    with pytest.raises(ValueError, match="unknown pad mode"):
        open_backend("ort", onnx=str(path), pad_mode="wrap")
