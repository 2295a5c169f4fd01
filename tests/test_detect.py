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
        # the others with these shapes are named beside the one picked; every NAFNet preset has its own
        assert name in (found.preset, *found.same_shapes)
        assert not (found.arch == "nafnet" and found.same_shapes)


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


def test_presets_sharing_one_network_are_named_beside_the_one_picked() -> None:
    # Restormer's deraining, deblurring and defocus presets are one network: the weights cannot say
    # which task a checkpoint was trained for, so detection names the others instead of choosing silently
    with torch.device("meta"):
        found = detect(create("restormer-deblur").state_dict())
    assert (found.preset, found.same_shapes) == ("restormer-derain", ("restormer-deblur", "restormer-defocus"))
    assert "restormer-deblur, restormer-defocus have the same shapes (pass --model" in found.describe()


def _others(value):
    """Other values of a constructor argument to probe, with the list entry each changes (numbers
    and flags; string choices are read from which keys exist)."""
    if isinstance(value, bool):
        return [(None, not value)]
    if isinstance(value, (int, float)):
        return [(None, value * 2 if value else 1)]
    if isinstance(value, (list, tuple)) and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        return [(i, [*value[:i], v * 2 if v else 1, *value[i + 1:]]) for i, v in enumerate(value)]
    return []


def _settings(network: torch.nn.Module) -> list:
    """Each submodule's type and plain attributes: what an argument changes besides shapes."""
    plain = (bool, int, float, str, tuple)
    return [(n, type(m).__name__, sorted((k, v) for k, v in vars(m).items() if not k.startswith("_") and isinstance(v, plain)))
            for n, m in network.named_modules()]


def _invisible(spec, settings: dict) -> dict:
    """Arguments (list entries) another value of which builds the same shapes but another network."""
    with torch.device("meta"):
        reference = spec.network(**settings)
        found: dict = {}
        for name, value in settings.items():
            for entry, other in _others(value):
                try:
                    network = spec.network(**{**settings, name: other})
                except (TypeError, ValueError, RuntimeError):
                    continue
                if _shapes(network) == _shapes(reference) and _settings(network) != _settings(reference):
                    found.setdefault(name, ())
                    found[name] += () if entry is None else (entry,)
    return found


def _probe_cases() -> list:
    cases = [(s, dict(s.tiny)) for s in specs()]
    run = next(s for s in specs() if s.name == "run")
    cases += [(run, {**run.tiny, "level_ops": ["conv", "ssa", "conv", "csa"]}),
              (run, {**run.tiny, "level_ops": ["conv", "conv", "conv", "csa"]})]
    return cases


@pytest.mark.parametrize("spec,tiny", _probe_cases(), ids=[f"{s.name}-{'-'.join(t.get('level_ops', []))}".rstrip("-")
                                                           for s, t in _probe_cases()])
def test_specs_declare_every_argument_no_shape_shows(spec, tiny) -> None:
    settings = {**spec.defaults(), **tiny}
    assert _invisible(spec, settings) == (spec.unread(settings) if spec.unread else {})


def test_arguments_the_weights_do_not_hold_are_named_as_assumed(tmp_path, capsys) -> None:
    from irdeploy.model import save_checkpoint
    from irdeploy.runtime.cli import main

    tiny = dict(next(s for s in specs() if s.name == "run").tiny)
    model = randomize_constants(create("run", **tiny, window_size=4)).eval()  # not RUN's default window of 8
    found = detect(model.state_dict())
    assumed = {a.name: a for a in found.assumed}
    # SSA (level 0) heads and the window have no parameter of their own; the CSA heads (level 3) are read
    assert set(assumed) == {"window_size", "num_heads"}
    assert assumed["window_size"].value == 8 and assumed["num_heads"].entries == (0,)
    # and it matters: the same weights in the detected network give another function
    rebuilt = create(found.name, **found.kwargs).eval()
    rebuilt.load_state_dict(model.state_dict(), strict=True)
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        assert not torch.allclose(rebuilt(x), model(x), atol=1e-4)
    # architectures whose shapes hold every argument assume nothing
    for spec in specs():
        if spec.name != "run":
            assert detect(create(spec.name, **spec.tiny).state_dict()).assumed == (), spec.name
    path = save_checkpoint(model, tmp_path / "run.pth")
    assert main(["export", "--checkpoint", str(path), "-o", str(tmp_path / "run.onnx"), "--static", "16x16",
                 "--no-parity", "--no-tensorrt", "--quiet"]) == 0
    line = next(x for x in capsys.readouterr().err.splitlines() if "detected" in x)
    assert "assumed, not in the weights: num_heads=[2, 2, 4, 2] (entry 0), window_size=8 (pass --arg" in line
    # the argument the user passes is theirs, not an assumption
    assert main(["export", "--checkpoint", str(path), "-o", str(tmp_path / "run4.onnx"), "--static", "16x16",
                 "--arg", "window_size=4", "--no-parity", "--no-tensorrt", "--quiet"]) == 0
    line = next(x for x in capsys.readouterr().err.splitlines() if "detected" in x)
    assert "assumed, not in the weights: num_heads=[2, 2, 4, 2] (entry 0) (pass --arg" in line and "window_size" not in line
