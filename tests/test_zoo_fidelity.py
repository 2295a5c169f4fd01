"""Architecture fidelity: outputs and state dicts against the upstream reference vectors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import FIXTURES, load_index, load_manifests

from irdeploy.model import create, load_checkpoint, record_of, to_local
from irdeploy.core.fileio import sha256_file

INDEX = load_index()
# NAFNet's and Restormer's reference vectors ship in their own index (same folder, same format).
INDEX["cases"].update(json.loads((FIXTURES / "index_nafnet_restormer.json").read_text())["cases"])
TOLERANCE = 1e-4  # what index.json says a faithful float32 implementation reaches

MANIFEST_CONFIGS = {
    "m3snet_width32": ("m3snet-32", {}),
    "m3snet_width64": ("m3snet-64", {}),
    "mhnet_width64": ("mhnet", {}),
    "mprnet_deblurring": ("mprnet-deblur", {}),
    "mprnet_deraining": ("mprnet-derain", {}),
    "mprnet_denoising": ("mprnet-denoise", {}),
}


def _fixture_model(case: str) -> torch.nn.Module:
    spec = INDEX["cases"][case]
    model = create(spec["model"], **spec["kwargs"]).eval()
    weights = FIXTURES / spec.get("weights", f"{case}.pth")
    return load_checkpoint(model, weights)


@pytest.mark.parametrize("case", [c for c in INDEX["cases"] if "tlc" not in INDEX["cases"][c]])
def test_outputs_match_upstream(case: str) -> None:
    spec = INDEX["cases"][case]
    assert sha256_file(FIXTURES / f"{case}.pth") == spec["checkpoint_sha256"]
    model = _fixture_model(case)
    data = np.load(FIXTURES / f"{case}.npz")
    for i, shape in enumerate(spec["cases"]):
        x = torch.from_numpy(data[f"input_{i}"])
        assert list(x.shape) == shape
        with torch.no_grad():
            outputs = model(x)
        outputs = outputs if isinstance(outputs, list) else [outputs]
        assert len(outputs) == spec["outputs_per_case"]
        for j, out in enumerate(outputs):
            expected = torch.from_numpy(data[f"output_{i}_{j}"])
            assert out.shape == expected.shape
            err = (out - expected).abs().max().item()
            assert err <= TOLERANCE, f"{case} input {i} output {j}: max abs error {err:.3g}"


def test_tlc_matches_upstream_local_variant() -> None:
    spec = INDEX["cases"]["m3snet_tiny_tlc"]
    model = to_local(_fixture_model("m3snet_tiny_tlc"), **spec["tlc"])
    data = np.load(FIXTURES / "m3snet_tiny_tlc.npz")
    with torch.no_grad():
        out = model(torch.from_numpy(data["input_0"]))
    err = (out - torch.from_numpy(data["output_0_0"])).abs().max().item()
    assert err <= TOLERANCE
    # The conversion changes the function (otherwise this test would prove nothing).
    with torch.no_grad():
        plain = _fixture_model("m3snet_tiny_tlc")(torch.from_numpy(data["input_0"]))
    assert (plain - out).abs().max().item() > 1e-3


def test_tlc_fixes_kernels_at_conversion() -> None:
    """Kernel sizes exist right after to_local, before any forward pass (exportable)."""
    from irdeploy.model.tlc import LocalAvgPool2d

    model = to_local(create("m3snet", width=8, enc_blk_nums=[1, 1, 1, 1]), train_size=(1, 3, 64, 64))
    pools = [m for m in model.modules() if isinstance(m, LocalAvgPool2d)]
    assert len(pools) == sum(1 for m in model.modules() if m.__class__.__name__ == "NAFBlock")
    # level-0 features are 64x64 at train size: window 64 * 96 // 64 = 96
    assert model.encoders[0][0].sca[0].kernel_size == (96, 96)
    assert model.encoders[3][0].sca[0].kernel_size == (12, 12)
    assert record_of(model).tlc == {"train_size": [1, 3, 64, 64], "base_size": [96, 96]}


def test_tlc_on_mhnet_converts_fusion_pools_too() -> None:
    model = create("mhnet", width=8, num_cab=1, enc_blk_nums=[1, 1, 1, 1])
    to_local(model, train_size=(1, 3, 32, 32))
    assert not [m for m in model.modules() if isinstance(m, torch.nn.AdaptiveAvgPool2d)]
    with torch.no_grad():
        assert model(torch.rand(1, 3, 80, 64)).shape == (1, 3, 80, 64)


@pytest.mark.parametrize("config", list(MANIFEST_CONFIGS))
def test_full_size_state_dict_matches_manifest(config: str) -> None:
    preset, kwargs = MANIFEST_CONFIGS[config]
    with torch.device("meta"):
        model = create(preset, **kwargs)
    ours = [[k, list(v.shape)] for k, v in model.state_dict().items()]
    assert ours == load_manifests()[config]
