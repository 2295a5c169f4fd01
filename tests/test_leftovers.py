"""Review leftovers (issue #15/#17): the validate and restore paths that a review found wrong."""

from __future__ import annotations

import onnx
import pytest
import torch
from conftest import requires_rtx

from irdeploy.export.parity import parity_sizes
from irdeploy.model import save_checkpoint
from irdeploy.model.registry import register, unregister
from irdeploy.model.spec import ModelSpec


def _foreign(path, out, batch: int | None, height: int | None = None) -> None:
    """A graph irdeploy did not export: no metadata, the input's N (and maybe H) fixed by hand."""
    graph = onnx.load(path)
    del graph.metadata_props[:]
    for value in (graph.graph.input[0], graph.graph.output[0]):
        dims = value.type.tensor_type.shape.dim
        for axis, size in ((0, batch), (2, height)):
            if size is not None:
                dims[axis].Clear()
                dims[axis].dim_value = size
    onnx.checker.check_model(graph)
    onnx.save(graph, out)


def test_parity_sizes_keep_fixed_dims_and_dynamic_ones_dynamic() -> None:
    m = 8
    assert parity_sizes(m) == [(2, 32, 24), (1, 35, 43), (1, 48, 64)]  # all dynamic: a batch of 2 among them
    assert [n for n, _, _ in parity_sizes(m, batch=1)] == [1, 1, 1]
    assert [(h, w) for _, h, w in parity_sizes(m, batch=1)] == [(h, w) for _, h, w in parity_sizes(m)]
    assert {h for _, h, _ in parity_sizes(m, height=40)} == {40} and len({w for _, _, w in parity_sizes(m, height=40)}) > 1
    assert parity_sizes(m, 3, 32, 48) == [(3, 32, 48), (3, 28, 48), (3, 32, 48)]  # static: as before


@pytest.mark.parametrize("fixed", [{"batch": 1}, {"batch": 1, "height": 32}], ids=["n1", "n1-h32"])
def test_validate_a_foreign_graph_with_a_fixed_batch(tiny_onnx, tmp_path, capsys, fixed) -> None:
    from irdeploy.runtime.cli import main

    path, model = tiny_onnx("m3snet")
    checkpoint = save_checkpoint(model, tmp_path / "ck.pth")
    foreign = tmp_path / "foreign.onnx"
    _foreign(path, foreign, **fixed)
    assert main(["validate", "--onnx", str(foreign), "--checkpoint", str(checkpoint)]) == 0
    out = capsys.readouterr().out
    fed = [word for line in out.splitlines() for word in line.split() if word.count("x") == 2 and word[0].isdigit()]
    assert len(fed) == 3 and all(size.startswith("1x") for size in fed), out  # the graph's own batch of 1
    if "height" in fixed:
        assert all(size.split("x")[1] == "32" for size in fed), out
    else:
        assert len({size.split("x")[1] for size in fed}) == 3, out  # H and W stay dynamic


@requires_rtx
def test_restore_fails_on_a_rebuild_that_fails_instead_of_running_the_cached_engine(tiny_onnx, tmp_path, capsys) -> None:
    """restore builds only when it is not given an engine (--onnx or --model: the engine cache).
    A stale cached engine is rebuilt in place; when that rebuild fails, restore stops with the
    build's one-line error and the old engine, kept on disk by design, is not run."""
    from irdeploy.core.images import sample_path
    from irdeploy.runtime.artifacts import cached_engine
    from irdeploy.runtime.cli import main
    from irdeploy.runtime.tensorrt.simulated import SimulatedCuda, simulate

    path, _ = tiny_onnx("m3snet")
    cache = tmp_path / "cache"
    with simulate(SimulatedCuda((("Simulated RTX 4090", "8.9"),))):  # a real TensorRT-RTX build for SM 8.9
        old = cached_engine(path, "fp32", cache).path
    before = old.read_bytes(), old.with_name(old.name + ".json").read_bytes()
    out = tmp_path / "restored"
    argv = ["restore", str(sample_path("chelsea.png")), "-o", str(out), "--backend", "trt", "--onnx", str(path),
            "--cache-dir", str(cache), "--device", "cuda", "--quiet"]
    with simulate(SimulatedCuda((("NVIDIA H200", "9.0"),))):  # same cache, another GPU: a rebuild, which fails
        assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, err
    assert err.startswith("irdeploy restore: error: NVIDIA H200 (compute capability 9.0) is not a TensorRT-RTX"), err
    assert (old.read_bytes(), old.with_name(old.name + ".json").read_bytes()) == before  # kept, and not run
    assert not out.exists() or not any(out.iterdir())


class Affine(torch.nn.Module):
    """``0.5 * x + 0.25``, what the simulated engine computes: parity through the simulator passes."""

    def __init__(self, channels: int = 3) -> None:
        super().__init__()
        self.channels = channels
        self.scale = torch.nn.Parameter(torch.full((1,), 0.5))
        self.shift = torch.nn.Parameter(torch.full((1,), 0.25))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale + self.shift


AFFINE = ModelSpec(name="affine", network=Affine, presets=(), channels_arg="channels", pad_multiple=lambda model: 16,
                   pad_mode="constant", tiny={}, no_fixtures="the simulated engine's function, defined in this test",
                   tlc=False)


@pytest.mark.parametrize("max_batch", [1, 2])
def test_validate_engine_feeds_only_shapes_its_profile_takes(tmp_path, capsys, max_batch) -> None:
    """The default build profile takes batch 1 (64x64 to 1088x1920): validate --engine used to
    feed it a batch of 2 and stop at 'outside the engine's profile'."""
    from irdeploy.runtime.cli import main
    from irdeploy.runtime.tensorrt.simulated import simulate, write_engine

    engine = write_engine(tmp_path / "m.engine", profile=((1, 3, 64, 64), (1, 3, 64, 64), (max_batch, 3, 80, 112)),
                          sidecar={"pad_multiple": 16})
    register(AFFINE)
    try:
        with simulate():
            code = main(["validate", "--engine", str(engine), "--model", "affine"])
    finally:
        unregister("affine")
    out = capsys.readouterr().out
    assert code == 0, out
    fed = [word for line in out.splitlines() for word in line.split() if word.count("x") == 2 and word[0].isdigit()]
    assert len(fed) == 3 and {int(s.split("x")[0]) for s in fed} == ({1} if max_batch == 1 else {1, 2}), fed
    for size in fed:
        _, h, w = map(int, size.split("x"))
        assert 64 <= h <= 80 and 64 <= w <= 112, fed
