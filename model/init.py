"""Random values for the parameters upstream initialises to constants.

NAFBlock's ``beta``/``gamma`` start at zero (each block is the identity), LayerNorm affines at
one/zero, attention temperatures at one and MHNet's mixing weights at 0.2. A parity test or a
benchmark on such a model exercises a fraction of the network, so tests and benchmarks
randomise them first.
"""

from __future__ import annotations

import torch
from torch import nn

from .spec import spec_of


def randomize_constants(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every constant-initialised parameter a random value (in place); returns ``model``.

    Which they are is the model's spec: ``constant_init`` names (NAFBlock ``beta``/``gamma``,
    attention ``temperature``, ...) and the affine of every ``layernorms`` and ``norms`` module.
    """
    spec = spec_of(model)
    norms = {f"{prefix}.{leaf}" if prefix else leaf
             for prefix, module in model.named_modules() if isinstance(module, (*spec.layernorms, *spec.norms))
             for leaf, _ in module.named_parameters(recurse=False)}
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            if leaf in spec.constant_init or name in norms:
                noise = torch.randn(param.shape, generator=gen) * 0.5
                param.copy_(noise.to(param) + (1.0 if leaf == "weight" else 0.0))
    return model
