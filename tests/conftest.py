"""Shared fixtures: the upstream reference vectors and parameter randomisation.

Upstream initialises several parameters to constants (NAFBlock beta/gamma to zero, LayerNorm
affine to one/zero, attention temperature to one, MHNet's mixing weights to 0.2). With those
values whole blocks are identities, so a parity or gradient test on a fresh model proves little:
:func:`randomize_constants` gives them random values first.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from irdeploy.model import specs
from irdeploy.model.init import randomize_constants

FIXTURES = Path(__file__).parent / "fixtures" / "upstream"
# Small configurations of every registered architecture (each spec's ``tiny``): seconds on
# CPU, same code paths as the presets.
TINY = {spec.name: dict(spec.tiny) for spec in specs()}
requires_rtx = pytest.mark.skipif(
    importlib.util.find_spec("tensorrt_rtx") is None,
    reason="tensorrt_rtx is not installed (pip install tensorrt-rtx-cu13==1.7.1.116)",
)


def assert_runs_without_torch(code: str) -> None:
    """Run ``code`` in a fresh interpreter and check it succeeded without importing torch: the
    promise of every path that runs an ONNX graph or an engine."""
    import subprocess
    import sys

    check = code + "\nimport sys\nassert 'torch' not in sys.modules, 'torch was imported'\n"
    result = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr


def load_index() -> dict:
    return json.loads((FIXTURES / "index.json").read_text())


def load_manifests() -> dict:
    return json.loads((FIXTURES / "state_dict_manifests.json").read_text())


@pytest.fixture(scope="session")
def index() -> dict:
    return load_index()


def tiny_model(arch: str, seed: int = 0) -> torch.nn.Module:
    """A tiny model of ``arch`` with every parameter random (constants included), in eval mode."""
    from irdeploy.model import create

    torch.manual_seed(seed)
    return randomize_constants(create(arch, **TINY[arch]), seed=seed).eval()


@pytest.fixture(scope="session")
def tiny_onnx(tmp_path_factory):
    """``tiny_onnx(arch, attention="matmul", static=None) -> (onnx_path, eager_model)``.

    Made with ``irdeploy.export.to_onnx`` (parity gate on, TensorRT check off: the TensorRT
    tests parse the files themselves), cached for the whole session because a dynamo export of
    a tiny model takes 10-25 s. ``static`` is ``(N, H, W)``; the default is dynamic N, H, W.
    ``tiny_onnx.reports[path]`` holds each file's :class:`ExportReport`.
    """
    from irdeploy.export import to_onnx

    cache: dict = {}
    root = tmp_path_factory.mktemp("tiny_onnx")

    def get(arch: str, attention: str = "matmul", static: tuple[int, int, int] | None = None):
        key = (arch, attention, static)
        if key not in cache:
            model = tiny_model(arch)
            path = root / f"{arch}-{attention}-{'x'.join(map(str, static)) if static else 'dynamic'}.onnx"
            get.reports[path] = to_onnx(model, path, static_shape=static, attention=attention, tensorrt=False)
            cache[key] = (path, model)
        return cache[key]

    get.reports = {}
    return get


@pytest.fixture(autouse=True)
def _deterministic() -> None:
    torch.manual_seed(0)
