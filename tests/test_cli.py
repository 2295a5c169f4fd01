"""The command line end to end, in subprocesses, as a user runs it."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from irdeploy.model import create, save_checkpoint
from irdeploy.export.images import read_image, sample_path


def _run(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "irdeploy", *args], capture_output=True, text=True, cwd=cwd, timeout=600)


def test_models_lists_presets() -> None:
    result = _run("models")
    assert result.returncode == 0, result.stderr
    for name in ("m3snet-32", "m3snet-64", "mprnet-deblur", "mprnet-derain", "mprnet-denoise", "mhnet"):
        assert name in result.stdout
    assert "20.13 M" in result.stdout  # MPRNet deblurring: 20.1 M parameters as published


def test_models_stats_counts_macs() -> None:
    result = _run("models", "--stats")
    assert result.returncode == 0, result.stderr
    line = next(l for l in result.stdout.splitlines() if l.startswith("mprnet-deblur"))
    assert "759.7" in line  # the paper quotes about 777 G(MAC) at 256x256 for this configuration


def test_quickstart_restores_a_real_photo(tmp_path) -> None:
    result = _run("quickstart", "--out", str(tmp_path), "--threads", "2")
    assert result.returncode == 0, result.stderr
    assert "untrained weights" in result.stdout and "chelsea.png 451x300" in result.stdout
    restored = read_image(tmp_path / "chelsea_restored.png")
    assert restored.shape == read_image(sample_path()).shape
    assert (tmp_path / "m3snet-32-untrained.pth").is_file()


def test_quickstart_with_a_checkpoint(tmp_path) -> None:
    """A zero network returns its input, so the "restored" image must equal the blurred one."""
    with torch.device("meta"):
        shapes = create("m3snet-32").state_dict()
    ck = tmp_path / "zero.pth"
    torch.save({"epoch": 1, "state_dict": {f"module.{k}": torch.zeros(v.shape) for k, v in shapes.items()}}, ck)
    out = tmp_path / "out"
    result = _run("quickstart", "--out", str(out), "--checkpoint", str(ck), "--image", str(sample_path("coffee.png")))
    assert result.returncode == 0, result.stderr
    assert "untrained" not in result.stdout and f"checkpoint  {ck}" in result.stdout
    assert np.array_equal(read_image(out / "coffee_restored.png"), read_image(out / "coffee_blurred.png"))


def test_checkpoint_that_does_not_fit_is_one_line(tmp_path) -> None:
    ck = save_checkpoint(create("m3snet", width=8, enc_blk_nums=[1, 1, 1, 1]), tmp_path / "small.pth")
    result = _run("quickstart", "--out", str(tmp_path / "out"), "--checkpoint", str(ck))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "does not fit m3snet-32" in result.stderr
    assert not (tmp_path / "out" / "chelsea_restored.png").exists()


def test_bad_checkpoint_is_one_line(tmp_path) -> None:
    bad = tmp_path / "bad.pth"
    bad.write_text("garbage")
    result = _run("quickstart", "--out", str(tmp_path), "--checkpoint", str(bad))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"irdeploy quickstart: error: {bad}: not a readable PyTorch checkpoint")


@pytest.mark.parametrize("name", ["chelsea.png", "coffee.png"])
def test_samples_are_real_photographs(name: str) -> None:
    image = read_image(sample_path(name))
    assert image.shape[0] >= 300 and image.shape[-1] == 3
    assert 0.05 < float(np.std(image)) < 0.5
