"""Paired folders, training batches, losses, schedule, and short real training runs on CPU."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from conftest import TINY, tiny_model

import irdeploy.model.train as train_module
from irdeploy.core.images import psnr, read_image, sample_path, write_image
from irdeploy.core.pairs import PairingError, find_pairs
from irdeploy.model import CheckpointError, load_model
from irdeploy.model.data import PairedCrops, step_keys
from irdeploy.model.degrade import degrade_folder
from irdeploy.model.train import (
    TrainConfig, charbonnier, edge_loss, laplacian_detail, learning_rate, restoration_loss, train, zero_residual_convs,
)
from irdeploy.runtime.cli import main

TINY_M3SNET = TINY["m3snet"]


@pytest.fixture(scope="module")
def blur_data(tmp_path_factory):
    """8 training pairs (64x64 crops of both photographs) and 2 validation pairs, motion-blurred."""
    root = tmp_path_factory.mktemp("blur")
    clean = root / "clean"
    clean.mkdir()
    for name in ("chelsea.png", "coffee.png"):
        shutil.copy(sample_path(name), clean / name)
    degrade_folder(clean, root / "train", "blur", seed=0, crops=4, size=64)
    degrade_folder(clean, root / "val", "blur", seed=1, crops=1, size=64)
    return root


def _config(data, out, **overrides) -> TrainConfig:
    settings = dict(model="m3snet", model_args=dict(TINY_M3SNET), data=str(data / "train"), out=str(out), iters=10,
                    batch=2, crop=48, threads=1, log_every=2, progress=False)
    settings.update(overrides)
    return TrainConfig(**settings)


# --- paired folders -------------------------------------------------------------------------

def _pair_dir(root, inputs, targets):
    for sub, files in (("input", inputs), ("target", targets)):
        (root / sub).mkdir(parents=True)
        for name, (h, w) in files.items():
            write_image(root / sub / name, np.full((h, w, 3), 0.5, np.float32))
    return root


def test_find_pairs_pairs_by_name_across_formats(tmp_path):
    root = _pair_dir(tmp_path, {"b.jpg": (8, 9), "a.png": (10, 12)}, {"a.png": (10, 12), "b.png": (8, 9)})
    (root / "input" / "notes.txt").write_text("not an image")
    pairs = find_pairs(root)
    assert [(p.name, p.input.name, p.target.name, p.height, p.width) for p in pairs] == [
        ("a", "a.png", "a.png", 10, 12), ("b", "b.jpg", "b.png", 8, 9)]
    assert [p.name for p in find_pairs(root, limit=1)] == ["a"]


@pytest.mark.parametrize("inputs, targets, message", [
    ({"a.png": (8, 8), "b.png": (8, 8)}, {"a.png": (8, 8), "c.png": (8, 8)},
     r"unpaired files: 1 file\(s\) in input/ without a partner: b.png; 1 file\(s\) in target/ without a partner: c.png"),
    ({"a.png": (8, 8)}, {"a.png": (8, 10)}, r"1 pair\(s\) differ in size: a \(input 8x8, target 10x8\)"),
    ({"a.png": (8, 8), "a.jpg": (8, 8)}, {"a.png": (8, 8)}, r"a.jpg and a.png share a name"),
])
def test_find_pairs_names_every_problem(tmp_path, inputs, targets, message):
    with pytest.raises(PairingError, match=message):
        find_pairs(_pair_dir(tmp_path, inputs, targets))


def test_find_pairs_layout_errors(tmp_path):
    with pytest.raises(PairingError, match="no such folder"):
        find_pairs(tmp_path / "missing")
    (tmp_path / "input").mkdir()
    with pytest.raises(PairingError, match=r"no target/ subfolder; expected input/ \(degraded\) and target/"):
        find_pairs(tmp_path)
    (tmp_path / "target").mkdir()
    with pytest.raises(PairingError, match="input: no images"):
        find_pairs(tmp_path)
    (tmp_path / "input" / "x.png").write_bytes(b"not a png")
    (tmp_path / "target" / "x.png").write_bytes(b"not a png")
    with pytest.raises(PairingError, match="x.png: cannot read image"):
        find_pairs(tmp_path)


# --- crops and batches ----------------------------------------------------------------------

def test_crops_take_the_same_window_of_both_images(tmp_path):
    photo = read_image(sample_path())[:100, :120]
    root = tmp_path / "data"
    for sub, image in (("input", photo[..., ::-1]), ("target", photo)):  # input = target with channels swapped
        (root / sub).mkdir(parents=True)
        write_image(root / sub / "p.png", image)
    data = PairedCrops.from_folder(root, 32)
    seen = set()
    for seed in range(12):
        a, b = data[(0, seed)]
        assert a.shape == b.shape == (3, 32, 32) and a.dtype == np.float32
        np.testing.assert_array_equal(a, b[::-1])
        again = data[(0, seed)]
        np.testing.assert_array_equal(again[1], b)
        seen.add(b.tobytes())
    assert len(seen) == 12  # different windows and flips
    with pytest.raises(ValueError, match=r"smaller than the 128x128 crop: p \(120x100\)"):
        PairedCrops.from_folder(root, 128)


def test_step_keys_depend_only_on_seed_and_step():
    assert step_keys(10, 4, seed=1, step=5) == step_keys(10, 4, seed=1, step=5)
    assert step_keys(10, 4, seed=1, step=5) != step_keys(10, 4, seed=1, step=6)
    assert all(0 <= i < 10 for i, _ in step_keys(10, 64, seed=0, step=0))


# --- losses and schedule --------------------------------------------------------------------

def test_losses():
    x = torch.rand(2, 3, 32, 32)
    assert charbonnier(x, x).item() == pytest.approx(1e-3)
    assert charbonnier(x, x + 0.25).item() == pytest.approx(np.sqrt(0.25**2 + 1e-6), rel=1e-5)
    # A constant offset has no detail: the Laplacian level of an offset image is unchanged inside.
    inner = (slice(None), slice(None), slice(4, -4), slice(4, -4))
    torch.testing.assert_close(laplacian_detail(x + 0.1)[inner], laplacian_detail(x)[inner], atol=1e-5, rtol=0)
    assert edge_loss(x, x).item() == pytest.approx(1e-3)
    # MPRNet's three outputs each count, as its training scripts sum them.
    y = torch.rand(2, 3, 32, 32)
    single = restoration_loss(x, y, edge_weight=0.05)
    assert restoration_loss([x, x, x], y, edge_weight=0.05).item() == pytest.approx(3 * single.item(), rel=1e-6)
    assert restoration_loss(x, y, "psnr").item() == pytest.approx(-psnr(x.numpy(), y.numpy()), rel=1e-4)


def test_schedule_warms_up_then_anneals():
    config = TrainConfig(model="m3snet", data="-", out="-", lr=1e-3, min_lr=1e-7, warmup=0.1)
    values = [learning_rate(p, config) for p in np.linspace(0, 1, 101)]
    assert values[0] < 1e-5 and values[5] == pytest.approx(0.5e-3)
    assert values[10] == pytest.approx(1e-3) and values[-1] == pytest.approx(1e-7)
    assert all(a <= b for a, b in zip(values[:10], values[1:11]))
    assert all(a >= b for a, b in zip(values[10:], values[11:]))


@pytest.mark.parametrize("overrides, message", [
    ({"iters": None}, "iteration count"),
    ({"loss": "l2"}, "unknown loss"),
    ({"amp": "bf16"}, "mixed precision .* is for CUDA"),
    ({"checkpoint": "a.pth", "resume": "out"}, "exclude each other"),
])
def test_bad_settings_fail_before_any_work(blur_data, tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        train(_config(blur_data, tmp_path / "out", **overrides))


# --- training runs --------------------------------------------------------------------------

def test_training_lowers_the_loss_and_its_checkpoint_round_trips(blur_data, tmp_path):
    result = train(_config(blur_data, tmp_path / "run", iters=24, val=str(blur_data / "val"), log_every=4))
    assert result.steps == 24 and result.start_step == 0
    losses = [e["loss"] for e in result.losses]
    assert losses[-1] < 0.7 * losses[0]
    assert result.val[0]["step"] == 0 and result.val[-1]["step"] == 24
    assert result.val[-1]["psnr"] > result.val[0]["psnr"] + 1.0

    raw = torch.load(result.checkpoint, map_location="cpu", weights_only=True)
    assert set(raw) == {"epoch", "state_dict"} and all(k.startswith("module.") for k in raw["state_dict"])
    model = load_model("m3snet", result.checkpoint, **TINY_M3SNET)  # strict
    scores = []
    with torch.inference_mode():
        for pair in find_pairs(blur_data / "val"):
            x = torch.from_numpy(read_image(pair.input).transpose(2, 0, 1)[None].copy())
            y = model(x).clamp(0, 1)[0].permute(1, 2, 0).numpy()
            scores.append(psnr(y, read_image(pair.target)))
    assert np.mean(scores) == pytest.approx(result.val[-1]["psnr"], abs=1e-4)

    log = json.loads(result.log.read_text())
    assert log["config"]["model_args"] == TINY_M3SNET and log["pairs"] == 8
    assert [e["step"] for e in log["train"]] == [4, 8, 12, 16, 20, 24]
    assert log["val_input_psnr"] == pytest.approx(result.val_input_psnr)


def test_resume_continues_the_same_run(blur_data, tmp_path, monkeypatch):
    straight = train(_config(blur_data, tmp_path / "straight"))

    # Crash after the periodic save at step 6, then resume from the folder.
    real = train_module.learning_rate

    def crash_at_step_7(progress, config):
        if progress >= 0.6:
            raise RuntimeError("simulated crash")
        return real(progress, config)

    monkeypatch.setattr(train_module, "learning_rate", crash_at_step_7)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(_config(blur_data, tmp_path / "resumed", val_every=6))
    monkeypatch.setattr(train_module, "learning_rate", real)
    resumed = train(_config(blur_data, tmp_path / "resumed", resume=str(tmp_path / "resumed")))

    assert resumed.start_step == 6 and resumed.steps == 10
    assert [e["step"] for e in resumed.losses] == [2, 4, 6, 8, 10]
    a = torch.load(straight.checkpoint, weights_only=True)["state_dict"]
    b = torch.load(resumed.checkpoint, weights_only=True)["state_dict"]
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-5, atol=1e-6)

    with pytest.raises(ValueError, match="trained as m3snet"):
        train(_config(blur_data, tmp_path / "other", model_args={"width": 4, "enc_blk_nums": [1, 1, 1, 1]},
                      resume=str(tmp_path / "resumed")))
    with pytest.raises(CheckpointError, match="no training state"):
        train(_config(blur_data, tmp_path / "other", resume=str(tmp_path / "straight" / "missing.pth")))


def test_time_budget_and_fine_tuning_from_a_checkpoint(blur_data, tmp_path):
    first = train(_config(blur_data, tmp_path / "a", iters=4))
    tuned = train(_config(blur_data, tmp_path / "b", iters=None, max_seconds=1.0, checkpoint=str(first.checkpoint)))
    assert tuned.steps >= 1 and tuned.seconds >= 1.0
    # Fine-tuning starts from the checkpoint's weights: its first steps beat a fresh start's.
    assert tuned.losses[0]["loss"] < first.losses[0]["loss"]


def test_train_cli(blur_data, tmp_path, capsys):
    args = ["train", "--model", "m3snet", "--arg", "width=8", "--arg", "enc_blk_nums=[1,1,1,1]",
            "--data", str(blur_data / "train"), "--out", str(tmp_path / "cli"), "--iters", "2", "--batch", "1",
            "--crop", "32", "--threads", "1", "--quiet"]
    assert main(args) == 0
    assert "trained 2 steps" in capsys.readouterr().out
    assert (tmp_path / "cli" / "last.pth").is_file() and (tmp_path / "cli" / "train_state.pth").is_file()
    assert main(args[:-1] + ["--data", str(tmp_path / "nowhere")]) == 2
    assert capsys.readouterr().err.strip() == f"irdeploy train: error: {tmp_path / 'nowhere'}: no such folder"


def test_identity_init_starts_at_the_input_psnr(blur_data, tmp_path):
    mprnet = tiny_model("mprnet")
    assert zero_residual_convs(mprnet) == ["tail", "sam12.conv2", "sam23.conv2"]
    x = torch.rand(1, 3, 40, 48)
    with torch.inference_mode():
        for stage in mprnet(x):
            torch.testing.assert_close(stage, x)
    result = train(_config(blur_data, tmp_path / "id", iters=2, val=str(blur_data / "val"), identity_init=True))
    assert result.val[0]["psnr"] == pytest.approx(result.val_input_psnr, abs=1e-6)
    with pytest.raises(ValueError, match="identity_init starts from scratch"):
        train(_config(blur_data, tmp_path / "id2", identity_init=True, checkpoint=str(result.checkpoint)))
