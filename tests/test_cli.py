"""The command line end to end, in subprocesses, as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from irdeploy.model import create, load_model, save_checkpoint
from irdeploy.core.images import SAMPLES, read_image, sample_path


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


def _report(out) -> dict:
    return json.loads((out / "report.json").read_text())


def test_quickstart_writes_the_whole_report(tmp_path) -> None:
    """The README's first command: bundled weights restore a held-out photograph through ONNX
    Runtime, and every artifact of the report is a real file."""
    out = tmp_path / "qs"
    result = _run("quickstart", "--out", str(out), "--threads", "2", "--quiet")
    assert result.returncode == 0, result.stderr
    assert "not the paper's model" in result.stdout and f"report      {out / 'report.md'}" in result.stdout
    report = _report(out)
    images = {i["image"]: i for i in report["images"]}
    assert set(images) == {"astronaut", "chelsea", "coffee", "rocket"} and images["coffee"]["split"] == "held out"
    held_out = images["coffee"]
    assert held_out["psnr_restored"] > held_out["psnr_blurred"] + 1.0  # the bundled checkpoint restores
    assert report["parity_psnr"] >= 80 and abs(report["delta_psnr"]) < 0.01
    assert set(report["latency_ms"]) == {"torch", "ort"} == set(report["latency_p10_p90"]) and report["threads"] == 2
    low, high = report["speedup_interval"]  # the headline speed-up carries its interval (#17, section 4)
    assert low <= high and "speed-up    ONNX Runtime" in result.stdout and f"(p10-p90 {low:.2f}-{high:.2f}x)" in result.stdout
    for name in images:
        strip = read_image(out / "strips" / f"{name}.png")
        restored = read_image(out / "restored" / f"{name}.png")
        assert strip.shape[1] == 3 * restored.shape[1] + 16 and strip.shape[0] == restored.shape[0]
    from PIL import Image

    with Image.open(out / "bench" / "results.png") as chart:
        assert chart.size[0] > 600 and chart.format == "PNG"
    assert (out / "m3snet.onnx").is_file() and (out / "eval.json").is_file()
    assert "| coffee" in (out / "report.md").read_text().replace("[", "").replace("](strips/coffee.png)", "")


def test_quickstart_trains_when_asked(tmp_path) -> None:
    """--train-seconds: the bundled recipe, from scratch, on crops of the training photographs only."""
    from irdeploy.runtime import quickstart

    photos, _ = quickstart._photos(tmp_path)
    checkpoint = quickstart._train(tmp_path, photos, 3.0, quickstart.bundled_recipe(), threads=2, progress=False)
    assert checkpoint == tmp_path / "train" / "run" / "last.pth"
    recipe = quickstart.bundled_recipe()
    load_model(recipe["model"], checkpoint, **recipe["args"])  # the upstream layout, strictly
    crops = sorted(p.name for p in (tmp_path / "train" / "pairs" / "input").iterdir())
    assert len(crops) == 3 * recipe["train"]["crops"] and not any(c.startswith("coffee") for c in crops)


def test_quickstart_with_a_checkpoint(tmp_path) -> None:
    """With its output conv zeroed, M3SNet returns its input (global residual), so "restored"
    must equal "blurred" while every other weight is random (no degenerate all-zero graph)."""
    from irdeploy.model.init import randomize_constants
    from irdeploy.model.train import zero_residual_convs

    kwargs = {"width": 8, "enc_blk_nums": [1, 1, 1, 1]}
    model = randomize_constants(create("m3snet", **kwargs), seed=0)
    assert zero_residual_convs(model)
    ck = save_checkpoint(model, tmp_path / "identity.pth")
    out = tmp_path / "out"
    result = _run("quickstart", "--out", str(out), "--checkpoint", str(ck), "--model", "m3snet", "--arg", "width=8",
                  "--arg", "enc_blk_nums=[1,1,1,1]", "--quiet")
    assert result.returncode == 0, result.stderr
    assert _report(out)["weights"] == "your checkpoint"
    for name in ("coffee", "rocket"):
        assert np.array_equal(read_image(out / "restored" / f"{name}.png"), read_image(out / "data" / "input" / f"{name}.png"))


def test_checkpoint_that_does_not_fit_is_one_line(tmp_path) -> None:
    """A named model and weights of another width (without --model the architecture would be
    detected from the checkpoint and the run would go ahead)."""
    ck = save_checkpoint(create("m3snet", width=8, enc_blk_nums=[1, 1, 1, 1]), tmp_path / "small.pth")
    result = _run("quickstart", "--out", str(tmp_path / "out"), "--model", "m3snet-32", "--checkpoint", str(ck))
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if not line.startswith("irdeploy: ")]  # not progress lines
    assert len(errors) == 1 and "does not fit m3snet-32" in errors[0], result.stderr
    assert not (tmp_path / "out" / "restored").exists() and not (tmp_path / "out" / "report.json").exists()


def test_bad_checkpoint_is_one_line(tmp_path) -> None:
    bad = tmp_path / "bad.pth"
    bad.write_text("garbage")
    result = _run("quickstart", "--out", str(tmp_path), "--checkpoint", str(bad))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"irdeploy quickstart: error: {bad}: not a readable PyTorch checkpoint")


@pytest.mark.parametrize("name", SAMPLES)
def test_samples_are_real_photographs(name: str) -> None:
    image = read_image(sample_path(name))
    assert image.shape[0] >= 300 and image.shape[-1] == 3
    assert 0.05 < float(np.std(image)) < 0.5


def test_quickstart_model_without_checkpoint_is_one_line(tmp_path) -> None:
    result = _run("quickstart", "--out", str(tmp_path / "out"), "--model", "m3snet-32")
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "give both" in result.stderr
    assert not (tmp_path / "out").exists()
