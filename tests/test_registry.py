"""The architecture and backend registries: a new architecture is one spec and one register call.

A throwaway sixth architecture, defined here and nowhere else, goes through export, a real
TensorRT-RTX build, restore (with its checkpoint detected) and bench with no other file changed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np
import onnx
import pytest
import torch
from conftest import FIXTURES, requires_rtx
from torch import nn

from irdeploy.core.images import read_image, sample_path, write_image
from irdeploy.export import to_onnx
from irdeploy.model import create, record_of, save_checkpoint, specs
from irdeploy.model.init import randomize_constants
from irdeploy.model.layers import LayerNorm2d, check_input, pad_to_multiple
from irdeploy.model.registry import register, unregister
from irdeploy.model.spec import ModelSpec, Preset, count_blocks
from irdeploy.runtime.registry import backend_for_file, backend_names, get_backend


class Toy(nn.Module):
    """A two-level residual network: conv, LayerNorm, a scaled down/up branch, conv + input."""

    def __init__(self, channels: int = 3, width: int = 8, depth: int = 1) -> None:
        super().__init__()
        self.channels = channels
        self.intro = nn.Conv2d(channels, width, 3, padding=1)
        self.blocks = nn.ModuleList(
            nn.Sequential(LayerNorm2d(width), nn.Conv2d(width, width, 2, stride=2), nn.Conv2d(width, width * 4, 1),
                          nn.PixelShuffle(2)) for _ in range(depth))
        self.scale = nn.Parameter(torch.zeros(1, width, 1, 1))  # zero at init: the branch starts closed
        self.ending = nn.Conv2d(width, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.channels, "Toy")
        h, w = x.shape[-2:]
        x = pad_to_multiple(x, 2)
        y = self.intro(x)
        for block in self.blocks:
            y = y + block(y) * self.scale
        return (self.ending(y) + x)[..., :h, :w]


def _detect_toy(state: Mapping[str, torch.Tensor]) -> dict[str, Any] | None:
    if "scale" not in state or "intro.weight" not in state:
        return None
    intro = state["intro.weight"]
    return {"channels": int(intro.shape[1]), "width": int(intro.shape[0]), "depth": len(count_blocks(state, "blocks."))}


TOY = ModelSpec(
    name="toy",
    network=Toy,
    presets=(Preset("toy-16", "the test's toy network, width 16", {"width": 16}, source="tests/test_registry.py"),),
    channels_arg="channels",
    pad_multiple=lambda model: 2,
    pad_mode="constant",
    tiny={"width": 8},
    no_fixtures="a toy network defined in this test; there is no upstream code",
    identity_convs=("ending",),
    constant_init=("scale",),
    layernorms=(LayerNorm2d,),
    detect=_detect_toy,
    tlc=False,
)


@pytest.fixture
def toy():
    register(TOY)
    yield TOY
    unregister("toy")


def test_toy_goes_through_export_restore_and_bench(toy, tmp_path, monkeypatch):
    from irdeploy.runtime.bench import BenchConfig, bench_model
    from irdeploy.runtime.cli import main

    model = randomize_constants(create("toy-16")).eval()
    assert record_of(model).spec is toy and record_of(model).channels == 3
    report = to_onnx(model, tmp_path / "toy.onnx", tensorrt=False)
    assert report.parity.passed and report.metadata.arch == "toy" and report.metadata.pad_multiple == 2
    graph = onnx.load(tmp_path / "toy.onnx")
    assert sum(n.op_type == "LayerNormalization" for n in graph.graph.node) == 1  # one per LayerNorm module

    checkpoint = save_checkpoint(model, tmp_path / "toy.pth")
    photo = tmp_path / "in.png"
    write_image(photo, read_image(sample_path())[:40, :52])
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert main(["restore", str(photo), "-o", str(tmp_path / "out"), "--backend", "ort", "--checkpoint", str(checkpoint),
                 "--quiet"]) == 0
    restored = read_image(tmp_path / "out" / "in.png")
    with torch.inference_mode():
        eager = model(torch.from_numpy(read_image(photo).transpose(2, 0, 1)[None].copy()))[0].numpy().transpose(1, 2, 0)
    assert np.abs(restored - np.clip(eager, 0, 1)).max() <= 1 / 255 + 1e-6

    result = bench_model(model, model_name="toy-16", workdir=tmp_path / "bench", backends=("torch", "ort"),
                         shapes=((1, 3, 32, 32),), threads=1, device="cpu",
                         config=BenchConfig(iterations=2, warmup_iters=1, warmup_seconds=0))
    assert {(r.backend, r.status) for r in result.rows} == {("torch", "ok"), ("ort", "ok")}


@requires_rtx
def test_toy_builds_a_tensorrt_rtx_engine(toy, tmp_path):
    from irdeploy.runtime.tensorrt import build_engine
    from irdeploy.runtime.tensorrt.sidecar import read_sidecar

    model = randomize_constants(create("toy", **toy.tiny)).eval()
    to_onnx(model, tmp_path / "toy.onnx", tensorrt=False, parity=False)
    built = build_engine(tmp_path / "toy.onnx", tmp_path / "toy.engine", precision="fp16", flavour="rtx",
                         shapes={"min": (1, 3, 16, 16), "opt": (1, 3, 32, 32), "max": (2, 3, 64, 64)})
    assert built.engine_path.stat().st_size > 0
    assert read_sidecar(built.engine_path)["pad_multiple"] == 2


def test_registration_rules(toy):
    with pytest.raises(ValueError, match="already registered"):
        register(TOY)
    with pytest.raises(ValueError, match="built in"):
        unregister("m3snet")
    with pytest.raises(ValueError, match="fidelity fixtures or the reason"):
        ModelSpec("bad", Toy, (), "channels", lambda m: 2, "constant", {})
    with pytest.raises(ValueError, match="does not say where it comes from"):
        ModelSpec("bad", Toy, (Preset("bad-1", "no source", {}, source=""),), "channels", lambda m: 2, "constant", {},
                  no_fixtures="test")


def _fixture_cases() -> dict[str, dict]:
    cases = {}
    for index in sorted(FIXTURES.glob("index*.json")):
        cases.update(json.loads(index.read_text())["cases"])
    return cases


@pytest.mark.parametrize("spec", specs(), ids=lambda s: s.name)
def test_every_architecture_has_fidelity_fixtures_or_says_why_not(spec):
    cases = _fixture_cases()
    if spec.no_fixtures:
        assert not [c for c, v in cases.items() if v["model"] == spec.name], "fixtures exist: list them in the spec"
        return
    for case in spec.fixtures:
        assert case in cases and cases[case]["model"] == spec.name, f"{case} is not an upstream case of {spec.name}"
        assert (FIXTURES / f"{case}.npz").is_file()


@pytest.mark.parametrize("spec", specs(), ids=lambda s: s.name)
def test_spec_contract(spec):
    """What the exporter and the runtimes rely on, for every registered architecture."""
    model = create(spec.name, **spec.tiny)
    assert spec.pad_multiple(model) >= 1 and record_of(model).channels in (1, 3, 6)
    for name in spec.identity_convs:
        assert isinstance(model.get_submodule(name), nn.Conv2d)
    names = {n.rsplit(".", 1)[-1] for n, _ in model.named_parameters()}
    assert set(spec.constant_init) <= names, f"constant_init names no parameter: {set(spec.constant_init) - names}"
    if spec.layernorms:
        assert any(isinstance(m, spec.layernorms) for m in model.modules())


def test_backend_registry_drives_choices():
    assert {"torch", "ort", "trt"} <= set(backend_names())
    assert backend_for_file("m.onnx").name == "ort" and backend_for_file("m.PLAN").name == "trt"
    assert get_backend("trt").triton == ("tensorrt_plan", "") and get_backend("ort").artifact == "onnx"
    with pytest.raises(ValueError, match="no backend runs '.xml' files"):
        backend_for_file("m.xml")
    with pytest.raises(ValueError, match="unknown backend 'tflite'; choose from torch"):
        get_backend("tflite")
    assert get_backend("ort").probe() is None  # onnxruntime is installed in the test environment


@pytest.mark.parametrize("spec", specs(), ids=lambda s: s.name)
def test_tlc_follows_the_spec(spec):
    """TLC at the training size is the identity conversion; a spec without global pools says so."""
    from irdeploy.model import to_local

    model = randomize_constants(create(spec.name, **spec.tiny)).eval()
    if not spec.tlc:
        with pytest.raises(ValueError, match="no global average pool"):
            to_local(model, train_size=(1, record_of(model).channels, 32, 32))
        return
    x = torch.rand(1, record_of(model).channels, 32, 32)
    with torch.inference_mode():
        before = spec.image(model(x))
    to_local(model, train_size=(1, record_of(model).channels, 32, 32), base_size=32)
    assert record_of(model).tlc == {"train_size": [1, record_of(model).channels, 32, 32], "base_size": [32, 32]}
    with torch.inference_mode():
        assert torch.allclose(spec.image(model(x)), before, atol=1e-5)
