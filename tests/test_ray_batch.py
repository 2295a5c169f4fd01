"""The Ray Data adapter: ``map_batches(RestoreBatch, ...)`` over real photographs, Ray local on CPU."""

from __future__ import annotations

import numpy as np
import pytest

from irdeploy.core.images import read_image, sample_path, to_batch
from irdeploy.core.ort_backend import OnnxRuntimeBackend
from irdeploy.runtime.batch_ray import RestoreBatch
from irdeploy.runtime.serving.pixels import to_float, to_uint8

# Crops of the shipped photographs in three sizes (two share one), as read_images would give them.
PHOTOS = [read_image(sample_path(name)) for name in ("chelsea.png", "coffee.png")]
CROPS = [to_uint8(PHOTOS[0][:72, :100]), to_uint8(PHOTOS[1][:64, :48]), to_uint8(PHOTOS[1][64:136, 100:200]),
         to_uint8(PHOTOS[0][100:150, 200:250])]


@pytest.fixture(scope="module")
def graph(tiny_onnx):
    return tiny_onnx("m3snet")[0]


@pytest.fixture(scope="module")
def expected(graph):
    """Each crop restored alone by the same graph, rounded to 8 bits."""
    with OnnxRuntimeBackend(graph, providers=["CPUExecutionProvider"], threads=1) as backend:
        return [to_uint8(backend.infer(to_batch(to_float(c)))[0].transpose(1, 2, 0)) for c in CROPS]


def _close(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal up to one 8-bit level (float rounding in another batch composition)."""
    return a.shape == b.shape and int(np.abs(a.astype(np.int16) - b).max()) <= 1


def test_adapter_splits_a_batch_by_size_and_keeps_columns(graph, expected):
    adapter = RestoreBatch(graph, threads=1, batch_size=2)
    names = np.array([f"crop{i}.png" for i in range(len(CROPS))])
    column = np.empty(len(CROPS), dtype=object)
    column[:] = CROPS
    out = adapter({"image": column, "path": names})
    assert list(out["path"]) == list(names) and out["image"] is column
    assert all(_close(r, e) and r.dtype == np.uint8 for r, e in zip(out["restored"], expected))

    floats = adapter({"image": np.stack([to_float(CROPS[0])] * 3)})["restored"]  # one size: a plain array back
    assert floats.dtype == np.float32 and floats.shape == (3, *CROPS[0].shape)
    assert _close(to_uint8(floats[2]), expected[0])

    with pytest.raises(ValueError, match="no column 'image' \\(columns: pixels\\)"):
        adapter({"pixels": column})
    with pytest.raises(ValueError, match="expected HxWxC"):
        adapter({"image": np.zeros((2, 16, 16), np.uint8)})


def test_ray_data_map_batches_on_a_local_cluster(graph, expected):
    ray = pytest.importorskip("ray", reason="ray is not installed (pip install \"irdeploy[serve]\")")
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        data = ray.data.from_items([{"image": c, "index": i} for i, c in enumerate(CROPS)], override_num_blocks=1)
        restored = data.map_batches(RestoreBatch, fn_constructor_kwargs={"artifact": str(graph), "threads": 1},
                                    batch_size=len(CROPS), concurrency=1, num_cpus=1, batch_format="numpy")
        rows = sorted(restored.take_all(), key=lambda row: row["index"])
    finally:
        ray.shutdown()
    assert [row["index"] for row in rows] == list(range(len(CROPS)))
    for row, want in zip(rows, expected):
        assert _close(np.asarray(row["restored"]), want)
