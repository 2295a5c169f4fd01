"""Shared fixtures: the upstream reference vectors and parameter randomisation.

Upstream initialises several parameters to constants (NAFBlock beta/gamma to zero, LayerNorm
affine to one/zero, attention temperature to one, MHNet's mixing weights to 0.2). With those
values whole blocks are identities, so a parity or gradient test on a fresh model proves little:
:func:`randomize_constants` gives them random values first.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

FIXTURES = Path(__file__).parent / "fixtures" / "upstream"
CONSTANT_INIT = ("beta", "gamma", "temperature", "attn1", "attn2", "attn3", "attn4")


def load_index() -> dict:
    return json.loads((FIXTURES / "index.json").read_text())


def load_manifests() -> dict:
    return json.loads((FIXTURES / "state_dict_manifests.json").read_text())


def randomize_constants(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give every constant-initialised parameter a random value (in place)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            is_norm = ".norm" in f".{name}" and leaf in ("weight", "bias")
            if leaf in CONSTANT_INIT or is_norm:
                param.copy_(torch.randn(param.shape, generator=gen) * 0.5 + (1.0 if leaf == "weight" else 0.0))
    return model


@pytest.fixture(scope="session")
def index() -> dict:
    return load_index()


@pytest.fixture(autouse=True)
def _deterministic() -> None:
    torch.manual_seed(0)
