"""Architecture detection: every registered architecture, preset, fixture and checkpoint layout."""

from __future__ import annotations

import json

import onnx
import pytest
import torch
from conftest import FIXTURES

from irdeploy.core.metadata import ExportMetadata
from irdeploy.model import available, create, load_model, presets, record_of, specs
from irdeploy.model.detect import DetectionError, detect
from irdeploy.model.init import randomize_constants


def _shapes(model: torch.nn.Module) -> dict:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


@pytest.mark.parametrize("name", available())
def test_every_preset_is_detected(name: str) -> None:
    with torch.device("meta"):
        model = create(name)
        found = detect(model.state_dict())
        assert found.arch == presets()[name].arch
        # presets that differ only in what no tensor shows (Restormer's deraining and deblurring) are
        # told apart by nothing: the detected one must have the very same shapes
        assert _shapes(create(found.name, **found.kwargs)) == _shapes(model)


@pytest.mark.parametrize("spec", specs(), ids=lambda s: s.name)
def test_tiny_configurations_give_their_kwargs(spec) -> None:
    model = create(spec.name, **spec.tiny)
    found = detect(model.state_dict())
    assert found.arch == spec.name
    rebuilt = create(found.name, **found.kwargs)
    rebuilt.load_state_dict(model.state_dict(), strict=True)


def _cases() -> list[tuple[str, dict]]:
    cases = []
    for index in sorted(FIXTURES.glob("index*.json")):
        cases += [(c, v) for c, v in json.loads(index.read_text())["cases"].items() if "tlc" not in c]
    return cases


@pytest.mark.parametrize("case,info", _cases(), ids=[c for c, _ in _cases()])
def test_upstream_fixture_checkpoints_are_detected(case: str, info: dict) -> None:
    path = FIXTURES / info.get("weights", f"{case}.pth")
    model = load_model("auto", path)  # strict load of upstream's DataParallel training layout
    assert record_of(model).spec.name == info["model"]
    assert _shapes(model) == _shapes(create(info["model"], **info["kwargs"]))


@pytest.mark.parametrize("layout", specs()[0].layouts)
@pytest.mark.parametrize("spec", specs(), ids=lambda s: s.name)
def test_every_layout_loads_with_model_auto(spec, layout: str, tmp_path) -> None:
    model = randomize_constants(create(spec.name, **spec.tiny))
    state = model.state_dict()
    if layout == "module.":
        state = {"state_dict": {f"module.{k}": v for k, v in state.items()}}
    elif layout != "bare":
        state = {layout: state}
    torch.save(state, tmp_path / "ck.pth")
    loaded = load_model(None, tmp_path / "ck.pth")
    assert record_of(loaded).spec is spec
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_unplaceable_weights_name_the_closest_architecture(tmp_path) -> None:
    state = create("m3snet", width=8, enc_blk_nums=[1, 1, 1, 1]).state_dict()
    state["intro.weight"] = torch.zeros(8, 3, 5, 5)  # a 5x5 intro: no registered network has one
    with pytest.raises(DetectionError) as err:
        detect(state)
    message = str(err.value)
    assert "\n" not in message and "match no registered architecture; closest: m3snet" in message
    assert "intro.weight [8, 3, 5, 5] vs [8, 3, 3, 3]" in message


def test_cli_prints_what_it_detected(tmp_path, capsys) -> None:
    from irdeploy.model import save_checkpoint
    from irdeploy.runtime.cli import main

    path = save_checkpoint(create("mhnet", width=8, num_cab=1, enc_blk_nums=[1, 1, 1, 1]), tmp_path / "mh.pth")
    out = tmp_path / "mh.onnx"
    assert main(["export", "--checkpoint", str(path), "-o", str(out), "--static", "16x16", "--no-parity", "--no-tensorrt",
                 "--quiet"]) == 0
    meta = ExportMetadata.read(onnx.load(out))  # "mhnet" is a preset too: its settings, the detected ones on top
    assert meta.arch == "mhnet" and {"width": 8, "num_cab": 1, "enc_blk_nums": [1, 1, 1, 1]}.items() <= meta.config.items()
    err = capsys.readouterr().err
    assert "detected architecture mhnet with width=8, num_cab=1, enc_blk_nums=[1, 1, 1, 1] in" in err
    assert main(["export", "-o", str(tmp_path / "x.onnx")]) == 2
    assert "give --model" in capsys.readouterr().err
