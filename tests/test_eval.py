"""PSNR/SSIM against known values, and `irdeploy eval` end to end on torch and ONNX Runtime."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from conftest import TINY, assert_runs_without_torch

from irdeploy.core.images import read_image, sample_path
from irdeploy.core.pairs import find_pairs
from irdeploy.model import save_checkpoint
from irdeploy.model.degrade import degrade_folder
from irdeploy.core.backend import Backend
from irdeploy.export.torch_backend import TorchBackend
from irdeploy.runtime.cli import main
from irdeploy.runtime.evaluate import evaluate
from irdeploy.runtime.metrics import all_metrics, psnr, psnr_y, quantize, rgb_to_y, ssim, ssim_y

C1 = (0.01 * 255) ** 2
Y_WEIGHTS = np.array([65.481, 128.553, 24.966])

# --- metrics --------------------------------------------------------------------------------


def test_identical_images_score_perfectly():
    photo = read_image(sample_path())
    assert all_metrics(photo, photo) == {"psnr": float("inf"), "ssim": 1.0, "psnr_y": float("inf"), "ssim_y": 1.0}


def test_gaussian_noise_gives_the_analytic_psnr():
    rng = np.random.default_rng(0)
    clean = np.full((512, 512, 3), 0.5)
    sigma = 0.02  # 10 sigma from the [0, 1] bounds: nothing clips
    noisy = clean + rng.normal(0.0, sigma, clean.shape)
    assert psnr(noisy, clean) == pytest.approx(20 * np.log10(1 / sigma), abs=0.03)  # 33.98 dB
    # Y = 16 + w . RGB on the 8-bit scale: independent channel noise adds up with the squared weights.
    y_sigma = sigma * np.sqrt(np.sum(Y_WEIGHTS**2))
    assert psnr_y(noisy, clean) == pytest.approx(20 * np.log10(255 / y_sigma), abs=0.03)


def test_ssim_of_a_constant_shift_is_its_luminance_term():
    # Flat images have no variance: SSIM reduces to (2ab + C1) / (a^2 + b^2 + C1) on the 8-bit scale.
    a, b = np.full((40, 50, 3), 100 / 255), np.full((40, 50, 3), 125 / 255)
    expected = (2 * 100 * 125 + C1) / (100**2 + 125**2 + C1)
    assert ssim(a, b) == pytest.approx(expected, rel=1e-9)
    ya, yb = 16 + 100 / 255 * Y_WEIGHTS.sum(), 16 + 125 / 255 * Y_WEIGHTS.sum()
    assert ssim_y(a, b) == pytest.approx((2 * ya * yb + C1) / (ya**2 + yb**2 + C1), rel=1e-9)


def test_ssim_falls_with_noise_and_is_symmetric():
    photo = read_image(sample_path())[:96, :128].astype(np.float64)
    rng = np.random.default_rng(1)
    light, heavy = (np.clip(photo + rng.normal(0, s, photo.shape), 0, 1) for s in (0.02, 0.1))
    assert 1.0 > ssim(light, photo) > ssim(heavy, photo) > 0.0
    assert ssim(light, photo) == pytest.approx(ssim(photo, light), rel=1e-12)
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(photo[:8], photo[:8])
    with pytest.raises(ValueError, match="differ in shape"):
        psnr(photo, photo[:10])


def test_y_channel_values():
    colours = np.array([[[0, 0, 0], [1, 1, 1], [1, 0, 0], [0, 1, 0], [0, 0, 1]]], np.float64)
    np.testing.assert_allclose(rgb_to_y(colours)[0], [16.0, 235.0, 81.481, 144.553, 40.966], atol=1e-9)
    np.testing.assert_array_equal(quantize(np.array([-0.1, 0.5, 0.0031, 1.2])), [0.0, 128 / 255, 1 / 255, 1.0])


# --- evaluate -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def eval_data(tmp_path_factory):
    """Two 72x72 (not a multiple of 16) motion-blurred crops of a shipped photograph."""
    root = tmp_path_factory.mktemp("eval")
    (root / "clean").mkdir()
    shutil.copy(sample_path("coffee.png"), root / "clean" / "coffee.png")
    degrade_folder(root / "clean", root / "data", "blur", seed=0, crops=2, size=72)
    return root / "data"


class Identity(Backend):
    name = "identity"

    def _run(self, batch: np.ndarray) -> np.ndarray:
        return batch


def test_evaluate_scores_inputs_outputs_and_the_reference(eval_data, tmp_path):
    pairs = find_pairs(eval_data)
    result = evaluate(Identity(), pairs, reference=Identity(), data="blur")
    for score, pair in zip(result.images, pairs):
        expected = all_metrics(read_image(pair.input), read_image(pair.target))
        assert score.input == pytest.approx(expected) and score.output == pytest.approx(expected)
        assert score.parity_psnr == float("inf")
    assert result.delta_psnr == 0.0 and result.min_parity_psnr == float("inf")
    written = json.loads(result.write_json(tmp_path / "r.json").read_text())
    assert written["min_parity_psnr"] == "inf"  # identical outputs: infinite PSNR, a string in strict JSON
    assert written["mean"]["output"]["psnr"] == pytest.approx(np.mean([s.output["psnr"] for s in result.images]))
    assert [i["name"] for i in written["images"]] == ["coffee_000", "coffee_001"]
    with pytest.raises(ValueError, match="no image pairs"):
        evaluate(Identity(), [])


@pytest.fixture(scope="module")
def tiny_checkpoint(tiny_onnx, tmp_path_factory):
    """The tiny M3SNet behind the session's ONNX graph, saved as an upstream-layout checkpoint."""
    onnx_path, model = tiny_onnx("m3snet")
    checkpoint = save_checkpoint(model, tmp_path_factory.mktemp("ck") / "tiny.pth")
    return onnx_path, checkpoint, model


MODEL_ARGS = ["--model", "m3snet"] + [a for k, v in TINY["m3snet"].items() for a in ("--arg", f"{k}={json.dumps(v)}")]


def test_eval_cli_torch_backend(eval_data, tiny_checkpoint, tmp_path, capsys):
    _, checkpoint, model = tiny_checkpoint
    out = tmp_path / "torch.json"
    assert main(["eval", str(eval_data), "--backend", "torch", *MODEL_ARGS, "--checkpoint", str(checkpoint),
                 "--threads", "1", "--json", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "input" in printed and "restored = torch" in printed and "2 images" in printed
    written = json.loads(out.read_text())
    assert written["backend"] == "torch" and written["reference"] is None and len(written["images"]) == 2
    direct = evaluate(TorchBackend(model), find_pairs(eval_data))
    assert written["mean"]["output"]["psnr"] == pytest.approx(direct.mean("output", "psnr"), abs=1e-9)


def test_eval_cli_onnxruntime_against_eager(eval_data, tiny_checkpoint, tmp_path, capsys):
    onnx_path, checkpoint, _ = tiny_checkpoint
    out = tmp_path / "ort.json"
    assert main(["eval", str(eval_data), "--backend", "ort", "--onnx", str(onnx_path), "--reference", "torch",
                 *MODEL_ARGS, "--checkpoint", str(checkpoint), "--threads", "1", "--json", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "ΔPSNR" in printed and "reference = torch" in printed
    written = json.loads(out.read_text())
    assert written["backend"].startswith("ort") and written["reference"] == "torch"
    assert abs(written["delta_psnr"]) < 0.01  # float32 graph: the task sees no difference
    assert written["min_parity_psnr"] == "inf" or written["min_parity_psnr"] > 80


def test_eval_cli_errors(eval_data, tiny_checkpoint, tmp_path, capsys):
    onnx_path, _, _ = tiny_checkpoint
    assert main(["eval", str(eval_data), "--onnx", str(onnx_path), "--reference", "torch"]) == 2
    assert capsys.readouterr().err.strip() == (
        "irdeploy eval: error: --reference torch runs the eager model: give --model (and --checkpoint)")
    (tmp_path / "input").mkdir()
    assert main(["eval", str(tmp_path), "--onnx", str(onnx_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no target/ subfolder" in err[0]


def test_eval_on_onnxruntime_does_not_import_torch(eval_data, tiny_checkpoint):
    onnx_path, _, _ = tiny_checkpoint
    assert_runs_without_torch(
        "from irdeploy.core.pairs import find_pairs\n"
        "from irdeploy.core.ort_backend import OnnxRuntimeBackend\n"
        "from irdeploy.runtime.evaluate import evaluate\n"
        f"result = evaluate(OnnxRuntimeBackend({str(onnx_path)!r}, threads=1), find_pairs({str(eval_data)!r}))\n"
        "assert len(result.images) == 2\n"
    )
