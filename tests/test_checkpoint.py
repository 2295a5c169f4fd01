"""Checkpoint layouts, strict loading and the errors users see for bad files."""

from __future__ import annotations

import pickle

import pytest
import torch
from conftest import randomize_constants
from safetensors.torch import save_file

from irdeploy.model import CheckpointError, create, load_checkpoint, read_state_dict, save_checkpoint

TINY = {"width": 8, "enc_blk_nums": [1, 1, 1, 1]}


@pytest.fixture
def source() -> torch.nn.Module:
    return randomize_constants(create("m3snet", **TINY), seed=3)


def _layouts(state: dict[str, torch.Tensor]) -> dict[str, object]:
    parallel = {f"module.{k}": v for k, v in state.items()}
    return {
        "upstream": {"epoch": 7, "state_dict": parallel},
        "upstream_no_prefix": {"epoch": 7, "state_dict": state},
        "basicsr_params": {"params": state},
        "basicsr_params_ema": {"params_ema": state, "params": {k: torch.zeros_like(v) for k, v in state.items()}},
        "bare": state,
        "compiled_bare": {f"_orig_mod.{k}": v for k, v in state.items()},
    }


@pytest.mark.parametrize("layout", list(_layouts({})))
def test_every_layout_loads_identically(tmp_path, source, layout) -> None:
    path = tmp_path / f"{layout}.pth"
    torch.save(_layouts(source.state_dict())[layout], path)
    target = create("m3snet", **TINY)
    load_checkpoint(target, path)
    for (k, a), b in zip(source.state_dict().items(), target.state_dict().values()):
        assert torch.equal(a, b), k


def test_params_key_can_be_chosen(tmp_path, source) -> None:
    path = tmp_path / "both.pth"
    torch.save(_layouts(source.state_dict())["basicsr_params_ema"], path)
    chosen = read_state_dict(path, key="params")
    assert all(not v.any() for v in chosen.values())


def test_safetensors(tmp_path, source) -> None:
    path = tmp_path / "weights.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(path))
    target = load_checkpoint(create("m3snet", **TINY), path)
    assert torch.equal(target.encoders[0][0].beta, source.encoders[0][0].beta)


def test_save_checkpoint_writes_upstream_layout(tmp_path, source) -> None:
    path = save_checkpoint(source, tmp_path / "ck.pth", epoch=3)
    raw = torch.load(path, weights_only=True)
    assert raw["epoch"] == 3 and all(k.startswith("module.") for k in raw["state_dict"])
    assert not list(tmp_path.glob("*.partial"))


def test_width_mismatch_names_keys_and_preset(tmp_path) -> None:
    path = tmp_path / "m3snet64.pth"
    with torch.device("meta"):
        big = create("m3snet-64")
    torch.save({"state_dict": {k: torch.zeros(v.shape) for k, v in big.state_dict().items()}}, path)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(create("m3snet-32"), path)
    message = str(err.value)
    assert "\n" not in message
    assert "shape mismatch" in message and "intro.weight (checkpoint [64, 3, 3, 3] vs model [32, 3, 3, 3])" in message
    assert "matches preset 'm3snet-64'" in message


def test_depth_mismatch_lists_missing_and_unexpected(tmp_path) -> None:
    small = create("m3snet", width=8, enc_blk_nums=[1, 1, 1, 2])
    path = save_checkpoint(small, tmp_path / "ck.pth")
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(create("m3snet", **TINY), path)
    message = str(err.value)
    assert "unexpected key(s): encoders.3.1.beta" in message
    assert "missing key" not in message
    assert "it matches architecture m3snet with width=8, enc_blk_nums=[1, 1, 1, 2] (or pass --model auto)" in message


def test_other_architecture(tmp_path) -> None:
    path = save_checkpoint(create("mprnet", n_feat=8, scale_unetfeats=4, scale_orsnetfeats=4, num_cab=1), tmp_path / "m.pth")
    with pytest.raises(CheckpointError, match=r"missing key\(s\): intro.weight.*it matches architecture mprnet with n_feat=8"):
        load_checkpoint(create("m3snet", **TINY), path)


@pytest.mark.parametrize(
    "content",
    [b"", b"not a checkpoint at all", pickle.dumps({"a": 1}), b"PK\x03\x04truncated zip"],
    ids=["empty", "text", "plain-pickle", "truncated-zip"],
)
def test_corrupt_files_give_one_line(tmp_path, content) -> None:
    path = tmp_path / "bad.pth"
    path.write_bytes(content)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(create("m3snet", **TINY), path)
    assert str(err.value).startswith(str(path)) and "\n" not in str(err.value)


def test_pickled_code_is_refused(tmp_path) -> None:
    """weights_only=True: a checkpoint that would execute code on load is rejected."""

    class Payload:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.pth"
    torch.save({"state_dict": Payload()}, path)
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        read_state_dict(path)


def test_non_state_dict_content(tmp_path) -> None:
    path = tmp_path / "meta.pth"
    torch.save({"epoch": 1, "optimizer": {"lr": 1e-3}}, path)
    with pytest.raises(CheckpointError, match="no state dict found.*epoch, optimizer"):
        read_state_dict(path)


def test_missing_file_and_corrupt_safetensors(tmp_path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        read_state_dict(tmp_path / "nope.pth")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 5)
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        read_state_dict(bad)
