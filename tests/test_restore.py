"""``irdeploy restore`` end to end through the CLI, and open_backend's on-the-fly export cache."""

from __future__ import annotations

import os

import numpy as np
import pytest
from conftest import TINY, tiny_model

from irdeploy.core.images import load_image, read_image, sample_path, to_batch, write_image
from irdeploy.core.fileio import sha256_file as sha256
from irdeploy.model import save_checkpoint
from irdeploy.runtime.artifacts import onnx_cache_key, open_backend
from irdeploy.export.torch_backend import TorchBackend
from irdeploy.runtime.cli import main
from irdeploy.runtime.tensorrt import NoGPUError

TINY_ARGS = ["--model", "m3snet", "--arg", "width=8", "--arg", "enc_blk_nums=[1,1,1,1]"]


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """A tiny randomised M3SNet checkpoint and an ONNX cache made from it by open_backend (one export)."""
    root = tmp_path_factory.mktemp("restore")
    model = tiny_model("m3snet")
    checkpoint = save_checkpoint(model, root / "tiny.pth")
    cache = root / "cache"
    first = open_backend("ort", model="m3snet", model_args=TINY["m3snet"], checkpoint=str(checkpoint), cache_dir=str(cache))
    return checkpoint, cache, model, first


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Real photographs in every layout restore handles, plus files that must fail."""
    folder = tmp_path_factory.mktemp("inputs")
    photo = read_image(sample_path())
    write_image(folder / "odd.png", photo[:77, :101])
    write_image(folder / "gray16.png", photo[:64, :80].mean(-1), bit_depth=16)
    write_image(folder / "rgba.png", photo[:64, :80], alpha=np.linspace(0, 1, 80, dtype=np.float32)[None].repeat(64, 0))
    write_image(folder / "photo.jpg", photo[100:164, 100:180])
    (folder / "sub").mkdir()
    write_image(folder / "sub" / "small.bmp", photo[:48, :48])
    write_image(folder / "deep.tif", photo[:64, :80], bit_depth=16)
    (folder / "junk.png").write_bytes(b"not an image at all")
    data = sample_path().read_bytes()
    (folder / "truncated.png").write_bytes(data[: len(data) // 2])
    return folder


def test_open_backend_caches_the_export(weights) -> None:
    checkpoint, cache, _, first = weights
    assert first.artifact.kind == "onnx" and not first.artifact.cached and first.artifact.seconds > 0
    mtime = os.stat(first.artifact.path).st_mtime_ns
    second = open_backend("ort", model="m3snet", model_args=TINY["m3snet"], checkpoint=str(checkpoint), cache_dir=str(cache))
    assert second.artifact.cached and second.artifact.path == first.artifact.path
    assert os.stat(second.artifact.path).st_mtime_ns == mtime
    x = np.random.default_rng(0).random((1, 3, 40, 56), dtype=np.float32)
    assert np.abs(first.infer(x) - second.infer(x)).max() == 0
    # Other weights, arguments or precision: another key, so a miss (checked without exporting again).
    key = onnx_cache_key("m3snet", TINY["m3snet"], sha256(checkpoint), "fp32")
    assert key[:20] in first.artifact.path.name
    other = save_checkpoint(tiny_model("m3snet", seed=1), checkpoint.with_name("other.pth"))
    assert onnx_cache_key("m3snet", TINY["m3snet"], sha256(other), "fp32") != key
    assert onnx_cache_key("m3snet", TINY["m3snet"], sha256(checkpoint), "fp16") != key
    assert onnx_cache_key("m3snet", {**TINY["m3snet"], "width": 16}, sha256(checkpoint), "fp32") != key


def test_open_backend_errors(tmp_path, weights) -> None:
    checkpoint = str(weights[0])
    with pytest.raises(NoGPUError):  # before any export: the cache stays empty
        open_backend("trt", model="m3snet", model_args=TINY["m3snet"], checkpoint=checkpoint, cache_dir=str(tmp_path))
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="unknown backend"):
        open_backend("tensorflow", model="m3snet")
    with pytest.raises(ValueError, match="not an ONNX file or engine"):
        open_backend("torch", onnx="x.onnx")
    with pytest.raises(ValueError, match="needs --onnx, or --model"):
        open_backend("ort")
    with pytest.raises(ValueError, match="unknown model"):
        open_backend("ort", model="resnet", checkpoint=checkpoint, cache_dir=str(tmp_path))


def test_restore_ort_end_to_end(tmp_path, weights, inputs, capsys) -> None:
    checkpoint, cache, model, _ = weights
    out = tmp_path / "out"
    code = main(["restore", str(inputs), "-o", str(out), "--backend", "ort", *TINY_ARGS, "--checkpoint", str(checkpoint),
                 "--cache-dir", str(cache), "--batch", "2", "--threads", "2"])
    captured = capsys.readouterr()
    assert code == 1  # two inputs are broken
    assert "onnx from the cache" in captured.err
    assert "failed" in captured.out and "junk.png" in captured.out and "truncated.png" in captured.out
    assert "restored 6 image(s)" in captured.out and "images/s" in captured.out
    assert "grayscale inputs are converted" in captured.out
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert written == ["deep.png", "gray16.png", "odd.png", "photo.png", "rgba.png", "sub/small.png"]
    gray = load_image(out / "gray16.png")
    assert gray.bit_depth == 16 and gray.pixels.shape == (64, 80, 1)
    deep = load_image(out / "deep.png")
    assert deep.bit_depth == 16 and deep.pixels.shape == (64, 80, 3)
    rgba = load_image(out / "rgba.png")
    assert np.array_equal(rgba.alpha, load_image(inputs / "rgba.png").alpha)  # alpha reattached untouched
    odd = load_image(out / "odd.png").pixels
    with TorchBackend(model) as eager:
        expected = eager.infer(to_batch(read_image(inputs / "odd.png")))[0].transpose(1, 2, 0)
    assert odd.shape == (77, 101, 3)
    assert np.abs(odd - np.clip(expected, 0, 1)).max() <= 1 / 255 + 1e-6


def test_restore_torch_tiles_skips_and_overwrites(tmp_path, weights, inputs, capsys) -> None:
    checkpoint, _, model, _ = weights
    out = tmp_path / "out"
    photo = inputs / "odd.png"
    args = ["restore", str(photo), str(inputs / "*.jpg"), "-o", str(out), "--backend", "torch", *TINY_ARGS,
            "--checkpoint", str(checkpoint), "--tile", "48", "--overlap", "16", "--format", "tiff"]
    assert main(args) == 0
    assert "2 in tiles" in capsys.readouterr().out
    tiled = load_image(out / "odd.tiff").pixels
    with TorchBackend(model) as eager:
        whole = np.clip(eager.infer(to_batch(read_image(photo)))[0].transpose(1, 2, 0), 0, 1)
    assert np.abs(tiled - whole).mean() < 5e-3  # tiling agreement is measured closely in test_tiling
    mtime = os.stat(out / "odd.tiff").st_mtime_ns
    assert main(args) == 0
    assert "skipped" in capsys.readouterr().out and os.stat(out / "odd.tiff").st_mtime_ns == mtime
    assert main([*args, "--overwrite"]) == 0
    assert "0 skipped" in capsys.readouterr().out and os.stat(out / "odd.tiff").st_mtime_ns != mtime


def test_restore_batches_equal_single_images(tmp_path, weights) -> None:
    checkpoint, cache, _, _ = weights
    folder = tmp_path / "same"
    folder.mkdir()
    for i, name in enumerate(("chelsea.png", "coffee.png")):
        write_image(folder / f"{i}.png", read_image(sample_path(name))[:64, :96])
    runs = {}
    for batch in ("1", "2"):
        assert main(["restore", str(folder), "-o", str(tmp_path / batch), "--onnx", str(weights[3].artifact.path),
                     "--batch", batch, "--quiet"]) == 0
        runs[batch] = [load_image(tmp_path / batch / f"{i}.png").pixels for i in range(2)]
    for a, b in zip(runs["1"], runs["2"]):
        assert np.abs(a - b).max() <= 1 / 255 + 1e-6


def test_restore_bad_arguments_are_one_line(tmp_path, weights, capsys) -> None:
    onnx = str(weights[3].artifact.path)
    assert main(["restore", str(tmp_path / "nothing-*.png"), "-o", str(tmp_path / "o"), "--onnx", onnx]) == 1
    assert "no such file or folder" in capsys.readouterr().out
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["restore", str(empty), "-o", str(tmp_path / "o"), "--onnx", onnx]) == 2
    assert main(["restore", str(sample_path()), "-o", str(tmp_path / "o"), "--onnx", onnx, "--format", "gif"]) == 2
    assert main(["restore", str(sample_path()), "-o", str(tmp_path / "o"), "--engine", str(tmp_path / "x.engine")]) == 2
    err = capsys.readouterr().err
    assert "no images" in err and "unknown output format" in err and "x.engine" in err
    assert all(line.startswith("irdeploy restore: error:") for line in err.strip().splitlines())
